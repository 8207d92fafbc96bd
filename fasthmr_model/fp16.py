"""The fp16 variant of a graph for the CUDA provider: weights and activations in float16, inputs and outputs
still float32 (the callers feed and read the same arrays).

It is made from the bundle's graph the first time a session asks for it (onnxruntime.transformers' float16
converter, which ONNX Runtime ships; it needs the `onnx` package, installed by `make setup`), and cached
outside the bundle, under the runtime cache folder, keyed by the graph's checksum: bundles are sealed and
never written to at run time. The file appears whole or not at all (a staging folder renamed into place).
Its accuracy cost against fp32 is measured in docs/gpu.md; test/test_providers.py bounds its parity.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fasthmr_model.staging import move_into_place, staging_folder

# Above this size, protobuf cannot hold the graph in one file: the weights go to `<name>.data` beside it.
SINGLE_FILE_LIMIT_BYTES = 1_800_000_000
# Bumped when the conversion changes, so that caches of the old one are not used.
CONVERSION_VERSION = 1


def fp16_graph(graph: Path, graph_sha256: str, cache_dir: Path) -> Path:
    """The fp16 variant of `graph` (whose checksum is graph_sha256), converted once into
    `cache_dir/fp16/<checksum>-v<version>/` and reused."""
    folder = cache_dir / "fp16" / f"{graph_sha256[:16]}-v{CONVERSION_VERSION}"
    converted = folder / f"{graph.stem}.fp16.onnx"
    if converted.is_file():
        return converted
    staging = staging_folder(folder)
    try:
        write_fp16_graph(graph, staging / converted.name)
        move_into_place(staging, folder, overwrite=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return converted


def write_fp16_graph(graph: Path, out: Path) -> None:
    """Converts the float32 graph at `graph` (its external weights beside it are read too) to float16 at `out`,
    keeping float32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # onnx's shape inference holds the whole graph in one protobuf: a graph with external weights skips it.
    external = any(path.name != graph.name for path in graph.parent.glob(f"{graph.name}*"))
    model = onnx.load(str(graph))
    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=external)
    large = converted.ByteSize() > SINGLE_FILE_LIMIT_BYTES
    onnx.save(converted, str(out), save_as_external_data=large, all_tensors_to_one_file=True,
              location=f"{out.name}.data")

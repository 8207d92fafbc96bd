"""ONNX export of the encoder and assembly of a bundle around it (an export-time module: imports torch).

The graph is exported with the TorchScript-based exporter (fast, and it handles every op we use) with a
dynamic batch axis. Graphs over 2 GB (ViT-H: 2.7 GB of float32 weights) must keep their weights in an external
data file beside the graph (protobuf's limit); smaller graphs are one self-contained file.

The way back, `load_encoder_from_bundle`, reads a bundle's weights into PyTorch (what `fasthmr merge` starts
from). The exporter folds and renames some weights (transposed MatMul operands, slices of the position table),
so the names are learnt from a probe: an encoder of the same sizes with distinct random weights, exported the
same way, whose graph tensors are matched to its parameters by value. The result is checked against the
bundle's own graph in ONNX Runtime.

Parity checks (`parity_inputs`, `encoder_parity`) compare the PyTorch model with ONNX Runtime on the CPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from fasthmr_model.bundle import BODY_MODEL_FILE, ENCODER_CONTRACT, ENCODER_FILE, Bundle, write_bundle
from fasthmr_model.encoder.config import IMAGE_HEIGHT, IMAGE_WIDTH, NUM_TOKENS
from fasthmr_model.encoder.merge_plan import MergePlan
from fasthmr_model.errors import BundleError
from fasthmr_model.runtime import EncoderSession, RuntimeConfig
from fasthmr_model.staging import scratch_folder

ONNX_OPSET = 17
# Protobuf cannot hold a message of 2 GiB or more; stay well below it.
EXTERNAL_DATA_THRESHOLD_BYTES = 1_500_000_000
INPUT_NAMES = list(ENCODER_CONTRACT["inputs"])
OUTPUT_NAMES = list(ENCODER_CONTRACT["outputs"])
PARITY_BATCH = 2


def export_encoder_onnx(model, folder: Path, *, external_data: bool | None = None) -> list[Path]:
    """Export `model` (a FastHMREncoder) to folder/encoder.onnx; returns the files written.

    external_data: keep weights in encoder.onnx.data; None decides by the weights' size.
    """
    folder = Path(folder)
    model = model.eval()
    weight_bytes = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    if external_data is None:
        external_data = weight_bytes > EXTERNAL_DATA_THRESHOLD_BYTES
    example = (torch.zeros(1, 3, IMAGE_HEIGHT, IMAGE_WIDTH), torch.zeros(1, NUM_TOKENS))
    traced_path = folder / "traced.onnx"
    with torch.no_grad():
        torch.onnx.export(
            _TupleOutputs(model), example, str(traced_path), dynamo=False, opset_version=ONNX_OPSET,
            input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
            dynamic_axes={name: {0: "B"} for name in INPUT_NAMES + OUTPUT_NAMES},
        )
    graph = onnx.load(str(traced_path))
    _declare_unused_inputs(graph)
    encoder_path = folder / ENCODER_FILE
    data_name = ENCODER_FILE + ".data"
    onnx.save_model(graph, str(encoder_path), save_as_external_data=external_data, all_tensors_to_one_file=True,
                    location=data_name, size_threshold=1024)
    for leftover in folder.glob("traced.onnx*"):
        leftover.unlink()
    return [encoder_path] + ([folder / data_name] if external_data else [])


class _TupleOutputs(torch.nn.Module):
    """Wraps the encoder so that the exporter sees a plain tuple of outputs in contract order."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, person_tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(image, person_tokens))


def _declare_unused_inputs(graph) -> None:
    """Re-add contract inputs that the exporter dropped because the graph does not read them.

    A base encoder ignores `person_tokens`, but the contract has it so that callers never branch on
    whether a bundle merges tokens. An unused graph input is valid ONNX and costs nothing.
    """
    present = {node.name for node in graph.graph.input}
    for name, spec in ENCODER_CONTRACT["inputs"].items():
        if name not in present:
            graph.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, spec["shape"]))
    order = {name: index for index, name in enumerate(INPUT_NAMES)}
    inputs = sorted(graph.graph.input, key=lambda node: order.get(node.name, len(order)))
    del graph.graph.input[:]
    graph.graph.input.extend(inputs)


def build_bundle(model, out: Path, *, provenance: dict, camera_anchor: str, body_model: str | Path | None = None,
                 preset_name: str | None = None, overwrite: bool = False, external_data: bool | None = None,
                 merge_record: dict | None = None) -> Bundle:
    """Export `model` and write a complete bundle at `out`.

    Args:
        provenance: where the weights come from (the manifest's "provenance"; "source" names it).
        camera_anchor: what the model's crop camera places, one of bundle.CAMERA_ANCHORS ("body_origin" for
            HMR2.0 checkpoints, "pelvis" for models trained here).
        body_model: the SMPL file to ship; None ships the synthetic body.
        preset_name: the encoder preset the model was built from, if any.
        overwrite: replace an existing bundle at `out`.
        external_data: keep the weights in encoder.onnx.data; None decides by their size.
        merge_record: how the model's merge plan was calibrated. The manifest's `encoder.merge` holds the
            MergePlan ("plan") and this record, or None for an unmerged encoder.
    """
    from fasthmr_model.body.model_file import load_body_model_file

    with scratch_folder(out) as scratch:  # beside the bundle: a killed export's is removed by the next one
        if body_model is None:
            from fasthmr_model.body.synthetic import write_synthetic_body

            body_model = write_synthetic_body(Path(scratch) / BODY_MODEL_FILE)
        body_name = load_body_model_file(body_model).model_name
        written = export_encoder_onnx(model, Path(scratch), external_data=external_data)
        manifest = {
            "encoder": {
                "file": ENCODER_FILE,
                "preset": preset_name,
                "config": model.config.to_dict(),
                "contract": ENCODER_CONTRACT,
                "camera_anchor": camera_anchor,
                "merge": None if model.plan == MergePlan() else {"plan": model.plan.to_dict(), **(merge_record or {})},
                # The read-outs are residuals over these: the mean pose and shape the model starts from
                # (HMR2.0: SMPL's mean parameters; ours: the training data's). Evaluation's baseline uses them.
                "mean_parameters": {
                    "pose_6d": [round(float(v), 6) for v in model.head.mean_pose_6d.reshape(-1)],
                    "betas": [round(float(v), 6) for v in model.head.mean_betas.reshape(-1)],
                },
            },
            "body_model": {"file": BODY_MODEL_FILE, "name": body_name},
            "provenance": provenance,
        }
        files = {path.name: path for path in written}
        files[BODY_MODEL_FILE] = Path(body_model)
        return write_bundle(out, files, manifest, overwrite=overwrite)


def write_untrained_bundle(preset_name: str, out: Path, *, seed: int = 0, body_model: str | Path | None = None,
                           overwrite: bool = False) -> Bundle:
    """A randomly initialised encoder of a preset as a bundle, labelled untrained (timing and plumbing)."""
    from fasthmr_model.encoder.config import preset
    from fasthmr_model.encoder.model import build_encoder

    provenance = {"source": "untrained", "seed": seed,
                  "description": f"randomly initialised {preset_name} encoder: for timing and plumbing, not accuracy"}
    return build_bundle(build_encoder(preset(preset_name), seed=seed), Path(out), provenance=provenance,
                        camera_anchor="pelvis", body_model=body_model, preset_name=preset_name, overwrite=overwrite)


def encoder_reference_outputs(model, images: np.ndarray, person_tokens: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch outputs of `model` for a batch, keyed like the graph's outputs (for parity checks)."""
    with torch.no_grad():
        outputs = model(torch.from_numpy(images), torch.from_numpy(person_tokens))
    return {name: value.numpy() for name, value in zip(OUTPUT_NAMES, outputs)}


def parity_inputs(batch: int = PARITY_BATCH, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random normalised images (batch, 3, 256, 192) and person-token flags (batch, 192) for comparing runtimes."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, 3, IMAGE_HEIGHT, IMAGE_WIDTH)).astype(np.float32)
    person_tokens = (rng.random((batch, NUM_TOKENS)) < 0.4).astype(np.float32)
    return images, person_tokens


def encoder_parity(model, bundle: Bundle) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime (CPU) over every encoder output."""
    images, person_tokens = parity_inputs()
    reference = encoder_reference_outputs(model, images, person_tokens)
    produced = EncoderSession(bundle, RuntimeConfig(provider="cpu")).run(images, person_tokens)
    return max(float(np.abs(reference[name] - value).max()) for name, value in produced._asdict().items())


# A probe's parameter p may appear in the graph as p, as p transposed (MatMul operands), or as one of the two
# slices of the position table that the embedding adds (constant-folded separately).
_PROBE_FORMS = {
    "same": lambda p: p,
    "transposed": lambda p: p.T if p.ndim == 2 else None,
    "position_rows": lambda p: p[:, 1:] if p.ndim == 3 else None,
    "position_shared_row": lambda p: p[:, :1] if p.ndim == 3 else None,
}


def load_encoder_from_bundle(bundle: Bundle, tolerance: float = 1e-4):
    """The bundle's encoder as a FastHMREncoder (eval mode) with the graph's weights and merge plan.

    Raises BundleError when a weight cannot be found or the PyTorch model does not reproduce the graph's
    outputs within `tolerance` (a bundle exported by an incompatible fasthmr version: re-export it).
    """
    from fasthmr_model.encoder.model import FastHMREncoder

    plan = bundle.merge_plan
    config = bundle.encoder_config
    probe = FastHMREncoder(config, plan).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in probe.state_dict().values():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    probe_state = {name: value.numpy() for name, value in probe.state_dict().items()}
    forms = {}
    for name, value in probe_state.items():
        for form, make in _PROBE_FORMS.items():
            shaped = make(value)
            if shaped is not None:
                forms.setdefault(_value_key(shaped), (name, form))
    with tempfile.TemporaryDirectory(prefix="fasthmr-probe-") as scratch:
        export_encoder_onnx(probe, Path(scratch))
        probe_graph = _graph_tensors(onnx.load(str(Path(scratch) / ENCODER_FILE)))
    graph = _graph_tensors(onnx.load(str(bundle.encoder_path)))
    state = {}
    for graph_name, probe_value in probe_graph.items():
        source = forms.get(_value_key(probe_value))
        if source is None:
            continue  # a constant of the graph itself, not a weight
        if graph_name not in graph:
            raise BundleError(f"{bundle.encoder_path} has no tensor {graph_name!r} (weight {source[0]}); it was "
                              "exported by another fasthmr version: re-export the bundle")
        name, form = source
        value = graph[graph_name]
        if value.shape != probe_value.shape:
            raise BundleError(f"{bundle.encoder_path}: tensor {graph_name!r} (weight {name}) is {value.shape}, the "
                              f"manifest's sizes make it {probe_value.shape}; the manifest does not describe this "
                              "graph: re-export the bundle")
        if form == "same":
            state[name] = value
        elif form == "transposed":
            state[name] = value.T
        else:
            position = state.setdefault(name, np.zeros_like(probe_state[name]))
            if form == "position_rows":
                position[:, 1:] = value
            else:
                position[:, :1] = value
    missing = sorted(set(probe_state) - set(state))
    if missing:
        raise BundleError(f"{bundle.encoder_path} lacks the weights {missing[:5]}; it was exported by another "
                          "fasthmr version: re-export the bundle")
    model = FastHMREncoder(config, plan)
    model.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in state.items()})
    model.eval()
    error = encoder_parity(model, bundle)
    if not error <= tolerance:
        raise BundleError(f"the weights read from {bundle.encoder_path} reproduce its outputs only to {error:.2e} "
                          f"(> {tolerance}); the graph was exported by another fasthmr version: re-export it")
    return model


def _value_key(value: np.ndarray) -> tuple:
    return value.shape, np.ascontiguousarray(value).tobytes()


def _graph_tensors(graph) -> dict[str, np.ndarray]:
    """Graph tensor name -> value for every initializer, and for Identity nodes that alias one (the exporter
    writes a weight that equals another as an Identity of it)."""
    tensors = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.graph.initializer}
    for node in graph.graph.node:
        if node.op_type == "Identity" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]]
    return tensors

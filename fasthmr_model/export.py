"""ONNX export of the encoder and assembly of a bundle around it (an export-time module: imports torch).

The graph is exported with the TorchScript-based exporter (fast, and it handles every op we use) with a
dynamic batch axis. Graphs over 2 GB (ViT-H: 2.7 GB of float32 weights) must keep their weights in an external
data file beside the graph (protobuf's limit); smaller graphs are one self-contained file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from fasthmr_model.bundle import BODY_MODEL_FILE, ENCODER_CONTRACT, ENCODER_FILE, Bundle, write_bundle
from fasthmr_model.encoder.config import IMAGE_HEIGHT, IMAGE_WIDTH, NUM_TOKENS

ONNX_OPSET = 17
# Protobuf cannot hold a message of 2 GiB or more; stay well below it.
EXTERNAL_DATA_THRESHOLD_BYTES = 1_500_000_000
INPUT_NAMES = list(ENCODER_CONTRACT["inputs"])
OUTPUT_NAMES = list(ENCODER_CONTRACT["outputs"])


def export_encoder_onnx(model, folder: Path, external_data: bool | None = None) -> list[Path]:
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


def build_bundle(model, out: Path, body_model_file: Path, provenance: dict, camera_anchor: str,
                 preset_name: str | None = None, overwrite: bool = False, external_data: bool | None = None) -> Bundle:
    """Export `model` and write a complete bundle at `out` with the given body model file.

    camera_anchor: what the model's crop camera places, one of bundle.CAMERA_ANCHORS ("body_origin" for
    HMR2.0 checkpoints, "pelvis" for models trained here).
    """
    from fasthmr_model.body.model_file import load_body_model_file

    body_name = load_body_model_file(body_model_file).model_name
    with tempfile.TemporaryDirectory(prefix="fasthmr-export-") as scratch:
        written = export_encoder_onnx(model, Path(scratch), external_data)
        manifest = {
            "encoder": {
                "file": ENCODER_FILE,
                "preset": preset_name,
                "config": model.config.to_dict(),
                "contract": ENCODER_CONTRACT,
                "camera_anchor": camera_anchor,
                "merge": None,
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
        files[BODY_MODEL_FILE] = Path(body_model_file)
        return write_bundle(out, files, manifest, overwrite=overwrite)


def encoder_reference_outputs(model, images: np.ndarray, person_tokens: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch outputs of `model` for a batch, keyed like the graph's outputs (for parity checks)."""
    with torch.no_grad():
        outputs = model(torch.from_numpy(images), torch.from_numpy(person_tokens))
    return {name: value.numpy() for name, value in zip(OUTPUT_NAMES, outputs)}

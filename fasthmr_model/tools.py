"""Export-time helpers shared by the CLI and the tests: bundles with a body model, parity checks (torch)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from fasthmr_model.bundle import Bundle
from fasthmr_model.encoder.config import IMAGE_HEIGHT, IMAGE_WIDTH, NUM_TOKENS
from fasthmr_model.export import build_bundle, encoder_reference_outputs
from fasthmr_model.runtime import EncoderSession, RuntimeConfig

PARITY_BATCH = 2


def bundle_with_body_model(model, out: Path, provenance: dict, body_model: str | None, camera_anchor: str,
                           preset_name: str | None, overwrite: bool, external_data: bool | None = None) -> Bundle:
    """Export `model` into a bundle at `out`, with the user's SMPL file or (default) the synthetic body."""
    if body_model is not None:
        return build_bundle(model, out, Path(body_model), provenance, camera_anchor, preset_name, overwrite,
                            external_data)
    from fasthmr_model.body.synthetic import write_synthetic_body

    with tempfile.TemporaryDirectory(prefix="fasthmr-body-") as scratch:
        body_path = Path(scratch) / "body_model.npz"
        write_synthetic_body(body_path)
        return build_bundle(model, out, body_path, provenance, camera_anchor, preset_name, overwrite, external_data)


def write_untrained_bundle(preset_name: str, seed: int, out: Path, body_model: str | None = None,
                           overwrite: bool = False) -> Bundle:
    """A randomly initialised encoder of a preset as a bundle, labelled untrained (timing and plumbing)."""
    from fasthmr_model.encoder.config import preset
    from fasthmr_model.encoder.model import build_encoder

    provenance = {"source": "untrained", "seed": seed,
                  "description": f"randomly initialised {preset_name} encoder: for timing and plumbing, not accuracy"}
    return bundle_with_body_model(build_encoder(preset(preset_name), seed=seed), Path(out), provenance, body_model,
                                  "pelvis", preset_name, overwrite)


def parity_inputs(batch: int = PARITY_BATCH, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random normalised images and person-token flags for comparing runtimes."""
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

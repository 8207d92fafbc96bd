"""The decoder's ONNX export and its place in a bundle (export-time module: imports torch).

decoder.onnx holds the one-step graph (OneStepDecoder): features (B, W, D), the crops' rays (B, W, 3), the
encoder's frame poses (B, W, 131) and a noise sample (B, L, C) -> the window's pose representations
(B, W, 131). The manifest's "decoder" section records the contract, the
sizes (W, latents), the fixed noise sample the run time feeds (one sample, as the paper decodes; a fixed
one, so that consecutive windows of a stream do not jitter with fresh noise), and the training provenance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fasthmr_model.body.skeleton import NUM_JOINTS
from fasthmr_model.bundle import Bundle, load_bundle, write_bundle
from fasthmr_model.decoder.config import CROP_RAY_SIZE, DecoderConfig
from fasthmr_model.decoder.pose import NUM_POINTS, NUM_TWISTS, POSE_SIZE, TWIST_JOINTS
from fasthmr_model.errors import BundleError, FastHMRError
from fasthmr_model.export import ONNX_OPSET
from fasthmr_model.staging import scratch_folder
from fasthmr_model.torch_files import load_torch_checkpoint

DECODER_FILE = "decoder.onnx"
DECODER_INPUTS = ("features", "crop_rays", "frame_poses", "noise")
NOISE_SEED = 0


def decoder_contract(config: DecoderConfig) -> dict:
    """The decoder graph's inputs and outputs, as the manifest records them."""
    return {
        "file": DECODER_FILE,
        "inputs": {
            "features": {"dtype": "float32", "shape": ["B", config.window, config.feature_size],
                         "meaning": "the encoder's `feature` output of the window's frames, oldest first"},
            "crop_rays": {"dtype": "float32", "shape": ["B", config.window, CROP_RAY_SIZE],
                          "meaning": "per frame the rotation vector (radians) turning the camera's optical axis onto "
                                     "the ray through the crop's centre (fasthmr_model.data.crop.crop_ray_rotations), "
                                     "oldest first"},
            "frame_poses": {"dtype": "float32", "shape": ["B", config.window, POSE_SIZE],
                            "meaning": "the encoder's pose of the window's frames (its pose_6d and betas) in the "
                                       "representation of `poses`, oldest first"},
            "noise": {"dtype": "float32", "shape": ["B", config.latent_tokens, config.latent_size],
                      "meaning": "the diffusion's starting sample at t = T - 1 (feed decoder.noise)"},
        },
        "outputs": {
            "poses": {"dtype": "float32", "shape": ["B", config.window, POSE_SIZE],
                      "meaning": f"per frame {NUM_POINTS} root-relative points x 3 (24 SMPL joints, then the end "
                                 f"points of joints 10, 11, 15, 22, 23), then {NUM_TWISTS} twists (cos, sin) of "
                                 f"joints {list(TWIST_JOINTS)}; camera frame, metres"},
        },
    }


def noise_sample(config: DecoderConfig) -> np.ndarray:
    """The fixed (L, C) starting sample the run time feeds the graph."""
    return np.random.default_rng(NOISE_SEED).standard_normal((config.latent_tokens, config.latent_size)).astype(np.float32)


def export_decoder_onnx(model: torch.nn.Module, path: Path) -> Path:
    """Export a OneStepDecoder to `path` with a dynamic batch axis."""
    config = model.denoiser.config
    example = (torch.zeros(1, config.window, config.feature_size), torch.zeros(1, config.window, CROP_RAY_SIZE),
               torch.zeros(1, config.window, POSE_SIZE), torch.zeros(1, config.latent_tokens, config.latent_size))
    with torch.no_grad():
        torch.onnx.export(model.eval(), example, str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=list(DECODER_INPUTS), output_names=["poses"],
                          dynamic_axes={**{name: {0: "B"} for name in DECODER_INPUTS}, "poses": {0: "B"}})
    return path


def bundle_with_decoder(encoder_bundle: Bundle, model: torch.nn.Module, out: Path, provenance: dict,
                        overwrite: bool = True) -> Bundle:
    """A copy of `encoder_bundle` at `out` with decoder.onnx and the manifest's decoder section added."""
    config = model.denoiser.config
    manifest = {key: value for key, value in encoder_bundle.manifest.items()
                if key not in ("format", "format_version", "files")}
    with scratch_folder(out) as scratch:  # beside the bundle: a killed export's is removed by the next one
        files = {name: encoder_bundle.path / name for name in encoder_bundle.file_names if name != DECODER_FILE}
        files[DECODER_FILE] = export_decoder_onnx(model, Path(scratch) / DECODER_FILE)
        manifest["decoder"] = {
            "file": DECODER_FILE,
            "window": config.window,
            "config": config.to_dict(),
            "contract": decoder_contract(config),
            "noise": [round(float(value), 6) for value in noise_sample(config).reshape(-1)],
            "encoder_file_sha256": encoder_bundle.encoder_sha256,
            "provenance": provenance,
        }
        return write_bundle(out, files, manifest, overwrite=overwrite)


def decoder_parity(model: torch.nn.Module, bundle: Bundle, batch: int = 3, seed: int = 0) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime (CPU) over the decoder's output."""
    from fasthmr_model.decoder.runtime import DecoderSession
    from fasthmr_model.runtime import RuntimeConfig

    config = model.denoiser.config
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((batch, config.window, config.feature_size)).astype(np.float32)
    # Rays of crops up to about 30 degrees off the optical axis (a wide robot camera's edge), in the image plane.
    crop_rays = (0.3 * rng.standard_normal((batch, config.window, CROP_RAY_SIZE)) * [1.0, 1.0, 0.0]).astype(np.float32)
    # Poses near the VAE's data: its mean and spread, so that the comparison runs where the graph is used.
    frame_poses = (model.denoiser.pose_mean.numpy() + model.denoiser.pose_std.numpy()
                   * rng.standard_normal((batch, config.window, POSE_SIZE))).astype(np.float32)
    session = DecoderSession(bundle, RuntimeConfig(provider="cpu"))
    noise = np.broadcast_to(session.noise, (batch,) + session.noise.shape)
    with torch.no_grad():
        reference = model(torch.from_numpy(features), torch.from_numpy(crop_rays), torch.from_numpy(frame_poses),
                          torch.from_numpy(np.ascontiguousarray(noise))).numpy()
    return float(np.abs(session.run(features, crop_rays, frame_poses) - reference).max())


def bundle_encoder_errors(encoder_bundle_path, cache: Path, progress: bool = True):
    """The errors of a bundle's encoder (decoder.train.EncoderErrors) over the rendered training sequences
    (rendered first if they are not in `cache`), which `fasthmr train vae` shapes its windows after."""
    from fasthmr_model.body.rotations import rot6d_to_matrix
    from fasthmr_model.data.world import load_crop_set
    from fasthmr_model.decoder.sequences import build_sequence_split, encoder_outputs, sequence_ranges
    from fasthmr_model.decoder.train import measure_encoder_errors

    encoder_bundle = load_bundle(encoder_bundle_path)
    crops = load_crop_set(build_sequence_split("train", cache, encoder_bundle.body_model_path, progress=progress))
    encoded = encoder_outputs(encoder_bundle, crops, progress=progress)
    rotmats = rot6d_to_matrix(encoded["pose_6d"].reshape(-1, NUM_JOINTS, 6).astype(np.float64))
    return measure_encoder_errors(np.asarray(crops.rotmats, np.float64), rotmats, sequence_ranges(crops))


def train_and_bundle_decoder(run: Path, vae_run: Path, encoder_bundle_path, out: Path, cache: Path, config,
                             progress: bool = True, splits: tuple[str, ...] = ("train",),
                             sequence_count: int | None = None) -> Bundle:
    """`fasthmr train decoder`: features of the encoder bundle over the rendered training sequences, the
    denoiser trained on them with the VAE of `vae_run` frozen, and the bundle written at `out`.

    splits: the sequence splits trained on, in order (the built-in train split, rendered if missing, and named
    splits rendered before with `fasthmr world sequences --split NAME --seed S --count N`); sequence_count: only
    their first N sequences (the data-size curve), all if None."""
    from fasthmr_model.body.lbs import BodyModel
    from fasthmr_model.data.world import load_crop_set
    from fasthmr_model.decoder.sequences import build_sequence_split, encoder_outputs
    from fasthmr_model.decoder.train import load_vae, one_step_decoder, sequence_dataset, train_denoiser
    from fasthmr_model.train.loop import CHECKPOINT_NAME

    encoder_bundle = load_bundle(encoder_bundle_path)
    body = BodyModel.from_file(encoder_bundle.body_model_path)
    if "val" in splits or "test" in splits:
        raise FastHMRError("the decoder trains on training sequences: val chooses between its checkpoints and test "
                           "scores it")
    series, data = [], []
    for name in splits:
        crops = load_crop_set(build_sequence_split(name, cache, encoder_bundle.body_model_path, progress=progress))
        series += sequence_dataset(crops, encoder_outputs(encoder_bundle, crops, progress=progress), body)
        data.append(Path(crops.folder).name)
    if sequence_count is not None:
        if not 1 <= sequence_count <= len(series):
            raise FastHMRError(f"--sequence-count {sequence_count}: the splits {list(splits)} hold {len(series)} "
                               "usable sequences")
        series = series[:sequence_count]
    validation = load_crop_set(build_sequence_split("val", cache, encoder_bundle.body_model_path, progress=progress))
    vae, vae_state = load_vae(vae_run)
    denoiser, latent_scale = train_denoiser(
        run, vae, series, config,
        validation_series=sequence_dataset(validation, encoder_outputs(encoder_bundle, validation, progress=progress),
                                           body),
        progress=progress)
    model = one_step_decoder(vae, denoiser, latent_scale)
    state = load_torch_checkpoint(run / CHECKPOINT_NAME)
    # Run and data folders by name only: a manifest never records a machine's paths (checksums identify files).
    provenance = {
        "source": "synthetic-trained",
        "description": "VAE on generated motions (read as the encoder's poses: with its measured slow errors and "
                       "jitter), denoiser started from the VAE's encoder and trained on the encoder's features, crop "
                       "rays and poses of rendered synthetic sequences",
        "vae": {"run": Path(vae_run).name, "steps": vae_state["step"], "train_wall_s": round(vae_state["wall_s"]),
                "config": vae_state["config"], "amass_files": vae_state.get("amass_files", []),
                "encoder_errors": vae_state.get("encoder_errors")},
        "denoiser": {"run": Path(run).name, "steps": state["step"], "train_wall_s": round(state["wall_s"]),
                     "kept_step": (state.get("best") or {}).get("step", state["step"]),
                     "config": state["config"], "data": data[0] if len(data) == 1 else data,
                     "sequences": len(series), "frames": sum(len(features) for features, *_ in series),
                     "validation": Path(validation.folder).name, "latent_scale": latent_scale},
        "encoder_bundle": Path(encoder_bundle.path).name,
    }
    bundle = bundle_with_decoder(encoder_bundle, model, out, provenance)
    error = decoder_parity(model, bundle)
    if error > 1e-4:
        raise BundleError(f"{bundle.path / DECODER_FILE} differs from PyTorch by {error:.2e} (> 1e-4): the export "
                          "is broken; report it with the run folders")
    return bundle

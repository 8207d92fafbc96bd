"""The default bundle's motion VAE as a VAE run folder, recovered from its decoder.onnx, so that `fasthmr train
decoder --vae-run OUT/vae` trains from exactly the shipped start without the 12,000-step VAE run.

The graph holds the VAE's decoder, and the shipped denoiser is its start (manifest: kept_step 0), that is the
VAE's encoder (Denoiser.start_from_vae_encoder), from which the encoder's mean path is read back (the
distribution tokens folded into the positions; the log-variance half is not in the graph and stays zero: the
denoiser's training uses the mean only). The ONNX initializers are named by exporting a model of the same sizes
with distinct random weights through the same exporter and matching the values. Checks, printed: the recovered
model exports to a graph that gives the shipped one's outputs, and the recovered VAE's latent means equal the
shipped denoiser's x0 (features at zero weight, the timestep token all but shut). Needs torch and onnx. Run:

    python scripts/decoder_recover_vae.py --out FOLDER        # writes FOLDER/vae/checkpoint.pt
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from fasthmr_model.bundle import load_bundle
from fasthmr_model.decoder.config import DecoderConfig
from fasthmr_model.decoder.export import DECODER_FILE, bundle_with_decoder, export_decoder_onnx
from fasthmr_model.decoder.model import Denoiser, MotionVAE, OneStepDecoder
from fasthmr_model.decoder.runtime import DecoderSession
from fasthmr_model.errors import FastHMRError
from fasthmr_model.runtime import RuntimeConfig
from fasthmr_model.train.loop import CHECKPOINT_NAME


def initializers(path: Path) -> dict[str, np.ndarray]:
    return {item.name: numpy_helper.to_array(item) for item in onnx.load(str(path)).graph.initializer}


def recovered_decoder(shipped, config: DecoderConfig, latent_scale: float, scratch: Path) -> OneStepDecoder:
    """The shipped OneStepDecoder with every weight its graph holds (the VAE's encoder left at its init)."""
    torch.manual_seed(0)
    probe = OneStepDecoder(MotionVAE(config), Denoiser(config), latent_scale).eval()
    with torch.no_grad():
        for parameter in probe.parameters():
            parameter.copy_(torch.randn_like(parameter))
        for buffer in (probe.vae.pose_mean, probe.vae.pose_std):
            buffer.copy_(torch.rand_like(buffer) + 0.5)
        # As in the shipped graph, where the exporter keeps one copy of equal tensors: the denoiser's pose
        # normalisation is the VAE's, and the zero feature projection's bias equals the zero latent projection's.
        probe.denoiser.pose_mean.copy_(probe.vae.pose_mean)
        probe.denoiser.pose_std.copy_(probe.vae.pose_std)
        probe.denoiser.feature_in[1].bias.copy_(probe.denoiser.latent_in.bias)
    mine = initializers(export_decoder_onnx(probe, scratch / "probe.onnx"))
    theirs = initializers(shipped.path / DECODER_FILE)
    if {name: array.shape for name, array in mine.items()} != {name: array.shape for name, array in theirs.items()}:
        raise FastHMRError("the shipped decoder graph has another layout than this code exports: cannot recover it")
    state = probe.state_dict()
    for name, value in state.items():
        value = value.numpy()
        for graph_name, array in mine.items():
            if array.shape == value.shape and np.array_equal(array, value):
                state[name] = torch.from_numpy(theirs[graph_name].copy())
                break
            if value.ndim == 2 and array.shape == value.T.shape and np.array_equal(array, value.T):
                state[name] = torch.from_numpy(np.ascontiguousarray(theirs[graph_name].T))
                break
    # The timestep token's key bias enters folded into the vector [0] * L + [bias] + [0] * W.
    folded = [array for array in theirs.values() if array.shape == (config.latent_tokens + 1 + config.window,)]
    state["denoiser.time_key_bias"] = torch.tensor([float(folded[0][config.latent_tokens])])
    recovered = OneStepDecoder(MotionVAE(config), Denoiser(config), latent_scale).eval()
    recovered.load_state_dict(state)
    return recovered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    shipped = load_bundle(None)
    provenance = shipped.decoder.provenance
    if provenance["denoiser"].get("kept_step") != 0:
        raise FastHMRError("the shipped denoiser is a trained one, not its start: its graph does not hold the VAE's "
                           "encoder")
    config = DecoderConfig.from_dict(shipped.decoder.config)
    latent_scale = float(provenance["denoiser"]["latent_scale"])
    with tempfile.TemporaryDirectory() as scratch:
        model = recovered_decoder(shipped, config, latent_scale, Path(scratch))
        vae, denoiser = model.vae, model.denoiser
        tokens, size = config.latent_tokens, config.latent_size
        with torch.no_grad():  # start_from_vae_encoder, backwards
            vae.encoder.load_state_dict(denoiser.body.state_dict())
            vae.pose_in.load_state_dict(denoiser.pose_in.state_dict())
            vae.distribution_tokens.zero_()
            vae.encoder_positions[:, :tokens] = denoiser.positions[:, :tokens]
            vae.encoder_positions[:, tokens:] = denoiser.positions[:, tokens + 1:]
            vae.to_distribution.weight.zero_()
            vae.to_distribution.bias.zero_()
            vae.to_distribution.weight[:size] = -denoiser.latent_out.weight * latent_scale
            vae.to_distribution.bias[:size] = -denoiser.latent_out.bias * latent_scale
        check = bundle_with_decoder(shipped, model, Path(scratch) / "bundle", {"source": "recovered"})
        rng = np.random.default_rng(0)
        features = rng.standard_normal((4, config.window, config.feature_size)).astype(np.float32)
        poses = (vae.pose_mean.numpy() + vae.pose_std.numpy()
                 * rng.standard_normal((4, config.window, config.pose_size))).astype(np.float32)
        graphs = float(np.abs(DecoderSession(shipped, RuntimeConfig(provider="cpu")).run(features, poses)
                              - DecoderSession(check, RuntimeConfig(provider="cpu")).run(features, poses)).max())
    with torch.no_grad():
        means = vae.encode(torch.from_numpy(poses))[0]
        last = torch.full((1,), config.timesteps - 1)
        x0 = -denoiser(torch.zeros(4, tokens, size), last, torch.from_numpy(features), torch.from_numpy(poses))
    print(f"recovered graph against the shipped one: max difference {graphs:.2e}; the VAE's latent means against "
          f"the shipped denoiser's x0: {float((means - x0 * latent_scale).abs().max()):.2e}")
    run = args.out / "vae"
    run.mkdir(parents=True, exist_ok=True)
    vae_provenance = provenance["vae"]
    torch.save({"kind": "vae", "model": vae.state_dict(), "step": vae_provenance["steps"],
                "wall_s": float(vae_provenance["train_wall_s"]), "config": vae_provenance["config"],
                "decoder_config": config.to_dict(), "amass_files": vae_provenance.get("amass_files", []),
                "encoder_errors": vae_provenance.get("encoder_errors")}, run / CHECKPOINT_NAME)
    print(f"wrote {run}")


if __name__ == "__main__":
    main()

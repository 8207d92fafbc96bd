"""Device check: the decoder's training on CUDA (`fasthmr train vae/decoder --device cuda`), in miniature.

A tiny VAE (with encoder-like windows) and a tiny denoiser (started from the VAE's encoder, with the causal
validation) train a few steps on the GPU, on the synthetic body's motions and random sequence data; the
one-step graph is exported and ONNX Runtime (CPU) must match PyTorch within 1e-4. Prints one JSON line.
Needs torch with CUDA; the rendered world is not needed. Run: python scripts/decoder_cuda_check.py
(`--device cpu` runs the same on the CPU).
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fasthmr_model.body.skeleton import NUM_JOINTS
from fasthmr_model.body.synthetic import write_synthetic_body
from fasthmr_model.decoder.config import DecoderConfig
from fasthmr_model.decoder.export import bundle_with_decoder, decoder_parity
from fasthmr_model.decoder.pose import POSE_SIZE
from fasthmr_model.decoder.train import EncoderErrors, TrainingConfig, one_step_decoder, train_denoiser, train_vae
from fasthmr_model.encoder.config import PRESETS
from fasthmr_model.encoder.model import build_encoder
from fasthmr_model.export import build_bundle
from fasthmr_model.train.loop import LOG_NAME


def main(out: Path, device: str) -> dict:
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for a GPU machine (or pass --device cpu)")
    sizes = DecoderConfig(window=6, feature_size=PRESETS["tiny"].head_width, latent_tokens=2, latent_size=8, width=32,
                          num_heads=2, mlp_width=64)
    config = TrainingConfig(steps=40, batch_size=16, motion_sequences=4, checkpoint_every=20, log_every=10,
                            device=device)
    body = write_synthetic_body(out / "body.npz")
    started = time.perf_counter()
    errors = EncoderErrors(np.full(NUM_JOINTS, 0.1), np.full(NUM_JOINTS, 0.03))
    vae = train_vae(out / "vae", body, sizes, config, progress=False, errors=errors)
    rng = np.random.default_rng(0)

    def sequence(frames):
        return (rng.standard_normal((frames, sizes.feature_size)).astype(np.float32),
                (0.3 * rng.standard_normal((frames, 3)) * [1.0, 1.0, 0.0]).astype(np.float32),
                rng.standard_normal((frames, POSE_SIZE)).astype(np.float32),
                rng.standard_normal((frames, POSE_SIZE)).astype(np.float32))

    denoiser, scale = train_denoiser(out / "denoiser", vae, [sequence(30), sequence(20)], config,
                                     validation_series=[sequence(12), sequence(9), sequence(15)], progress=False)
    wall = time.perf_counter() - started
    encoder_bundle = build_bundle(build_encoder(PRESETS["tiny"], seed=3), out / "encoder",
                                  provenance={"source": "untrained"}, camera_anchor="pelvis", preset_name="tiny")
    model = one_step_decoder(vae, denoiser, scale)
    bundle = bundle_with_decoder(encoder_bundle, model, out / "with-decoder", {"source": "cuda check"})
    log = [json.loads(line) for line in (out / "denoiser" / LOG_NAME).read_text().splitlines()]
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    return {"device": name, "torch": torch.__version__, "train_wall_s": round(wall, 1),
            "validations": [record for record in log if "validation" in record],
            "parity": decoder_parity(model, bundle)}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        print(json.dumps(main(Path(scratch), "cpu" if sys.argv[1:] == ["--device", "cpu"] else "cuda")))

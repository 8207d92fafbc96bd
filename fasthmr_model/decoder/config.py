"""The decoder's sizes and diffusion schedule settings, as data (the bundle manifest stores them).

Sizes, chosen to train on a 2-core CPU in minutes and to cost a small fraction of the tiny encoder per
frame (the paper's 243 frames -> 27 x 512 latents, width 512, 9 + 5 layers would not):
- window 8 frames (0.27 s at 30 frames/s): per-frame jitter changes from frame to frame, so a few frames
  smooth it (a plain exponential average that cuts the encoder's acceleration error 3x remembers about 3);
  a longer window costs more per frame and gives the latents more to carry. Against 16 frames (VAEs read
  the encoder's poses on the val sequences), 8 frames cut the acceleration error more (13.2 against 17.3
  mm/frame^2) at a similar MPJPE (85.7 against 85.1, after a third of the training), and the one-step
  graph runs in 0.24 ms against 0.30.
- latents 8 tokens x 32: the VAE's reconstruction error is a floor under the decoder's. At 16 frames,
  4 x 32 reconstructed held-out motion to 26 mm MPJPE at a window's newest frame, 8 x 32 with the newest
  frame weighted 4x to 8.9 mm (12,000 steps).
- width 96, 4 heads, feed-forward 192, one layer per transformer (the paper: a 9-layer VAE and a 5-layer
  denoiser, 4 heads, width 512): the decoder runs for every person on every frame, right after the
  encoder, and at batch 1 on a CPU its graph's cost is its operator count, paid with cold caches. The
  one-step graph (denoiser + VAE decoder) took 0.16 ms with one layer each, 0.51 ms with three (the
  layout with long skips that `vae_layers`/`denoiser_layers` still allow), measured after each encoder
  run. With one layer the VAE read the encoder's poses about as well (MPJPE 84.4 against 84.1 mm on the
  val sequences) and smoothed less (acceleration error 14.2 against 9.7 mm/frame^2).
Run-time module: no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from fasthmr_model.decoder.pose import POSE_SIZE
from fasthmr_model.errors import FastHMRError

# Numbers per frame of a crop's ray (data.crop.crop_ray_rotations: a rotation vector).
CROP_RAY_SIZE = 3


@dataclass(frozen=True)
class DecoderConfig:
    """Args:
        window: frames per window W (the ring buffer's length).
        feature_size: D, the encoder's per-frame feature (its head width).
        latent_tokens, latent_size: the VAE's latent, latent_tokens x latent_size.
        width, num_heads, mlp_width: every transformer's token width, heads and feed-forward width.
        vae_layers, denoiser_layers: layers per transformer (odd: in, middle, out with long skips).
        dropout: on the denoiser's attention and feed-forward outputs, in training (its data are few).
        pose_size: numbers per frame of the pose representation (decoder.pose.POSE_SIZE).
        timesteps, beta_start, beta_end: the DDPM schedule (scaled-linear betas, zero terminal SNR).
    """

    window: int = 8
    feature_size: int = 192
    latent_tokens: int = 8
    latent_size: int = 32
    width: int = 96
    num_heads: int = 4
    mlp_width: int = 192
    vae_layers: int = 1
    denoiser_layers: int = 1
    dropout: float = 0.1
    pose_size: int = POSE_SIZE
    timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012

    def __post_init__(self) -> None:
        for name in ("vae_layers", "denoiser_layers"):
            if getattr(self, name) % 2 != 1:
                raise FastHMRError(f"{name} must be odd (input layers, a middle layer, output layers), got "
                                   f"{getattr(self, name)}")
        if self.width % self.num_heads:
            raise FastHMRError(f"width {self.width} must be a multiple of num_heads {self.num_heads}")
        if self.pose_size != POSE_SIZE:
            raise FastHMRError(f"pose_size {self.pose_size} is not this version's representation ({POSE_SIZE}); "
                               "retrain the decoder")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DecoderConfig":
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise FastHMRError(f"unknown decoder config keys {unknown}; the bundle is newer than this fasthmr")
        return cls(**values)

"""The DDPM noise schedule of the latent denoiser (numpy): scaled-linear betas rescaled to zero terminal SNR.

Scaled-linear (Stable Diffusion's): betas = linspace(sqrt(beta_start), sqrt(beta_end), T)^2. Zero terminal
SNR (Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed"): shift and scale
sqrt(alpha_bar) so that it is exactly 0 at t = T - 1 and unchanged at t = 0. Then the last step sees pure
noise, as sampling does, and one step from t = T - 1 (trailing spacing) is the model's clean estimate.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Schedule(NamedTuple):
    """betas (T,) and alpha_bar (T,) = prod(1 - betas[:t + 1]), float64."""

    betas: np.ndarray
    alpha_bar: np.ndarray


def diffusion_schedule(config) -> Schedule:
    """The schedule of a DecoderConfig (timesteps, beta_start, beta_end)."""
    betas = np.linspace(np.sqrt(config.beta_start), np.sqrt(config.beta_end), config.timesteps) ** 2
    root = np.sqrt(np.cumprod(1.0 - betas))
    first, last = root[0], root[-1]
    root = (root - last) * first / (first - last)
    alpha_bar = root ** 2
    alphas = np.concatenate([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return Schedule(betas=1.0 - alphas, alpha_bar=alpha_bar)

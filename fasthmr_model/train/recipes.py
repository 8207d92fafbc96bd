"""Training settings as data: the encoder's and the decoder's training configs, and the recipes the shipped
default bundle's motion VAE and latent denoiser were trained with.

`fasthmr train` takes its flags' defaults from here, and the default bundle's manifest records the configs
of both decoder runs (its decoder provenance), which the recipes must equal. No torch: the command-line
parser reads this module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EncoderTrainingConfig:
    """Args:
        preset: encoder preset to train.
        steps: optimiser steps in all (a resumed run continues up to this count).
        batch_size, learning_rate, weight_decay, warmup_steps: AdamW with linear warm-up, cosine decay to 0.
        weight_*: loss weights (HMR2.0's 0.05 / 0.01 / 0.001 / 0.001 / 0.0005, times 100; the token heatmap
            is ours, see fasthmr_model.train.encoder).
        brightness_jitter, contrast_jitter: per-sample photometric augmentation (fractions).
        checkpoint_every, log_every: in steps.
        seed: initialisation, batch order and every step's random draws.
        threads: torch intra-op threads (0 = torch's default).
        device: torch device to train on ("cpu", "cuda", "cuda:1", ...).

    The defaults are a CPU run's. The shipped encoder was trained on a GPU with --steps 8677 --batch-size 256
    --learning-rate 5e-4 --warmup-steps 300 (the default bundle's manifest records the command).
    """

    preset: str = "tiny"
    steps: int = 4000
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.05
    warmup_steps: int = 200
    weight_joints_3d: float = 5.0
    weight_joints_2d: float = 1.0
    weight_global_orient: float = 0.1
    weight_body_pose: float = 0.1
    weight_betas: float = 0.05
    weight_token_heatmap: float = 0.5
    brightness_jitter: float = 0.2
    contrast_jitter: float = 0.2
    checkpoint_every: int = 250
    log_every: int = 25
    seed: int = 0
    threads: int = 0
    device: str = "cpu"


@dataclass(frozen=True)
class TrainingConfig:
    """The decoder's training (the motion VAE's and the latent denoiser's; see fasthmr_model.decoder.train).

    Args:
        steps, batch_size, learning_rate, weight_decay, warmup_steps: AdamW with linear warm-up, cosine decay.
        kl_weight: the VAE's KL term.
        newest_frame_weight: the VAE's reconstruction weight of a window's newest frame (the others weigh 1):
            the causal stream emits that frame only.
        terminal_fraction: share of each denoiser batch trained at t = T - 1.
        feature_noise: Gaussian noise added to the denoiser's input features, times each feature's spread.
        turn_probability: share of the denoiser's windows turned about the camera's y axis (turn_windows).
        pose_loss_weight: the denoiser's pose-space term: its x0 prediction decoded by the frozen VAE against
            the true poses (pose_error).
        twist_loss_weight: the twists' weight in that term, against 1 for the points. The image fixes a bone's
            turn about itself poorly (the encoder's twists are off by several of their spreads, its points by
            about half of one, on the val sequences) and joint positions do not depend on it; at weight 1 the
            twists were most of the loss.
        motion_sequences: generated motion sequences for the VAE (decoder.train.MOTION_FRAMES frames each).
        error_scale, error_drift, jitter_scale, jitter_share: the VAE's encoder-like windows (EncoderErrors):
            the slow errors' size and their drift across a window, in units of the encoder's measured ones;
            the per-frame jitter's size in units of its measured one, and the share of windows that carry it
            (the others are read as they are to be reconstructed).
        checkpoint_every, log_every: in steps. seed: data order and every step's random draws. threads: torch
            threads (0 = torch's default). device: cpu or cuda. (threads and device say where a run trains,
            not what it learns: the recipes leave them at their defaults.)
    """

    steps: int = 3000
    batch_size: int = 64
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    kl_weight: float = 1e-5
    newest_frame_weight: float = 4.0
    terminal_fraction: float = 0.5
    feature_noise: float = 1.0
    turn_probability: float = 0.5
    pose_loss_weight: float = 1.0
    twist_loss_weight: float = 0.1
    motion_sequences: int = 600
    error_scale: float = 1.0
    error_drift: float = 1.0
    jitter_scale: float = 6.0
    jitter_share: float = 0.9
    checkpoint_every: int = 250
    log_every: int = 50
    seed: int = 0
    threads: int = 0
    device: str = "cpu"


# The shipped motion VAE (`fasthmr train vae`: 11 minutes on a 2-core CPU).
VAE_RECIPE = TrainingConfig(steps=12_000, batch_size=64, learning_rate=5e-4, weight_decay=0.01, warmup_steps=100)

# The shipped latent denoiser (`fasthmr train decoder`): a tenth of the VAE's learning rate, since it starts
# as the VAE's encoder (Denoiser.start_from_vae_encoder) rather than from random weights.
DENOISER_RECIPE = TrainingConfig(steps=3_000, batch_size=64, learning_rate=5e-5, weight_decay=0.01, warmup_steps=100)

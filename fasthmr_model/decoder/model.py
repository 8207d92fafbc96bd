"""The decoder's networks in PyTorch (training and export only): the motion VAE, the latent denoiser, and the
one-step graph that the bundle ships.

- SkipTransformer (MLD's): (n - 1) / 2 input layers, a middle layer, (n - 1) / 2 output layers, each output
  layer reading its mirror input layer's output through a long skip (concatenate, project).
- MotionVAE: a window (B, W, 131) of pose representations, normalised per number, -> [L distribution
  tokens; W frame tokens] -> the distribution tokens' mean and log-variance (B, L, C); decoding reads
  [L latent tokens; W frame queries] -> (B, W, 131).
- Denoiser: [L noisy latent tokens; 1 timestep token; W frame tokens] -> v (B, L, C) (in-context
  conditioning, as in the paper). A frame token is the frame's encoder feature projected, plus (our additions)
  its crop's ray projected and the encoder's own pose of that frame in the decoder's representation, normalised
  like the VAE's input and projected, after turning its points by a learnt share of the crop's ray (the encoder
  sees a crop, not where it lies in the image: data.crop.crop_ray_rotations). The pose is a fixed function of
  the same feature (the head's read-out, then forward kinematics), so it carries no new information; but a
  denoiser conditioned on the feature alone has to learn that read-out and the kinematics from the few
  rendered sequences there are here (200, against the paper's datasets), and it did not: its causal MPJPE was 106 mm against the encoder's
  own 85 on the test sequences. Its layout is the VAE encoder's plus the timestep token, so it starts as
  that encoder reading the frame poses (start_from_vae_encoder; the timestep token's attention starts
  all but shut by a learnt key bias): a smoother of the encoder's poses, to which training adds.
- OneStepDecoder: frame features (B, W, D), crop rays (B, W, 3), frame poses (B, W, 131) and a noise sample
  (B, L, C) -> the window's pose representations (B, W, 131): one DDIM step from t = T - 1 (zero terminal SNR:
  x_T is pure noise, x0 = -v), then the VAE decoder. This is what decoder.onnx holds.

Attention is written out with plain matrix products (no fused kernel), which export to ONNX as they are;
the encoder's attention module is not reused because it is the hook point of token merging.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from fasthmr_model.decoder.config import CROP_RAY_SIZE, DecoderConfig
from fasthmr_model.decoder.diffusion import diffusion_schedule
from fasthmr_model.errors import FastHMRError


START_TIME_KEY_BIAS = -10.0
# The learnt share of the crop's ray turn is this times its parameter: one AdamW step moves a parameter by about
# the learning rate (5e-5 in the shipped recipe), and the share (about one half) has to be reached in a few
# hundred of the 3,000 steps.
RAY_TURN_SCALE = 200.0


class Attention(nn.Module):
    """Multi-head self-attention over (B, N, C) tokens, N = `tokens` (fixed per transformer: the exported
    graph's shapes are then constants but for the batch, and ONNX Runtime needs no shape arithmetic; at
    batch 1 the decoder's cost is largely its operator count)."""

    def __init__(self, width: int, num_heads: int, tokens: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.tokens = tokens
        self.width = width
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, tokens: torch.Tensor, key_bias: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, N, C); key_bias (N,) added to every query's logit of each key (None: none)."""
        count, width = self.tokens, self.width
        head_width = width // self.num_heads
        query, key, value = self.qkv(tokens).reshape(-1, count, 3, self.num_heads, head_width).permute(2, 0, 3, 1, 4)
        logits = (query * head_width ** -0.5) @ key.transpose(-2, -1)
        weights = (logits if key_bias is None else logits + key_bias).softmax(dim=-1)
        return self.proj((weights @ value).transpose(1, 2).reshape(-1, count, width))


class Layer(nn.Module):
    """Pre-norm transformer layer: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: DecoderConfig, tokens: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width)
        self.attention = Attention(config.width, config.num_heads, tokens)
        self.norm2 = nn.LayerNorm(config.width)
        self.mlp = nn.Sequential(nn.Linear(config.width, config.mlp_width), nn.GELU(),
                                 nn.Linear(config.mlp_width, config.width))
        self.dropout = nn.Dropout(dropout)  # training only; the exported graph runs in eval mode

    def forward(self, tokens: torch.Tensor, key_bias: torch.Tensor | None = None) -> torch.Tensor:
        tokens = tokens + self.dropout(self.attention(self.norm1(tokens), key_bias))
        return tokens + self.dropout(self.mlp(self.norm2(tokens)))


class SkipTransformer(nn.Module):
    """`layers` (odd) transformer layers over `tokens` tokens with long skips between mirrored input and output
    layers, then a norm."""

    def __init__(self, config: DecoderConfig, layers: int, tokens: int, dropout: float = 0.0) -> None:
        super().__init__()
        half = (layers - 1) // 2
        self.inputs = nn.ModuleList(Layer(config, tokens, dropout) for _ in range(half))
        self.middle = Layer(config, tokens, dropout)
        self.outputs = nn.ModuleList(Layer(config, tokens, dropout) for _ in range(half))
        self.merges = nn.ModuleList(nn.Linear(2 * config.width, config.width) for _ in range(half))
        self.norm = nn.LayerNorm(config.width)

    def forward(self, tokens: torch.Tensor, key_bias: torch.Tensor | None = None) -> torch.Tensor:
        skips = []
        for layer in self.inputs:
            tokens = layer(tokens, key_bias)
            skips.append(tokens)
        tokens = self.middle(tokens, key_bias)
        for layer, merge in zip(self.outputs, self.merges):
            tokens = layer(merge(torch.cat([tokens, skips.pop()], dim=-1)), key_bias)
        return self.norm(tokens)


class MotionVAE(nn.Module):
    """Pose windows (B, W, pose_size) <-> latents (B, L, C). `pose_mean`, `pose_std` (pose_size,) normalise the
    representation inside the model (set from the training data), so callers pass and get raw numbers."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        tokens = config.latent_tokens + config.window
        self.register_buffer("pose_mean", torch.zeros(config.pose_size))
        self.register_buffer("pose_std", torch.ones(config.pose_size))
        self.pose_in = nn.Linear(config.pose_size, config.width)
        self.distribution_tokens = nn.Parameter(torch.zeros(1, config.latent_tokens, config.width))
        self.encoder_positions = nn.Parameter(0.02 * torch.randn(1, tokens, config.width))
        self.encoder = SkipTransformer(config, config.vae_layers, tokens)
        self.to_distribution = nn.Linear(config.width, 2 * config.latent_size)
        self.latent_in = nn.Linear(config.latent_size, config.width)
        self.frame_queries = nn.Parameter(torch.zeros(1, config.window, config.width))
        self.decoder_positions = nn.Parameter(0.02 * torch.randn(1, tokens, config.width))
        self.decoder = SkipTransformer(config, config.vae_layers, tokens)
        self.pose_out = nn.Linear(config.width, config.pose_size)

    def encode(self, poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """poses (B, W, pose_size) -> mean and log-variance (B, L, C)."""
        frames = self.pose_in((poses - self.pose_mean) / self.pose_std)
        tokens = torch.cat([self.distribution_tokens.expand(poses.shape[0], -1, -1), frames], dim=1)
        encoded = self.encoder(tokens + self.encoder_positions)[:, :self.config.latent_tokens]
        mean, log_variance = self.to_distribution(encoded).chunk(2, dim=-1)
        return mean, log_variance.clamp(-20.0, 10.0)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, L, C) -> poses (B, W, pose_size)."""
        tokens = torch.cat([self.latent_in(latents), self.frame_queries.expand(latents.shape[0], -1, -1)], dim=1)
        decoded = self.decoder(tokens + self.decoder_positions)[:, self.config.latent_tokens:]
        return self.pose_out(decoded) * self.pose_std + self.pose_mean


def timestep_embedding(timesteps: torch.Tensor, width: int) -> torch.Tensor:
    """Sinusoidal embedding (B, width) of integer timesteps (B,), as in DDPM / Stable Diffusion."""
    half = width // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    angles = timesteps.float()[:, None] * frequencies[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


# [a]_x, the cross-product matrix of a vector a (..., 3), is (a @ CROSS_MATRIX).unflatten(-1, (3, 3)).
CROSS_MATRIX = ((0, 0, 0, 0, 0, -1, 0, 1, 0), (0, 0, 1, 0, 0, 0, -1, 0, 0), (0, -1, 0, 1, 0, 0, 0, 0, 0))


def turn_points(poses: torch.Tensor, rotation_vectors: torch.Tensor) -> torch.Tensor:
    """Pose representations (..., 131) with their root-relative points turned by rotation vectors (..., 3); the
    twists are local and stay. Rodrigues' formula as a matrix, R = I + sin(a) K + (1 - cos(a)) K^2 (K the unit
    axis' cross-product matrix), then one matrix product: in ONNX about 20 operators, where the cross product
    written out took over 100 and cost a third more of the graph's time at batch 1."""
    from fasthmr_model.decoder.pose import NUM_POINTS

    angle = torch.sqrt(rotation_vectors.square().sum(dim=-1, keepdim=True) + 1e-12)[..., None]  # (..., 1, 1)
    cross = torch.tensor(CROSS_MATRIX, dtype=rotation_vectors.dtype, device=rotation_vectors.device)
    axis = (rotation_vectors @ cross).unflatten(-1, (3, 3)) / angle  # (..., 3, 3)
    eye = torch.eye(3, dtype=rotation_vectors.dtype, device=rotation_vectors.device)
    rotation = eye + torch.sin(angle) * axis + (1.0 - torch.cos(angle)) * (axis @ axis)
    points = poses[..., :3 * NUM_POINTS].unflatten(-1, (NUM_POINTS, 3))
    turned = points @ rotation.transpose(-1, -2)
    return torch.cat([turned.flatten(-2), poses[..., 3 * NUM_POINTS:]], dim=-1)


class Denoiser(nn.Module):
    """(noisy latents (B, L, C), timesteps (B,), frame features (B, W, D), crop rays (B, W, 3), frame poses
    (B, W, pose_size)) -> v-prediction (B, L, C). `pose_mean`, `pose_std` normalise the frame poses (the VAE's, set
    in training). A crop ray is the rotation vector turning the optical axis onto the crop's centre ray
    (data.crop.crop_ray_rotations); the frame poses' points are first turned by `ray_turn` * RAY_TURN_SCALE
    times it, per camera axis (x, y, z), a share learnt in training (zero at the start)."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("pose_mean", torch.zeros(config.pose_size))
        self.register_buffer("pose_std", torch.ones(config.pose_size))
        self.pose_in = nn.Linear(config.pose_size, config.width)
        self.latent_in = nn.Linear(config.latent_size, config.width)
        self.time_mlp = nn.Sequential(nn.Linear(config.width, config.width), nn.SiLU(),
                                      nn.Linear(config.width, config.width))
        # Features come from another network at another scale: normalise them first.
        self.feature_in = nn.Sequential(nn.LayerNorm(config.feature_size), nn.Linear(config.feature_size, config.width))
        self.ray_in = nn.Linear(CROP_RAY_SIZE, config.width)
        self.ray_turn = nn.Parameter(torch.zeros(CROP_RAY_SIZE))
        self.positions = nn.Parameter(
            0.02 * torch.randn(1, config.latent_tokens + 1 + config.window, config.width))
        self.body = SkipTransformer(config, config.denoiser_layers, config.latent_tokens + 1 + config.window,
                                    config.dropout)
        # Added to every attention logit of the timestep token (0: an ordinary token). start_from_vae_encoder
        # sets it very negative, so that the token is all but unseen at the start and its weight is learnt.
        self.time_key_bias = nn.Parameter(torch.zeros(1))
        self.latent_out = nn.Linear(config.width, config.latent_size)

    @torch.no_grad()
    def start_from_vae_encoder(self, vae: MotionVAE, latent_scale: float) -> None:
        """Initialise as the VAE's encoder reading the frame poses: at t = T - 1, x0 = -v is then the latent
        mean of the encoder's own pose window, in the denoiser's unit-variance units. The VAE has no timestep
        token: its key bias starts at START_TIME_KEY_BIAS (attention weight e^-10 of an ordinary token's). The
        features' and rays' projections, the ray turn and the noisy latents' start at zero, so what they add is learnt from the
        rendered sequences on top of a prior that is already a smoother."""
        if vae.config.width != self.config.width or vae.config.vae_layers != self.config.denoiser_layers:
            raise FastHMRError(f"the denoiser (width {self.config.width}, {self.config.denoiser_layers} layers) "
                               f"cannot start from a VAE encoder of width {vae.config.width} with "
                               f"{vae.config.vae_layers} layers")
        latents = self.config.latent_tokens
        self.body.load_state_dict(vae.encoder.state_dict())
        self.pose_in.load_state_dict(vae.pose_in.state_dict())
        self.pose_mean.copy_(vae.pose_mean)
        self.pose_std.copy_(vae.pose_std)
        for layer in (self.latent_in, self.feature_in[1], self.ray_in):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.positions[:, :latents] = vae.encoder_positions[:, :latents] + vae.distribution_tokens
        self.positions[:, latents + 1:] = vae.encoder_positions[:, latents:]
        size = self.config.latent_size
        self.latent_out.weight.copy_(-vae.to_distribution.weight[:size] / latent_scale)
        self.latent_out.bias.copy_(-vae.to_distribution.bias[:size] / latent_scale)
        self.time_key_bias.fill_(START_TIME_KEY_BIAS)
        self.ray_turn.zero_()

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, features: torch.Tensor, crop_rays: torch.Tensor,
                frame_poses: torch.Tensor) -> torch.Tensor:
        # timesteps (B,) or (1,) for all (the one-step graph: its timestep token is then a constant).
        time_token = self.time_mlp(timestep_embedding(timesteps, self.config.width))[:, None]
        time_token = time_token.expand(noisy.shape[0], -1, -1)
        frame_poses = turn_points(frame_poses, crop_rays * (RAY_TURN_SCALE * self.ray_turn))
        frames = (self.feature_in(features) + self.ray_in(crop_rays)
                  + self.pose_in((frame_poses - self.pose_mean) / self.pose_std))
        tokens = torch.cat([self.latent_in(noisy), time_token, frames], dim=1)
        zeros = self.time_key_bias.new_zeros
        key_bias = torch.cat([zeros(self.config.latent_tokens), self.time_key_bias, zeros(self.config.window)])
        return self.latent_out(self.body(tokens + self.positions, key_bias)[:, :self.config.latent_tokens])


class OneStepDecoder(nn.Module):
    """Frame features (B, W, D), crop rays (B, W, 3), frame poses (B, W, pose_size) and noise (B, L, C) -> pose
    representations (B, W, pose_size): the denoiser's
    single step at t = T - 1, then the VAE decoder. `latent_scale` maps the VAE's latents to unit variance
    (what the denoiser works in)."""

    def __init__(self, vae: MotionVAE, denoiser: Denoiser, latent_scale: float) -> None:
        super().__init__()
        config = denoiser.config
        self.vae = vae
        self.denoiser = denoiser
        alpha_bar = diffusion_schedule(config).alpha_bar[-1]
        # x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v; with zero terminal SNR alpha_bar = 0 at t = T - 1.
        self.signal = float(np.sqrt(alpha_bar))
        self.noise = float(np.sqrt(1.0 - alpha_bar))
        self.last_timestep = config.timesteps - 1
        self.latent_scale = float(latent_scale)

    def forward(self, features: torch.Tensor, crop_rays: torch.Tensor, frame_poses: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        timesteps = torch.full((1,), self.last_timestep, dtype=torch.int64, device=features.device)
        v = self.denoiser(noise, timesteps, features, crop_rays, frame_poses)
        latents = (self.signal * noise - self.noise * v) * self.latent_scale
        return self.vae.decode(latents)

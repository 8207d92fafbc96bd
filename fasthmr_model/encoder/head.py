"""HMR2.0's SMPL head in PyTorch: a one-query transformer decoder that cross-attends to the image tokens.

A zero token (B, 1, 1) is embedded to the head width, passes `head_depth` layers of pre-norm self-attention,
cross-attention (keys/values from the backbone tokens) and MLP, and the output token is read out as residuals
over the mean parameters: pose in 6D (24 joints, global orientation first), betas, and the weak-perspective
camera (s, tx, ty). The output token itself is returned as the per-frame feature.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from fasthmr_model.body.skeleton import NUM_BETAS
from fasthmr_model.encoder.config import CAM_SIZE, POSE_6D_SIZE, EncoderConfig


class HeadOutput(NamedTuple):
    """pose_6d (B, 144), betas (B, 10), cam (B, 3) = (s, tx, ty), feature (B, D)."""

    pose_6d: torch.Tensor
    betas: torch.Tensor
    cam: torch.Tensor
    feature: torch.Tensor


class HeadAttention(nn.Module):
    """Multi-head attention without q/k/v bias; self-attention when `context_width` is None."""

    def __init__(self, width: int, heads: int, dim_per_head: int, context_width: int | None = None) -> None:
        super().__init__()
        inner = heads * dim_per_head
        self.heads = heads
        self.scale = dim_per_head ** -0.5
        self.is_cross = context_width is not None
        if self.is_cross:
            self.query = nn.Linear(width, inner, bias=False)
            self.key_value = nn.Linear(context_width, 2 * inner, bias=False)
        else:
            self.query_key_value = nn.Linear(width, 3 * inner, bias=False)
        self.out = nn.Linear(inner, width)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, inner = x.shape
        return x.reshape(batch, length, self.heads, inner // self.heads).transpose(1, 2)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor | None = None,
                context_log_sizes: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, Q, width), context (B, N, context_width) -> (B, Q, width).

        context_log_sizes (B, N): proportional attention over merged context tokens (log of their sizes).
        """
        if self.is_cross:
            query = self.query(tokens)
            key, value = self.key_value(context).chunk(2, dim=-1)
        else:
            query, key, value = self.query_key_value(tokens).chunk(3, dim=-1)
        query, key, value = (self._split_heads(x) for x in (query, key, value))
        logits = query @ key.transpose(-2, -1) * self.scale
        if context_log_sizes is not None:
            logits = logits + context_log_sizes[:, None, None, :]
        attention = logits.softmax(dim=-1)
        mixed = (attention @ value).transpose(1, 2)
        return self.out(mixed.reshape(mixed.shape[0], mixed.shape[1], -1))


class HeadLayer(nn.Module):
    """One decoder layer: x += self_attn(norm(x)); x += cross_attn(norm(x), tokens); x += mlp(norm(x))."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        width = config.head_width
        self.self_attn_norm = nn.LayerNorm(width)
        self.self_attn = HeadAttention(width, config.head_heads, config.head_dim_per_head)
        self.cross_attn_norm = nn.LayerNorm(width)
        self.cross_attn = HeadAttention(width, config.head_heads, config.head_dim_per_head, config.width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, config.head_mlp_width), nn.GELU(), nn.Linear(config.head_mlp_width, width)
        )

    def forward(self, query: torch.Tensor, image_tokens: torch.Tensor,
                token_log_sizes: torch.Tensor | None = None) -> torch.Tensor:
        query = query + self.self_attn(self.self_attn_norm(query))
        query = query + self.cross_attn(self.cross_attn_norm(query), image_tokens, token_log_sizes)
        return query + self.mlp(self.mlp_norm(query))


class SmplHead(nn.Module):
    """image tokens (B, N, C) -> HeadOutput. N may be anything (token merging shrinks it; then
    token_log_sizes (B, N) weighs each merged token's attention by its size)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        width = config.head_width
        self.token_embedding = nn.Linear(1, width)
        self.query_position = nn.Parameter(torch.zeros(1, 1, width))
        self.layers = nn.ModuleList(HeadLayer(config) for _ in range(config.head_depth))
        self.pose_readout = nn.Linear(width, POSE_6D_SIZE)
        self.betas_readout = nn.Linear(width, NUM_BETAS)
        self.cam_readout = nn.Linear(width, CAM_SIZE)
        # The read-outs are residuals over these mean parameters (HMR2.0: SMPL's mean pose/shape, cam (0.9, 0, 0)).
        self.register_buffer("mean_pose_6d", torch.zeros(1, POSE_6D_SIZE))
        self.register_buffer("mean_betas", torch.zeros(1, NUM_BETAS))
        self.register_buffer("mean_cam", torch.zeros(1, CAM_SIZE))

    def forward(self, image_tokens: torch.Tensor, token_log_sizes: torch.Tensor | None = None) -> HeadOutput:
        zero_query = image_tokens.new_zeros(image_tokens.shape[0], 1, 1)
        query = self.token_embedding(zero_query) + self.query_position
        for layer in self.layers:
            query = layer(query, image_tokens, token_log_sizes)
        feature = query[:, 0]
        return HeadOutput(
            pose_6d=self.pose_readout(feature) + self.mean_pose_6d,
            betas=self.betas_readout(feature) + self.mean_betas,
            cam=self.cam_readout(feature) + self.mean_cam,
            feature=feature,
        )

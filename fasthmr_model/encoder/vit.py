"""HMR2.0's ViT backbone (ViTPose layout) in PyTorch: patch embedding, pre-norm blocks, last norm.

The backbone returns its tokens as (B, N, C) and never reshapes them to a grid, so that token merging can
shrink N without touching the head. Attention is written out (no fused kernel): that path exports to ONNX
and is the one a later merging step hooks into.
"""

from __future__ import annotations

import torch
from torch import nn

from fasthmr_model.encoder.config import NUM_TOKENS, PATCH_PADDING, PATCH_SIZE, EncoderConfig

# ViTPose uses LayerNorm(eps=1e-6) in every block and in last_norm.
VIT_LAYER_NORM_EPS = 1e-6


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (with bias), as in ViTPose."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (width // num_heads) ** -0.5
        self.qkv = nn.Linear(width, 3 * width, bias=True)
        self.proj = nn.Linear(width, width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, C) -> (B, N, C)."""
        batch, num_tokens, width = tokens.shape
        qkv = self.qkv(tokens).reshape(batch, num_tokens, 3, self.num_heads, width // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        attention = ((query * self.scale) @ key.transpose(-2, -1)).softmax(dim=-1)
        mixed = (attention @ value).transpose(1, 2).reshape(batch, num_tokens, width)
        return self.proj(mixed)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, width: int, hidden_width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden_width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_width, width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(tokens)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width, eps=VIT_LAYER_NORM_EPS)
        self.attn = SelfAttention(config.width, config.num_heads)
        self.norm2 = nn.LayerNorm(config.width, eps=VIT_LAYER_NORM_EPS)
        self.mlp = Mlp(config.width, config.mlp_width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.attn(self.norm1(tokens))
        return tokens + self.mlp(self.norm2(tokens))


class ViTBackbone(nn.Module):
    """image (B, 3, 256, 192) -> tokens (B, 192, C), row-major over the 16x12 token grid."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(
            3, config.width, kernel_size=PATCH_SIZE, stride=PATCH_SIZE, padding=PATCH_PADDING
        )
        # ViTPose keeps a (1, N + 1, C) table from its class-token ancestry and adds the first row to every token.
        self.pos_embed = nn.Parameter(torch.zeros(1, NUM_TOKENS + 1, config.width))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.last_norm = nn.LayerNorm(config.width, eps=VIT_LAYER_NORM_EPS)

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, 256, 192) -> patch tokens with positions (B, 192, C)."""
        tokens = self.patch_embed(image).flatten(2).transpose(1, 2)
        return tokens + self.pos_embed[:, 1:] + self.pos_embed[:, :1]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(image)
        for block in self.blocks:
            tokens = block(tokens)
        return self.last_norm(tokens)

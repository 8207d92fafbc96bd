"""HMR2.0's ViT backbone (ViTPose layout) in PyTorch: patch embedding, pre-norm blocks, last norm.

The backbone returns its tokens as (B, N, C) and never reshapes them to a grid, so that token merging can
shrink N without touching the head. Attention is written out (no fused kernel): that path exports to ONNX.

A `MergePlan` shapes it: ECLM-merged blocks are ordinary blocks (fewer of them; their weights come from
`fasthmr_model.encoder.eclm`), and the first blocks merge tokens (`fasthmr_model.encoder.tome`) between
attention and MLP. Without token merging, the forward pass is exactly the plain ViT's.
"""

from __future__ import annotations

import torch
from torch import nn

from fasthmr_model.encoder.config import NUM_TOKENS, PATCH_PADDING, PATCH_SIZE, EncoderConfig
from fasthmr_model.encoder.merge_plan import MergePlan
from fasthmr_model.encoder.tome import TokenState, initial_state, merge_step

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
        return self.attend(tokens)[0]

    def attend(self, tokens: torch.Tensor, log_sizes: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, N, C) -> (output (B, N, C), keys (B, heads, N, head_dim)).

        log_sizes (B, N): proportional attention (ToMe): a token that stands for s tokens gets log(s)
        added to its attention logits, as if its s copies were all there.
        """
        batch, num_tokens, width = tokens.shape
        qkv = self.qkv(tokens).reshape(batch, num_tokens, 3, self.num_heads, width // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        logits = (query * self.scale) @ key.transpose(-2, -1)
        if log_sizes is not None:
            logits = logits + log_sizes[:, None, None, :]
        attention = logits.softmax(dim=-1)
        mixed = (attention @ value).transpose(1, 2).reshape(batch, num_tokens, width)
        return self.proj(mixed), key


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
    """image (B, 3, 256, 192) -> tokens (B, 192, C), row-major over the 16x12 token grid; with token
    merging (`merge_forward`), (B, M', C) tokens in no particular order and their sizes."""

    def __init__(self, config: EncoderConfig, plan: MergePlan = MergePlan()) -> None:
        super().__init__()
        self.plan = plan
        self.patch_embed = nn.Conv2d(
            3, config.width, kernel_size=PATCH_SIZE, stride=PATCH_SIZE, padding=PATCH_PADDING
        )
        # ViTPose keeps a (1, N + 1, C) table from its class-token ancestry and adds the first row to every token.
        self.pos_embed = nn.Parameter(torch.zeros(1, NUM_TOKENS + 1, config.width))
        self.blocks = nn.ModuleList(Block(config) for _ in plan.block_groups(config.depth))
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

    def merge_forward(self, image: torch.Tensor, person_tokens: torch.Tensor) -> tuple[torch.Tensor, TokenState]:
        """image (B, 3, 256, 192), person_tokens (B, 192) -> tokens (B, M', C) and their TokenState."""
        plan = self.plan
        tokens = self.embed(image)
        state = initial_state(person_tokens)
        for index, block in enumerate(self.blocks):
            merged = plan.token_schedule[index] if index < len(plan.token_schedule) else 0
            # Sizes are all 1 until the first merge: proportional attention starts after it.
            log_sizes = state.sizes.log() if plan.proportional_attention and index > 0 else None
            attended, keys = block.attn.attend(block.norm1(tokens), log_sizes)
            tokens = tokens + attended
            if merged and plan.merge_point == "after_attention":
                tokens, state = merge_step(tokens, self._metric(tokens, keys), state, merged, plan.crowd_policy)
            tokens = tokens + block.mlp(block.norm2(tokens))
            if merged and plan.merge_point == "after_mlp":
                tokens, state = merge_step(tokens, self._metric(tokens, keys), state, merged, plan.crowd_policy)
        return self.last_norm(tokens), state

    def _metric(self, tokens: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """What bipartite matching compares, (B, N, D): keys averaged over heads (ToMe) or the tokens."""
        return keys.mean(dim=1) if self.plan.similarity == "keys" else tokens

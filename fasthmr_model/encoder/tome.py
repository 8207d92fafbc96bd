"""Mask-ToMe: bipartite soft matching that merges background tokens and spares the person (torch).

One merge step takes N tokens to N - r: tokens at even positions (set A) are sources, tokens at odd
positions (set B) destinations; each A token finds its most similar B token (cosine similarity of a
per-token metric), the r A tokens with the best matches merge into their partners by a size-weighted
average (several may share one partner) and the other A tokens stay. Every token carries its size (how many
input tokens it stands for) and its person count (how many of those were person tokens).

Person tokens neither leave nor receive a merge while background pairs remain. When they do not suffice
(a crowded crop: more than 192 - M' person tokens), the "tiers" policy orders the candidate pairs as
background-background, then person-person, then mixed, by similarity within each tier, so the person's
most redundant tokens merge with each other before anything mixes person and background. The paper's
"exclude" policy gives every pair with a person token the same -inf score, so those merge in index order.

Written for export (ONNX, TensorRT): no sort, no scatter, no data-dependent shape. The top-r selection is a
rank computed by pairwise comparison, with ties broken by index, so PyTorch and ONNX Runtime select the same
tokens even on equal scores (-inf rows, duplicated tokens); gathering and merging are one-hot matrix
products, whose sizes follow from N and r alone.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# Tier offsets of the "tiers" policy: cosine similarities lie in [-1, 1], so offsets 4 apart never overlap.
PERSON_PAIR_OFFSET = -4.0
MIXED_PAIR_OFFSET = -8.0


class TokenState(NamedTuple):
    """What travels with the tokens through the merges. sizes (B, N): input tokens each one stands for;
    person (B, N): how many of those were person tokens (0 = pure background)."""

    sizes: torch.Tensor
    person: torch.Tensor


def initial_state(person_tokens: torch.Tensor) -> TokenState:
    """person_tokens (B, 192) flags in {0, 1} -> the state before any merge (every size 1)."""
    return TokenState(sizes=torch.ones_like(person_tokens), person=person_tokens)


def descending_rank(values: torch.Tensor) -> torch.Tensor:
    """values (B, N) -> rank (B, N) int64: 0 for the largest; equal values rank by index (first = better).

    A pairwise comparison instead of a sort, so that every runtime ranks ties the same way.
    """
    count = values.shape[-1]
    larger = values.unsqueeze(-2) > values.unsqueeze(-1)  # [b, i, j]: values[j] beats values[i]
    earlier = torch.ones(count, count, dtype=torch.bool, device=values.device).tril(-1)  # j < i
    tied_earlier = (values.unsqueeze(-2) == values.unsqueeze(-1)) & earlier
    return (larger | tied_earlier).to(torch.int64).sum(-1)


def pair_scores(metric: torch.Tensor, person: torch.Tensor, crowd_policy: str) -> torch.Tensor:
    """metric (B, N, D), person counts (B, N) -> scores (B, N_A, N_B) of merging A token i into B token j."""
    metric = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    scores = metric[:, 0::2] @ metric[:, 1::2].transpose(-1, -2)
    person_a = (person[:, 0::2] > 0).unsqueeze(-1)
    person_b = (person[:, 1::2] > 0).unsqueeze(-2)
    if crowd_policy == "exclude":
        return scores.masked_fill(person_a | person_b, float("-inf"))
    both = (person_a & person_b).to(scores.dtype)
    mixed = (person_a ^ person_b).to(scores.dtype)
    return scores + PERSON_PAIR_OFFSET * both + MIXED_PAIR_OFFSET * mixed


def merge_step(tokens: torch.Tensor, metric: torch.Tensor, state: TokenState, merged: int,
               crowd_policy: str = "tiers") -> tuple[torch.Tensor, TokenState]:
    """Merge `merged` (r) tokens: tokens (B, N, C), metric (B, N, D) -> tokens (B, N - r, C) and their state.

    The output holds the A tokens that stayed (in their order) and then every B token. r <= N // 2.
    """
    count_a = (tokens.shape[1] + 1) // 2
    count_b = tokens.shape[1] // 2
    kept = count_a - merged
    best_score, best_partner = pair_scores(metric, state.person, crowd_policy).max(dim=-1)  # (B, N_A)
    is_source = descending_rank(best_score) < merged  # (B, N_A)
    # to_partner[b, i, j] = 1 when A token i merges into B token j; to_kept[b, i, k] = 1 when A token i
    # stays and is the k-th of those that stay.
    partners = torch.arange(count_b, device=tokens.device)
    to_partner = ((best_partner.unsqueeze(-1) == partners) & is_source.unsqueeze(-1)).to(tokens.dtype)
    stays = ~is_source
    slot = stays.to(torch.int64).cumsum(-1) - 1
    slots = torch.arange(kept, device=tokens.device)
    to_kept = ((slot.unsqueeze(-1) == slots) & stays.unsqueeze(-1)).to(tokens.dtype)

    def gather_and_add(values: torch.Tensor) -> torch.Tensor:
        """values (B, N, D) -> (B, N - r, D): kept A values, then each B value plus its merged A values."""
        values_a, values_b = values[:, 0::2], values[:, 1::2]
        kept_values = to_kept.transpose(1, 2) @ values_a
        return torch.cat([kept_values, values_b + to_partner.transpose(1, 2) @ values_a], dim=1)

    sizes = gather_and_add(state.sizes.unsqueeze(-1))
    weighted = gather_and_add(tokens * state.sizes.unsqueeze(-1))
    person = gather_and_add(state.person.unsqueeze(-1))
    return weighted / sizes, TokenState(sizes=sizes.squeeze(-1), person=person.squeeze(-1))

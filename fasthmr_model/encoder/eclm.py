"""ECLM, Error-Constrained Layer Merging: consecutive ViT blocks collapsed into one by their weights.

Eq. 4 of the paper: blocks i..j become one block with theta* = theta_i + sum_{k=1..j-i} (theta_{i+k} - theta_i),
a task-arithmetic sum of deltas (not an average), every delta taken from the ORIGINAL weights. (The widely
copied reference code updates theta_i in place inside the loop, so each later delta is taken against the
running sum and the result collapses to theta_j.)

Which windows to merge is found by Algorithm 1 (`search_merge_windows`): from the last block down, a window
grows while the merged model's error on a calibration set stays within tau of the original model's error.

Everything here works on plain mappings of tensors or numpy arrays (only + and - are used), so it needs
no torch import and never modifies its inputs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from fasthmr_model.errors import FastHMRError

# "linear": the LayerNorms of a merged block are its first block's (only attention and MLP weights merge).
BASE_ONLY_TENSORS = {"all": (), "linear": ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")}


def merge_block_weights(blocks: Sequence[Mapping], base_only: Sequence[str] = ()) -> dict:
    """Eq. 4: per-block state dicts [theta_i, theta_{i+1}, ..., theta_j] -> theta_i + sum_k (theta_{i+k} - theta_i).

    Args:
        blocks: state dicts of the same keys (tensors or arrays), the first being the base block i.
        base_only: keys taken from the base block unmerged (e.g. the LayerNorms, see BASE_ONLY_TENSORS).
    Returns a new state dict; the inputs are left untouched.
    """
    if not blocks:
        raise FastHMRError("merge_block_weights needs at least one block")
    base = blocks[0]
    for index, block in enumerate(blocks[1:], start=1):
        if set(block) != set(base):
            raise FastHMRError(f"merge_block_weights: block {index} has keys {sorted(set(block) ^ set(base))} "
                               "that the base block does not share (or lacks them)")
    merged = {}
    for name, theta in base.items():
        total = copy.deepcopy(theta)  # never an alias of the input
        if name not in base_only:
            for block in blocks[1:]:
                total = total + (block[name] - theta)
        merged[name] = total
    return merged


def merge_backbone_state(state: Mapping, groups: Sequence[Sequence[int]], base_only: Sequence[str] = ()) -> dict:
    """A full encoder state dict (keys `backbone.blocks.{i}.*`) -> the state dict of the merged encoder.

    groups: original block indices of each merged block (`MergePlan.block_groups`); merged block k gets
    `backbone.blocks.{k}.*`. Every other tensor is passed through.
    """
    prefix = "backbone.blocks."
    per_block: dict[int, dict] = {}
    merged = {}
    for name, value in state.items():
        if name.startswith(prefix):
            index, rest = name[len(prefix):].split(".", 1)
            per_block.setdefault(int(index), {})[rest] = value
        else:
            merged[name] = value
    if sorted(per_block) != sorted(i for group in groups for i in group):
        raise FastHMRError(f"the merge groups {list(groups)} do not cover the {len(per_block)} blocks of the encoder")
    for new_index, group in enumerate(groups):
        block = merge_block_weights([per_block[i] for i in group], base_only)
        merged.update({f"{prefix}{new_index}.{rest}": value for rest, value in block.items()})
    return merged


@dataclass
class WindowSearch:
    """Algorithm 1's outcome: committed windows (first, last), the original error, and every trial
    as (windows tried, error, passed)."""

    windows: list[tuple[int, int]]
    original_error: float
    trials: list[tuple[list[tuple[int, int]], float, bool]] = field(default_factory=list)

    @property
    def merged_error(self) -> float:
        """The error of the committed plan (the original's when nothing was merged)."""
        passing = [error for windows, error, passed in self.trials if passed and windows == self.windows]
        return passing[-1] if passing else self.original_error


def search_merge_windows(depth: int, error_of: Callable[[list[tuple[int, int]]], float], tau: float
                         ) -> WindowSearch:
    """Algorithm 1: which windows of consecutive blocks to merge so that the error grows by less than tau.

    error_of(windows) is the calibration error (MPJPE, mm) of the model with those windows merged; [] is
    the original model. From the last block down: the window [top - 1, top] is tried, and while the
    model with the committed windows plus this one stays strictly within tau of the ORIGINAL error, the
    window grows downwards. When it fails, the last passing window (>= 2 blocks) is committed and the
    search continues below it; when even the pair fails, it slides down by one block.

    The paper's pseudo-code leaves a window that still passes when it reaches block 0 uncommitted; here it
    is committed: it passed the same test as any other window, and dropping it would throw away the
    deepest merge the calibration allowed.
    """
    if depth < 2:
        return WindowSearch([], error_of([]))
    original = error_of([])
    search = WindowSearch([], original)
    top = depth - 1
    while top >= 1:
        passing_first = None
        first = top - 1
        while first >= 0:
            trial = sorted(search.windows + [(first, top)])
            error = error_of(trial)
            passed = error - original < tau
            search.trials.append((trial, error, passed))
            if not passed:
                break
            passing_first = first
            first -= 1
        if passing_first is None:
            top -= 1
        else:
            search.windows = sorted(search.windows + [(passing_first, top)])
            top = passing_first - 1
    return search

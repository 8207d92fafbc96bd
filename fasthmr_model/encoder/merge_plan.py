"""What a merged encoder looks like, as data: ECLM's merged block windows and Mask-ToMe's token schedule.

A `MergePlan` is recorded in the bundle manifest (`encoder.merge`) and rebuilds the PyTorch module of a
merged bundle. It also gives the theoretical cost of a plan (`encoder_macs`), which `fasthmr bench` prints
next to the measured speed. Torch-free: the run time reads manifests too.

Token merging happens in the first blocks of the (ECLM-merged) backbone: block k merges
`token_schedule[k]` tokens, so the token count after every block is fixed by the plan and batches stay
rectangular. The paper's default goes 192 -> 152 -> 112 -> 90 (40/40/22).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

from fasthmr_model.body.skeleton import NUM_BETAS
from fasthmr_model.encoder.config import CAM_SIZE, NUM_TOKENS, POSE_6D_SIZE, EncoderConfig
from fasthmr_model.errors import FastHMRError

# The paper's schedule: 40 per block until M' = 90 of the 192 tokens remain.
PAPER_TOKEN_SCHEDULE = (40, 40, 22)
SIMILARITIES = ("keys", "tokens")
MERGE_POINTS = ("after_attention", "after_mlp")
CROWD_POLICIES = ("tiers", "exclude")
ECLM_TENSOR_SETS = ("all", "linear")


@dataclass(frozen=True)
class MergePlan:
    """Args:
        merged_windows: ECLM windows of consecutive original block indices (first, last), first < last, in
            increasing order and disjoint; each becomes one block (Eq. 4). Empty: no layer merging.
        eclm_tensors: "all" merges every tensor of the blocks; "linear" merges the attention and MLP
            weights and biases and keeps the window's first block's LayerNorms.
        token_schedule: tokens merged by block k of the merged backbone, k = 0, 1, ...; empty: no merging.
        similarity: what bipartite matching compares: "keys" (the attention keys averaged over heads, as
            ToMe) or "tokens" (the residual stream).
        merge_point: "after_attention" (ToMe: the MLP already runs on fewer tokens) or "after_mlp".
        proportional_attention: add log(token size) to the attention logits of merged tokens (ToMe), in
            the backbone and in the head's cross-attention.
        crowd_policy: how person tokens merge once there are too few background tokens left: "tiers"
            (ours: background pairs first, then person-person pairs by similarity, mixed pairs last) or
            "exclude" (the paper's: person tokens get -inf and whichever come first by index merge).
    """

    merged_windows: tuple[tuple[int, int], ...] = ()
    eclm_tensors: str = "all"
    token_schedule: tuple[int, ...] = ()
    similarity: str = "keys"
    merge_point: str = "after_attention"
    proportional_attention: bool = True
    crowd_policy: str = "tiers"

    def __post_init__(self) -> None:
        object.__setattr__(self, "merged_windows", tuple(tuple(int(i) for i in w) for w in self.merged_windows))
        object.__setattr__(self, "token_schedule", tuple(int(r) for r in self.token_schedule))
        previous_last = -1
        for window in self.merged_windows:
            if len(window) != 2 or not previous_last < window[0] < window[1]:
                raise FastHMRError(f"merge plan: ECLM windows must be increasing, disjoint (first, last) pairs "
                                   f"with first < last, got {list(self.merged_windows)}")
            previous_last = window[1]
        for name, value, allowed in (("similarity", self.similarity, SIMILARITIES),
                                     ("merge_point", self.merge_point, MERGE_POINTS),
                                     ("crowd_policy", self.crowd_policy, CROWD_POLICIES),
                                     ("eclm_tensors", self.eclm_tensors, ECLM_TENSOR_SETS)):
            if value not in allowed:
                raise FastHMRError(f"merge plan: {name} must be one of {allowed}, got {value!r}")
        counts = self.token_counts()
        for block, (before, merged) in enumerate(zip(counts, self.token_schedule)):
            if merged < 0 or merged > before // 2:
                raise FastHMRError(f"merge plan: block {block} cannot merge {merged} of {before} tokens "
                                   f"(bipartite matching merges at most half of them)")

    @property
    def merges_tokens(self) -> bool:
        return any(self.token_schedule)

    def block_groups(self, depth: int) -> list[list[int]]:
        """Original block indices of each block of the merged backbone, e.g. [[0], [1, 2, 3], [4]]."""
        if self.merged_windows and self.merged_windows[-1][1] >= depth:
            raise FastHMRError(f"merge plan: window {self.merged_windows[-1]} is beyond the {depth} blocks")
        starts = {first: last for first, last in self.merged_windows}
        groups, index = [], 0
        while index < depth:
            last = starts.get(index, index)
            groups.append(list(range(index, last + 1)))
            index = last + 1
        return groups

    def token_counts(self) -> list[int]:
        """Tokens entering block k for k = 0 .. len(token_schedule), the last entry being what remains."""
        counts = [NUM_TOKENS]
        for merged in self.token_schedule:
            counts.append(counts[-1] - merged)
        return counts

    @property
    def remaining_tokens(self) -> int:
        return self.token_counts()[-1]

    def to_dict(self) -> dict:
        values = asdict(self)
        values["merged_windows"] = [list(w) for w in self.merged_windows]
        values["token_schedule"] = list(self.token_schedule)
        return values

    @classmethod
    def from_dict(cls, values: dict | None) -> "MergePlan":
        """The plan written by `to_dict` (None: the unmerged encoder)."""
        if values is None:
            return cls()
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise FastHMRError(f"merge plan: unknown keys {unknown}; the bundle was written by another fasthmr "
                               "version: re-export it")
        return cls(**values)


def schedule_for(remaining: int, per_block: int = 40) -> tuple[int, ...]:
    """The schedule that merges `per_block` tokens per block until `remaining` of 192 are left.

    schedule_for(90) = (40, 40, 22), the paper's default.
    """
    if not 1 <= remaining <= NUM_TOKENS or per_block < 1:
        raise FastHMRError(f"token budget must be in 1..{NUM_TOKENS} with >= 1 merge per block, "
                           f"got {remaining} and {per_block}")
    schedule, count = [], NUM_TOKENS
    while count > remaining:
        merged = min(per_block, count - remaining, count // 2)
        schedule.append(merged)
        count -= merged
    return tuple(schedule)


def encoder_macs(config: EncoderConfig, plan: MergePlan = MergePlan()) -> int:
    """Multiply-accumulates of one image through the encoder (patch embedding, blocks, head).

    Per block of N tokens and width C: qkv and projection 4 N C^2, attention maps 2 N^2 C, MLP 2 N C M.
    With merging after attention, the MLP of a merging block runs on the reduced count. The matching
    itself (N^2 C / 4 for the similarity) is counted too; layer norms, softmax and GELU are not.
    """
    width, mlp = config.width, config.mlp_width
    tokens = plan.token_counts()
    total = NUM_TOKENS * width * 3 * 16 * 16  # patch embedding
    for block in range(len(plan.block_groups(config.depth))):
        before = tokens[min(block, len(tokens) - 1)]
        after = tokens[min(block + 1, len(tokens) - 1)]
        total += 4 * before * width * width + 2 * before * before * width
        mlp_tokens = after if plan.merge_point == "after_attention" else before
        total += 2 * mlp_tokens * width * mlp
        if after != before:
            metric_width = width // config.num_heads if plan.similarity == "keys" else width
            total += math.ceil(before / 2) * (before // 2) * metric_width
    head_inner = config.head_heads * config.head_dim_per_head
    remaining = tokens[-1]
    per_layer = (4 * config.head_width * head_inner  # self-attention of the one query
                 + 2 * config.head_width * head_inner  # cross-attention query and output
                 + 2 * remaining * width * head_inner  # cross-attention keys and values
                 + 2 * remaining * head_inner  # attention over the image tokens
                 + 2 * config.head_width * config.head_mlp_width)
    return total + config.head_depth * per_layer + config.head_width * (POSE_6D_SIZE + NUM_BETAS + CAM_SIZE)

"""Encoder sizes as data: one dataclass for the ViT backbone + SMPL head, and the named presets.

The geometry (256x192 input, patch 16 with padding 2 -> a 16x12 token grid) is HMR2.0's and is shared by
every preset, so the encoder graph contract (see `fasthmr_model.bundle`) is the same for all of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fasthmr_model.body.skeleton import NUM_JOINTS
from fasthmr_model.errors import FastHMRError

# HMR2.0 feeds the central 192 columns of a 256x256 crop: the person box is expanded to 3:4 (w:h).
IMAGE_HEIGHT = 256
IMAGE_WIDTH = 192
CROP_SIZE = 256
# HMR2.0's crop camera (s, tx, ty) projects with a 5000 px focal length in the 256 px crop, i.e. nearly
# orthographically; the camera sits at depth 2 * CROP_FOCAL_PX / (CROP_SIZE * s).
CROP_FOCAL_PX = 5000.0
PATCH_SIZE = 16
# ViTPose's patch conv pads by 2 px, so (256 + 4 - 16) // 16 + 1 = 16 rows and (192 + 4 - 16) // 16 + 1 = 12 columns.
PATCH_PADDING = 2
TOKEN_GRID = (
    (IMAGE_HEIGHT + 2 * PATCH_PADDING - PATCH_SIZE) // PATCH_SIZE + 1,
    (IMAGE_WIDTH + 2 * PATCH_PADDING - PATCH_SIZE) // PATCH_SIZE + 1,
)
NUM_TOKENS = TOKEN_GRID[0] * TOKEN_GRID[1]
POSE_6D_SIZE = 6 * NUM_JOINTS  # SMPL's tree (global orientation + 23 body joints) x 6D rotation
CAM_SIZE = 3


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of the ViT backbone and of the SMPL transformer-decoder head.

    Args:
        width: backbone token width C.
        depth: number of ViT blocks.
        num_heads: backbone attention heads (HMR2.0: head dim 80).
        mlp_width: hidden width of the backbone MLP.
        head_width: width of the head's query token (= the per-frame feature size D).
        head_depth: head layers (self-attn, cross-attn, MLP each).
        head_heads, head_dim_per_head: head attention geometry (HMR2.0: 8 x 64).
        head_mlp_width: hidden width of the head MLP.
    """

    width: int
    depth: int
    num_heads: int
    mlp_width: int
    head_width: int
    head_depth: int
    head_heads: int
    head_dim_per_head: int
    head_mlp_width: int

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or value <= 0:
                raise FastHMRError(f"encoder config: {field.name} must be a positive integer, got {value!r}")
        if self.width % self.num_heads:
            raise FastHMRError(
                f"encoder config: width {self.width} is not divisible by num_heads {self.num_heads}; "
                "choose a head count that divides the width"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "EncoderConfig":
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        missing = sorted(names - set(values))
        if unknown or missing:
            raise FastHMRError(f"encoder config: unknown keys {unknown}, missing keys {missing}")
        return cls(**values)


PRESETS: dict[str, EncoderConfig] = {
    # HMR2.0: ViT-H backbone (32 x 1280, 16 heads of 80) and its 6-layer cross-attention head.
    "hmr2-vith": EncoderConfig(
        width=1280, depth=32, num_heads=16, mlp_width=5120,
        head_width=1024, head_depth=6, head_heads=8, head_dim_per_head=64, head_mlp_width=1024,
    ),
    # The embedded default: the same classes, sized to train on a 2-core CPU and to ship in < 25 MB.
    # Measured here (batch 32, AdamW, torch CPU): width 192 x 12 blocks trains at ~16 images/s and
    # weighs 28 MB; width 128 x 12 at ~40 images/s and 14 MB. Twelve blocks leave ECLM room to merge.
    "tiny": EncoderConfig(
        width=128, depth=12, num_heads=2, mlp_width=512,
        head_width=192, head_depth=2, head_heads=4, head_dim_per_head=48, head_mlp_width=384,
    ),
}


def preset(name: str) -> EncoderConfig:
    """The preset called `name`; a FastHMRError lists the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise FastHMRError(f"unknown encoder preset {name!r}; known presets: {sorted(PRESETS)}") from None

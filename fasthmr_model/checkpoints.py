"""Converters from published checkpoints to our encoder: 4D-Humans' HMR2.0 Lightning checkpoint.

HMR2.0 keeps its weights under `state_dict` with the prefixes `backbone.` (ViTPose ViT-H) and `smpl_head.`
(the cross-attention SMPL head); `discriminator.*`, `smpl.*` and Lightning's bare `initialized` flag are
not part of the encoder. Every other key must map onto our encoder, every encoder tensor must be filled,
and every shape must match: otherwise a CheckpointError names the keys. Sizes are read from the tensors;
attention head counts cannot be, so they default to HMR2.0's (backbone head dim 80, head 8 x 64).
Export-time module: imports torch.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from fasthmr_model.encoder.config import NUM_TOKENS, EncoderConfig
from fasthmr_model.encoder.model import FastHMREncoder
from fasthmr_model.errors import CheckpointError, FastHMRError
from fasthmr_model.torch_files import load_torch_checkpoint

IGNORED_PREFIXES = ("discriminator.", "smpl.")
IGNORED_KEYS = ("initialized",)
HMR2_BACKBONE_HEAD_DIM = 80
HMR2_HEAD_HEADS = 8

# (HMR2.0 name, our name); "{i}" is a block/layer index; a name ending in "." is a prefix, else exact.
HMR2_KEY_RULES = (
    ("backbone.patch_embed.proj.", "backbone.patch_embed."),
    ("backbone.pos_embed", "backbone.pos_embed"),
    ("backbone.blocks.{i}.", "backbone.blocks.{i}."),
    ("backbone.last_norm.", "backbone.last_norm."),
    ("smpl_head.transformer.to_token_embedding.", "head.token_embedding."),
    ("smpl_head.transformer.pos_embedding", "head.query_position"),
    ("smpl_head.transformer.transformer.layers.{i}.0.norm.", "head.layers.{i}.self_attn_norm."),
    ("smpl_head.transformer.transformer.layers.{i}.0.fn.to_qkv.", "head.layers.{i}.self_attn.query_key_value."),
    ("smpl_head.transformer.transformer.layers.{i}.0.fn.to_out.0.", "head.layers.{i}.self_attn.out."),
    ("smpl_head.transformer.transformer.layers.{i}.1.norm.", "head.layers.{i}.cross_attn_norm."),
    ("smpl_head.transformer.transformer.layers.{i}.1.fn.to_q.", "head.layers.{i}.cross_attn.query."),
    ("smpl_head.transformer.transformer.layers.{i}.1.fn.to_kv.", "head.layers.{i}.cross_attn.key_value."),
    ("smpl_head.transformer.transformer.layers.{i}.1.fn.to_out.0.", "head.layers.{i}.cross_attn.out."),
    ("smpl_head.transformer.transformer.layers.{i}.2.norm.", "head.layers.{i}.mlp_norm."),
    ("smpl_head.transformer.transformer.layers.{i}.2.fn.net.0.", "head.layers.{i}.mlp.0."),
    ("smpl_head.transformer.transformer.layers.{i}.2.fn.net.3.", "head.layers.{i}.mlp.2."),
    ("smpl_head.decpose.", "head.pose_readout."),
    ("smpl_head.decshape.", "head.betas_readout."),
    ("smpl_head.deccam.", "head.cam_readout."),
    ("smpl_head.init_body_pose", "head.mean_pose_6d"),
    ("smpl_head.init_betas", "head.mean_betas"),
    ("smpl_head.init_cam", "head.mean_cam"),
)


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{i\}", r"(\d+)")
    return re.compile(pattern + (r"(.+)$" if template.endswith(".") else r"()$"))


_FORWARD = [(_compile(theirs), ours) for theirs, ours in HMR2_KEY_RULES]
_BACKWARD = [(_compile(ours), theirs) for theirs, ours in HMR2_KEY_RULES]


def _rename(key: str, rules: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, replacement in rules:
        match = pattern.match(key)
        if match:
            groups = match.groups()
            index, suffix = (groups[0], groups[1]) if len(groups) == 2 else (None, groups[0])
            return (replacement.replace("{i}", index) if index is not None else replacement) + suffix
    return None


def hmr2_to_ours(key: str) -> str | None:
    """Our state-dict name for an HMR2.0 checkpoint key (None when no rule covers it)."""
    return _rename(key, _FORWARD)


def ours_to_hmr2(key: str) -> str | None:
    """The HMR2.0 checkpoint key for one of our state-dict names (None when no rule covers it)."""
    return _rename(key, _BACKWARD)


def load_checkpoint_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of a Lightning checkpoint, loaded without running code from the file (load_torch_checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the HMR2.0 .ckpt file")
    checkpoint = load_torch_checkpoint(path)
    if not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} has no 'state_dict': it is not a PyTorch Lightning checkpoint of HMR2.0")
    return checkpoint["state_dict"]


def hmr2_config_from_state(state: dict[str, torch.Tensor], backbone_heads: int | None = None,
                           head_heads: int | None = None) -> EncoderConfig:
    """Read the encoder sizes from the tensors' shapes; head counts from the arguments or HMR2.0's."""
    def tensor(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"checkpoint lacks {key}: it is not an HMR2.0 checkpoint")
        return state[key]

    pos_embed = tensor("backbone.pos_embed")
    if pos_embed.ndim != 3 or pos_embed.shape[1] != NUM_TOKENS + 1:
        raise CheckpointError(f"backbone.pos_embed has shape {tuple(pos_embed.shape)}, expected (1, {NUM_TOKENS + 1}, C)"
                              ": the checkpoint is not for HMR2.0's 256x192 input")
    width = pos_embed.shape[2]
    inner = tensor("smpl_head.transformer.transformer.layers.0.0.fn.to_qkv.weight").shape[0] // 3
    head_heads = head_heads or HMR2_HEAD_HEADS
    if inner % head_heads:
        raise CheckpointError(f"head attention width {inner} is not divisible by {head_heads} heads; pass --head-heads")
    try:
        return EncoderConfig(
            width=width,
            depth=_count_indexed(state, r"backbone\.blocks\.(\d+)\."),
            num_heads=backbone_heads or max(1, width // HMR2_BACKBONE_HEAD_DIM),
            mlp_width=tensor("backbone.blocks.0.mlp.fc1.weight").shape[0],
            head_width=tensor("smpl_head.transformer.to_token_embedding.weight").shape[0],
            head_depth=_count_indexed(state, r"smpl_head\.transformer\.transformer\.layers\.(\d+)\."),
            head_heads=head_heads,
            head_dim_per_head=inner // head_heads,
            head_mlp_width=tensor("smpl_head.transformer.transformer.layers.0.2.fn.net.0.weight").shape[0],
        )
    except FastHMRError as error:
        raise CheckpointError(f"checkpoint sizes do not form an encoder: {error}; pass --backbone-heads") from None


def _count_indexed(state: dict, pattern: str) -> int:
    indices = {int(m.group(1)) for key in state if (m := re.match(pattern, key))}
    if not indices or indices != set(range(max(indices) + 1)):
        raise CheckpointError(f"checkpoint has non-consecutive or no indices for {pattern!r}: {sorted(indices)}")
    return max(indices) + 1


def convert_hmr2_state(state: dict[str, torch.Tensor], backbone_heads: int | None = None,
                       head_heads: int | None = None) -> FastHMREncoder:
    """An encoder holding exactly the checkpoint's weights; CheckpointError on any unused, missing or mis-shaped key."""
    config = hmr2_config_from_state(state, backbone_heads, head_heads)
    model = FastHMREncoder(config)
    expected = model.state_dict()
    mapped, unknown = {}, []
    for key, value in state.items():
        if key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES):
            continue
        ours = hmr2_to_ours(key)
        if ours is None or ours not in expected:
            unknown.append(key)
        else:
            mapped[ours] = value
    missing = sorted(ours_to_hmr2(key) or key for key in expected if key not in mapped)
    misshaped = [f"{ours_to_hmr2(key)} {tuple(value.shape)} (expected {tuple(expected[key].shape)})"
                 for key, value in mapped.items() if value.shape != expected[key].shape]
    if unknown or missing or misshaped:
        raise CheckpointError(
            "checkpoint does not match the HMR2.0 encoder: "
            + "; ".join(f"{label}: {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}"
                        for label, keys in (("unknown keys", unknown), ("missing keys", missing),
                                            ("mis-shaped keys", misshaped)) if keys)
        )
    model.load_state_dict({key: value.float() for key, value in mapped.items()}, strict=True)
    return model.eval()

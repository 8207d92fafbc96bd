"""HMR2.0 checkpoint conversion: self-built checkpoints in 4D-Humans' format, every key consumed, parity to 1e-4."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fasthmr_model.bundle import load_bundle, sha256_of
from fasthmr_model.checkpoints import (
    convert_hmr2_state, hmr2_config_from_state, hmr2_to_ours, load_checkpoint_state, ours_to_hmr2,
)
from fasthmr_model.cli import main
from fasthmr_model.encoder.config import EncoderConfig
from fasthmr_model.encoder.model import FastHMREncoder
from fasthmr_model.errors import CheckpointError
from fasthmr_model.export import parity_inputs
from fasthmr_model.runtime import EncoderSession, RuntimeConfig

# Small but with HMR2.0's structure; 4 backbone heads of 16 is not HMR2.0's head dim, so the test passes it.
SMALL = EncoderConfig(width=64, depth=3, num_heads=4, mlp_width=128, head_width=96, head_depth=2, head_heads=8,
                      head_dim_per_head=16, head_mlp_width=80)


def hmr2_state(config: EncoderConfig, seed: int = 0, std: float = 0.2) -> dict[str, torch.Tensor]:
    """Random weights (no zero biases, no unit norms) under HMR2.0's key names.

    Deep, wide configs need a small std, or the residual stream grows until float32 rounding alone
    exceeds the parity tolerance.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in FastHMREncoder(config).state_dict().items():
        unit = 1.0 if "norm" in key and key.endswith("weight") else 0.0
        state[ours_to_hmr2(key)] = torch.randn(value.shape, generator=generator) * std + unit
    return state


def lightning_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """What a PyTorch Lightning checkpoint of HMR2.0 holds besides the encoder."""
    extra = {"discriminator.D_conv_pose.0.weight": torch.randn(32, 9, 1), "smpl.body_pose_mean": torch.randn(69),
             "smpl.shapedirs": torch.randn(5, 3, 10), "initialized": torch.tensor(True)}
    return {"epoch": 35, "global_step": 1000000, "pytorch-lightning_version": "2.0.0",
            "state_dict": {**state, **extra}, "optimizer_states": [], "lr_schedulers": []}


def reference_forward(state: dict[str, torch.Tensor], image: torch.Tensor, backbone_heads: int, head_heads: int):
    """HMR2.0's forward written directly against its checkpoint keys (independent of our modules)."""
    s = {k: v.double() for k, v in state.items()}
    x = F.conv2d(image.double(), s["backbone.patch_embed.proj.weight"], s["backbone.patch_embed.proj.bias"],
                 stride=16, padding=2)
    x = x.flatten(2).transpose(1, 2)
    x = x + s["backbone.pos_embed"][:, 1:] + s["backbone.pos_embed"][:, :1]
    width = x.shape[-1]

    def attend(q, k, v, heads):
        b, n, inner = q.shape
        split = lambda t: t.reshape(b, t.shape[1], heads, inner // heads).transpose(1, 2)
        q, k, v = split(q), split(k), split(v)
        weights = (q @ k.transpose(-1, -2) / math.sqrt(inner // heads)).softmax(-1)
        return (weights @ v).transpose(1, 2).reshape(b, n, inner)

    i = 0
    while f"backbone.blocks.{i}.norm1.weight" in s:
        p = f"backbone.blocks.{i}."
        h = F.layer_norm(x, (width,), s[p + "norm1.weight"], s[p + "norm1.bias"], eps=1e-6)
        q, k, v = F.linear(h, s[p + "attn.qkv.weight"], s[p + "attn.qkv.bias"]).chunk(3, -1)
        x = x + F.linear(attend(q, k, v, backbone_heads), s[p + "attn.proj.weight"], s[p + "attn.proj.bias"])
        h = F.layer_norm(x, (width,), s[p + "norm2.weight"], s[p + "norm2.bias"], eps=1e-6)
        h = F.linear(F.gelu(F.linear(h, s[p + "mlp.fc1.weight"], s[p + "mlp.fc1.bias"])),
                     s[p + "mlp.fc2.weight"], s[p + "mlp.fc2.bias"])
        x = x + h
        i += 1
    context = F.layer_norm(x, (width,), s["backbone.last_norm.weight"], s["backbone.last_norm.bias"], eps=1e-6)

    t = "smpl_head.transformer."
    token = F.linear(torch.zeros(image.shape[0], 1, 1, dtype=torch.float64), s[t + "to_token_embedding.weight"],
                     s[t + "to_token_embedding.bias"]) + s[t + "pos_embedding"]
    dim = token.shape[-1]
    i = 0
    while f"{t}transformer.layers.{i}.0.norm.weight" in s:
        p = f"{t}transformer.layers.{i}."
        norm = lambda z, n: F.layer_norm(z, (dim,), s[p + f"{n}.norm.weight"], s[p + f"{n}.norm.bias"])
        q, k, v = F.linear(norm(token, 0), s[p + "0.fn.to_qkv.weight"]).chunk(3, -1)
        token = token + F.linear(attend(q, k, v, head_heads), s[p + "0.fn.to_out.0.weight"], s[p + "0.fn.to_out.0.bias"])
        q = F.linear(norm(token, 1), s[p + "1.fn.to_q.weight"])
        k, v = F.linear(context, s[p + "1.fn.to_kv.weight"]).chunk(2, -1)
        token = token + F.linear(attend(q, k, v, head_heads), s[p + "1.fn.to_out.0.weight"], s[p + "1.fn.to_out.0.bias"])
        h = F.gelu(F.linear(norm(token, 2), s[p + "2.fn.net.0.weight"], s[p + "2.fn.net.0.bias"]))
        token = token + F.linear(h, s[p + "2.fn.net.3.weight"], s[p + "2.fn.net.3.bias"])
        i += 1
    feature = token[:, 0]
    return {
        "pose_6d": F.linear(feature, s["smpl_head.decpose.weight"], s["smpl_head.decpose.bias"]) + s["smpl_head.init_body_pose"],
        "betas": F.linear(feature, s["smpl_head.decshape.weight"], s["smpl_head.decshape.bias"]) + s["smpl_head.init_betas"],
        "cam": F.linear(feature, s["smpl_head.deccam.weight"], s["smpl_head.deccam.bias"]) + s["smpl_head.init_cam"],
        "feature": feature,
    }


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "hmr2.ckpt"
    state = hmr2_state(SMALL)
    torch.save(lightning_checkpoint(state), path)
    return path, state


def test_key_rules_are_a_bijection_on_the_encoder():
    for key in FastHMREncoder(SMALL).state_dict():
        theirs = ours_to_hmr2(key)
        assert theirs is not None and theirs.startswith(("backbone.", "smpl_head.")), key
        assert hmr2_to_ours(theirs) == key


def test_sizes_are_read_from_shapes(checkpoint_file):
    _, state = checkpoint_file
    config = hmr2_config_from_state(state, backbone_heads=4)
    assert config == SMALL
    # Without a flag the backbone head count is HMR2.0's: width / 80 (here at least 1).
    assert hmr2_config_from_state(state).num_heads == 1


def test_convert_cli_reproduces_reference_through_onnxruntime(checkpoint_file, tmp_path, capsys):
    path, state = checkpoint_file
    out = tmp_path / "bundle"
    assert main(["convert-hmr2", str(path), "--out", str(out), "--backbone-heads", "4"]) == 0
    assert "max abs difference" in capsys.readouterr().out
    bundle = load_bundle(out)
    assert bundle.provenance["source"] == "hmr2-checkpoint"
    # The checkpoint by name and checksum, never by its path on this machine.
    assert bundle.provenance["checkpoint"] == path.name
    assert bundle.provenance["checkpoint_sha256"] == sha256_of(path)
    images, person_tokens = parity_inputs(batch=3, seed=1)
    produced = EncoderSession(bundle, RuntimeConfig(provider="cpu")).run(images, person_tokens)
    reference = reference_forward(state, torch.from_numpy(images), backbone_heads=4, head_heads=8)
    for name, value in produced._asdict().items():
        np.testing.assert_allclose(value, reference[name].numpy(), atol=1e-4, rtol=0, err_msg=name)


def test_every_checkpoint_key_is_consumed(checkpoint_file):
    _, state = checkpoint_file
    model = convert_hmr2_state(state, backbone_heads=4)
    ours = model.state_dict()
    for key, value in state.items():
        assert torch.equal(ours[hmr2_to_ours(key)], value), key


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("smpl_head.deccam.bias"), "missing keys: smpl_head.deccam.bias"),
    (lambda s: s.__setitem__("backbone.cls_token", torch.zeros(1, 1, 64)), "unknown keys: backbone.cls_token"),
    (lambda s: s.__setitem__("smpl_head.decshape.weight", torch.zeros(11, 96)), "mis-shaped keys: smpl_head.decshape"),
    (lambda s: s.pop("backbone.pos_embed"), "lacks backbone.pos_embed"),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith("backbone.blocks.1.")], "non-consecutive"),
])
def test_damaged_checkpoints_name_the_keys(checkpoint_file, damage, message):
    state = dict(checkpoint_file[1])
    damage(state)
    with pytest.raises(CheckpointError, match=message.replace(".", r"\.")):
        convert_hmr2_state(state, backbone_heads=4)


def test_checkpoint_with_foreign_hyperparameters_loads_without_running_code(tmp_path):
    """Lightning stores HMR2.0's yacs config; the loader must not need (or run) that class."""
    module = types.ModuleType("yacs.config")

    class CfgNode(dict):
        def __reduce__(self):
            return (CfgNode, (), None, None, iter(self.items()))

    CfgNode.__module__ = "yacs.config"
    CfgNode.__qualname__ = "CfgNode"
    module.CfgNode = CfgNode
    sys.modules["yacs"], sys.modules["yacs.config"] = types.ModuleType("yacs"), module
    try:
        config = CfgNode()
        config["MODEL"] = {"IMAGE_SIZE": 256}
        checkpoint = lightning_checkpoint(hmr2_state(SMALL))
        checkpoint["hyper_parameters"] = {"cfg": config}
        torch.save(checkpoint, tmp_path / "with_cfg.ckpt")
    finally:
        del sys.modules["yacs"], sys.modules["yacs.config"]
    state = load_checkpoint_state(tmp_path / "with_cfg.ckpt")
    assert "backbone.pos_embed" in state


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_unreadable_checkpoints_fail_clearly(tmp_path, content, capsys):
    path = tmp_path / "bad.ckpt"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    assert main(["convert-hmr2", str(path), "--out", str(out)]) == 2
    assert "error" in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == ([path] if content is not None else [])


def test_plain_dict_without_state_dict_is_refused(tmp_path):
    torch.save({"model": {}}, tmp_path / "x.ckpt")
    with pytest.raises(CheckpointError, match="state_dict"):
        load_checkpoint_state(tmp_path / "x.ckpt")

"""ECLM: Eq. 4 against the formula, Algorithm 1 on known error surfaces, bundles read back into PyTorch, and
`fasthmr merge` end to end on a few frames."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from fasthmr_model.bundle import load_bundle
from fasthmr_model.cli import main
from fasthmr_model.encoder.config import PRESETS
from fasthmr_model.encoder.eclm import merge_backbone_state, merge_block_weights, search_merge_windows
from fasthmr_model.encoder.merge_plan import MergePlan
from fasthmr_model.encoder.model import build_encoder
from fasthmr_model.errors import BundleError, FastHMRError
from fasthmr_model.export import build_bundle, encoder_reference_outputs, load_encoder_from_bundle, parity_inputs
from fasthmr_model.merging import merged_encoder, original_encoder
from tiny_encoders import perturbed_tiny_encoder


def random_blocks(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"attn.qkv.weight": rng.standard_normal((6, 2)), "norm1.weight": rng.standard_normal(2)}
            for _ in range(count)]


@pytest.mark.parametrize("count", [1, 2, 4])
def test_merge_block_weights_is_eq_4(count):
    blocks = random_blocks(count)
    before = [{k: v.copy() for k, v in block.items()} for block in blocks]
    merged = merge_block_weights(blocks)
    for name in blocks[0]:
        base = blocks[0][name]
        expected = base + sum(block[name] - base for block in blocks[1:])  # theta_i + sum_k (theta_{i+k} - theta_i)
        np.testing.assert_allclose(merged[name], expected, atol=1e-12)
        # = sum of all blocks minus (count - 1) base blocks: not an average, and not the last block.
        np.testing.assert_allclose(merged[name], sum(b[name] for b in blocks) - (count - 1) * base, atol=1e-12)
    for block, saved in zip(blocks, before):  # inputs untouched
        for name in block:
            np.testing.assert_array_equal(block[name], saved[name])
    if count > 2:
        assert not np.allclose(merged["attn.qkv.weight"], blocks[-1]["attn.qkv.weight"])


def test_merge_block_weights_on_tensors_and_base_only_keys():
    blocks = [{name: torch.from_numpy(value) for name, value in block.items()} for block in random_blocks(3, 1)]
    merged = merge_block_weights(blocks, base_only=("norm1.weight",))
    assert torch.equal(merged["norm1.weight"], blocks[0]["norm1.weight"])
    assert merged["norm1.weight"] is not blocks[0]["norm1.weight"]
    expected = blocks[1]["attn.qkv.weight"] + blocks[2]["attn.qkv.weight"] - blocks[0]["attn.qkv.weight"]
    torch.testing.assert_close(merged["attn.qkv.weight"], expected)
    with pytest.raises(FastHMRError, match="keys"):
        merge_block_weights([blocks[0], {"other": blocks[1]["norm1.weight"]}])


def test_merged_backbone_state_follows_the_groups():
    model = build_encoder(PRESETS["tiny"], seed=1)
    state = model.state_dict()
    merged = merge_backbone_state(state, MergePlan(merged_windows=((2, 4),)).block_groups(12))
    assert sum(key.endswith("attn.qkv.weight") for key in merged) == 10
    torch.testing.assert_close(merged["backbone.blocks.2.mlp.fc1.weight"],
                               state["backbone.blocks.3.mlp.fc1.weight"] + state["backbone.blocks.4.mlp.fc1.weight"]
                               - state["backbone.blocks.2.mlp.fc1.weight"])
    torch.testing.assert_close(merged["backbone.blocks.3.norm1.bias"], state["backbone.blocks.5.norm1.bias"])


def surface(costs: dict[tuple[int, int], float], original: float = 100.0):
    """An error function: the original error plus the cost of each window (unlisted windows cost 10)."""
    calls = []

    def error_of(windows):
        calls.append(list(windows))
        return original + sum(costs.get(tuple(window), 10.0) for window in windows)
    return error_of, calls


def test_search_grows_commits_and_slides():
    # 8 blocks. From the top: [6,7] passes, [5,7] passes, [4,7] fails -> commit [5,7]. Then [3,4] fails
    # (slide), [2,3] passes, [1,3] fails -> commit [2,3]. Then [0,1] fails. tau 1: strict <.
    error_of, calls = surface({(6, 7): 0.2, (5, 7): 0.5, (2, 3): 0.3, (1, 3): 0.6})
    search = search_merge_windows(8, error_of, tau=1.0)
    assert search.windows == [(2, 3), (5, 7)]
    assert search.original_error == 100.0 and search.merged_error == pytest.approx(100.8)
    assert calls[0] == [] and calls[1:4] == [[(6, 7)], [(5, 7)], [(4, 7)]]
    # The committed windows count against the same original error: [0, 1] at 0.0 would exceed nothing,
    # but the budget left is 1 - 0.8, so a window costing 0.25 fails.
    error_of, _ = surface({(6, 7): 0.2, (5, 7): 0.5, (2, 3): 0.3, (1, 3): 0.6, (0, 1): 0.25})
    assert search_merge_windows(8, error_of, tau=1.0).windows == [(2, 3), (5, 7)]


def test_search_commits_a_window_still_passing_at_block_zero():
    error_of, _ = surface({(2, 3): 0.1, (1, 3): 0.1, (0, 3): 0.1})
    assert search_merge_windows(4, error_of, tau=0.5).windows == [(0, 3)]
    error_of, _ = surface({})
    assert search_merge_windows(4, error_of, tau=0.5).windows == []
    exact, _ = surface({(2, 3): 0.5})
    assert search_merge_windows(4, exact, tau=0.5).windows == []  # strictly within tau


@pytest.fixture(scope="module")
def trained_like_model():
    return perturbed_tiny_encoder(7, 8)


@pytest.fixture(scope="module")
def base_bundle(trained_like_model, tmp_path_factory):
    return build_bundle(trained_like_model, tmp_path_factory.mktemp("eclm") / "base",
                        provenance={"source": "untrained"}, camera_anchor="pelvis", preset_name="tiny")


def test_bundles_read_back_into_pytorch(trained_like_model, base_bundle, tmp_path):
    bundle = base_bundle
    loaded = load_encoder_from_bundle(bundle)
    for name, value in trained_like_model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, atol=0, rtol=0, msg=name)
    plan = MergePlan(merged_windows=((3, 4),), token_schedule=(40, 40, 22))
    merged = merged_encoder(loaded, plan)
    merged_bundle = build_bundle(merged, tmp_path / "merged",
                                 provenance={"source": "untrained"}, camera_anchor="pelvis", preset_name="tiny")
    again = load_encoder_from_bundle(merged_bundle)
    assert again.plan == plan and len(again.backbone.blocks) == 11
    images, flags = parity_inputs(2)
    np.testing.assert_allclose(encoder_reference_outputs(again, images, flags)["pose_6d"],
                               encoder_reference_outputs(merged, images, flags)["pose_6d"], atol=1e-6)
    with pytest.raises(FastHMRError, match="already merged"):
        merged_encoder(again, plan)


def test_a_foreign_graph_is_refused(base_bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(base_bundle.path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["encoder"]["config"]["mlp_width"] = 256  # sizes that do not match the graph
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="re-export"):
        load_encoder_from_bundle(load_bundle(copy))


def test_merge_command_writes_a_calibrated_bundle(base_bundle, tmp_path, capsys):
    cache = tmp_path / "cache"
    bundle = base_bundle
    out = tmp_path / "merged"
    assert main(["merge", "--bundle", str(bundle.path), "--tau", "1000", "--calib", "val", "--frames", "2",
                 "--cache", str(cache), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    merged = load_bundle(out)
    record = merged.merge
    # tau 1000 mm: every window passes, so the search commits one window of all 12 blocks.
    assert record["eclm"]["merged_blocks"] == [list(range(12))] and record["eclm"]["tau_mm"] == 1000
    assert record["plan"]["token_schedule"] == [40, 40, 22]
    assert set(record["calibration"]) == {"split", "persons", "mpjpe_original_mm", "mpjpe_layers_merged_mm",
                                          "mpjpe_merged_mm"}
    assert merged.provenance["merged_from"] == {"bundle": bundle.path.name, "encoder_sha256": bundle.encoder_sha256}
    assert main(["merge", "--bundle", str(out), "--tau", "1", "--frames", "2", "--cache", str(cache),
                 "--out", str(tmp_path / "twice")]) == 2
    assert "already merged" in capsys.readouterr().err


def test_a_token_merged_bundle_gives_back_its_original(trained_like_model, base_bundle, tmp_path):
    """The shipped default merges tokens only: `fasthmr merge` and `fasthmr bench` start from its weights."""
    tokens_only = merged_encoder(load_encoder_from_bundle(base_bundle), MergePlan(token_schedule=(40, 40, 22)))
    bundle = build_bundle(tokens_only, tmp_path / "tokens",
                          provenance={"source": "untrained"}, camera_anchor="pelvis", preset_name="tiny")
    original = original_encoder(bundle)
    assert original.plan == MergePlan()
    for name, value in trained_like_model.state_dict().items():
        torch.testing.assert_close(original.state_dict()[name], value, atol=0, rtol=0, msg=name)

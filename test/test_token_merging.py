"""Mask-ToMe: the merge step's arithmetic, the person's protection, deterministic ties, and the exported graph
matching PyTorch (random, crowded and mask-less person flags)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from fasthmr_model.encoder.config import NUM_TOKENS, PRESETS
from fasthmr_model.encoder.merge_plan import MergePlan, encoder_macs, schedule_for
from fasthmr_model.encoder.tome import TokenState, descending_rank, initial_state, merge_step
from fasthmr_model.errors import FastHMRError
from fasthmr_model.export import build_bundle, encoder_reference_outputs, parity_inputs
from fasthmr_model.runtime import EncoderSession, RuntimeConfig
from tiny_encoders import perturbed_tiny_encoder

MERGED_PLAN = MergePlan(merged_windows=((8, 9),), token_schedule=(40, 40, 22))


def reference_merge(tokens, metric, sizes, person, merged):
    """A loop-by-loop bipartite soft matching (tiers policy) for one image: (N, C) -> (N - r, C)."""
    a, b = list(range(0, len(tokens), 2)), list(range(1, len(tokens), 2))
    unit = metric / np.linalg.norm(metric, axis=1, keepdims=True)
    best = []
    for i in a:
        scores = []
        for j in b:
            offset = -4.0 if person[i] and person[j] else (-8.0 if person[i] or person[j] else 0.0)
            scores.append(float(unit[i] @ unit[j]) + offset)
        best.append((max(scores), b[int(np.argmax(scores))]))
    order = sorted(range(len(a)), key=lambda k: (-best[k][0], k))
    sources = set(order[:merged])
    totals = {j: (tokens[j] * sizes[j], sizes[j], person[j]) for j in b}
    for k in sources:
        i, j = a[k], best[k][1]
        value, size, count = totals[j]
        totals[j] = (value + tokens[i] * sizes[i], size + sizes[i], count + person[i])
    kept = [a[k] for k in range(len(a)) if k not in sources]
    out_tokens = [tokens[i] for i in kept] + [totals[j][0] / totals[j][1] for j in b]
    out_sizes = [sizes[i] for i in kept] + [totals[j][1] for j in b]
    out_person = [person[i] for i in kept] + [totals[j][2] for j in b]
    return np.array(out_tokens), np.array(out_sizes), np.array(out_person)


def test_merge_step_matches_a_loop_reference():
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((2, 24, 5)).astype(np.float32)
    metric = rng.standard_normal((2, 24, 3)).astype(np.float32)
    sizes = rng.integers(1, 4, (2, 24)).astype(np.float32)
    person = (rng.random((2, 24)) < 0.3).astype(np.float32)
    out, state = merge_step(torch.from_numpy(tokens), torch.from_numpy(metric),
                            TokenState(torch.from_numpy(sizes), torch.from_numpy(person)), 7)
    for image in range(2):
        expected = reference_merge(tokens[image], metric[image], sizes[image], person[image], 7)
        np.testing.assert_allclose(out[image].numpy(), expected[0], atol=1e-5)
        np.testing.assert_allclose(state.sizes[image].numpy(), expected[1])
        np.testing.assert_allclose(state.person[image].numpy(), expected[2])


def test_person_tokens_survive_untouched_while_background_remains():
    rng = np.random.default_rng(1)
    tokens = torch.from_numpy(rng.standard_normal((1, NUM_TOKENS, 8)).astype(np.float32))
    flags = torch.zeros(1, NUM_TOKENS)
    flags[0, 60:130] = 1  # 70 person tokens, 122 background: 40/40/22 needs only background
    state = initial_state(flags)
    current = tokens
    for merged in (40, 40, 22):
        current, state = merge_step(current, current, state, merged)
    assert current.shape == (1, 90, 8)
    assert float(state.sizes.sum()) == NUM_TOKENS and float(state.person.sum()) == 70
    # Every person token is still a token of its own (size 1, person count 1), with its value unchanged.
    alone = (state.person[0] == 1) & (state.sizes[0] == 1)
    assert int(alone.sum()) == 70
    survivors = current[0][alone]
    assert all(torch.isclose(tokens[0, 60:130], row, atol=1e-6).all(-1).any() for row in survivors)


def test_crowded_crops_merge_person_with_person_before_mixing():
    flags = torch.ones(1, NUM_TOKENS)
    flags[0, :20] = 0  # 172 person tokens: far more than 192 - 90
    tokens = torch.randn(1, NUM_TOKENS, 8, generator=torch.Generator().manual_seed(2))
    state = initial_state(flags)
    current = tokens
    for merged in (40, 40, 22):
        current, state = merge_step(current, current, state, merged)
    mixed = (state.person > 0) & (state.person < state.sizes)
    assert not bool(mixed.any()), "a person token was merged with background although person pairs remained"
    assert float(state.person.sum()) == 172


def test_ties_break_by_index():
    values = torch.tensor([[0.5, 0.9, 0.5, float("-inf"), 0.9, float("-inf")]])
    assert descending_rank(values).tolist() == [[2, 0, 3, 4, 1, 5]]
    # Identical tokens everywhere: every score ties, and the first r sources (by index) merge into B token 0.
    tokens = torch.ones(1, 12, 4)
    _, state = merge_step(tokens, tokens, initial_state(torch.zeros(1, 12)), 3)
    assert state.sizes.tolist() == [[1, 1, 1, 4, 1, 1, 1, 1, 1]]


def test_schedules_and_costs():
    assert schedule_for(90) == (40, 40, 22)
    assert MergePlan(token_schedule=(40, 40, 22)).token_counts() == [192, 152, 112, 90]
    vith = PRESETS["hmr2-vith"]
    base = encoder_macs(vith)
    assert 120e9 < base < 126e9  # the paper's Tab. 12: 122.6 GMACs for HMR2.0's ViT-H + head
    both = encoder_macs(vith, MergePlan(merged_windows=((24, 25), (26, 27), (28, 29), (30, 31)),
                                        token_schedule=(40, 40, 22)))
    assert 2.25 < base / both < 2.45  # the paper: 122.6 / 52.8 = 2.32
    with pytest.raises(FastHMRError, match="at most half"):
        MergePlan(token_schedule=(100,))
    with pytest.raises(FastHMRError, match="increasing"):
        MergePlan(merged_windows=((3, 5), (5, 6)))
    with pytest.raises(FastHMRError, match="unknown keys"):
        MergePlan.from_dict({"token_schedule": [40], "mystery": 1})
    assert MergePlan.from_dict(MERGED_PLAN.to_dict()) == MERGED_PLAN


@pytest.fixture(scope="module")
def merged_model():
    return perturbed_tiny_encoder(5, 6, plan=MERGED_PLAN)


@pytest.fixture(scope="module")
def merged_bundle(merged_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("merged") / "bundle"
    return build_bundle(merged_model, out, provenance={"source": "untrained"}, camera_anchor="pelvis",
                        preset_name="tiny")


def person_flag_cases(batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch)
    grid = np.zeros((16, 12), np.float32)
    grid[2:15, 3:9] = 1  # a standing person: 78 tokens
    crowded = np.ones(NUM_TOKENS, np.float32)
    crowded[rng.choice(NUM_TOKENS, 30, replace=False)] = 0  # 162 person tokens
    return {
        "random": (rng.random((batch, NUM_TOKENS)) < 0.4).astype(np.float32),
        "person": np.repeat(grid.reshape(1, -1), batch, 0),
        "crowded": np.repeat(crowded[None], batch, 0),
        "all_person": np.ones((batch, NUM_TOKENS), np.float32),
        "mask_less": np.zeros((batch, NUM_TOKENS), np.float32),
    }


@pytest.mark.parametrize("batch", [1, 3])
def test_merged_graph_matches_pytorch(merged_model, merged_bundle, batch):
    images = parity_inputs(batch, seed=batch)[0]
    images[-1] = 0.0  # a blank crop: every token equal up to its position, the worst case for ties
    session = EncoderSession(merged_bundle, RuntimeConfig(provider="cpu"))
    for case, flags in person_flag_cases(batch).items():
        reference = encoder_reference_outputs(merged_model, images, flags)
        produced = session.run(images, flags)
        for name, value in produced._asdict().items():
            np.testing.assert_allclose(value, reference[name], atol=1e-4, rtol=0, err_msg=f"{case}: {name}")


def test_merged_graph_is_static_and_recorded(merged_bundle):
    graph = onnx.load(str(merged_bundle.encoder_path))
    ops = {node.op_type for node in graph.graph.node}
    assert not ops & {"ScatterElements", "ScatterND", "NonZero", "TopK", "Unique"}, ops
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "B"
    assert merged_bundle.merge["plan"] == MERGED_PLAN.to_dict()
    assert merged_bundle.merge_plan == MERGED_PLAN and merged_bundle.merge_plan.remaining_tokens == 90


def test_person_flags_steer_the_merged_encoder(merged_bundle):
    """The flags are a real input: a mask-less call and a masked call of the same crop differ."""
    session = EncoderSession(merged_bundle, RuntimeConfig(provider="cpu"))
    images = parity_inputs(1, seed=9)[0]
    cases = person_flag_cases(1)
    with_mask = session.run(images, cases["person"]).feature
    without = session.run(images, cases["mask_less"]).feature
    assert np.abs(with_mask - without).max() > 1e-3


class _MergeOnly(torch.nn.Module):
    def forward(self, tokens: torch.Tensor, person: torch.Tensor) -> tuple[torch.Tensor, ...]:
        merged, state = merge_step(tokens, tokens, initial_state(person), 10)
        return merged, state.sizes, state.person


def test_onnxruntime_breaks_exact_ties_like_pytorch(tmp_path):
    """Duplicated tokens give exactly equal scores; both runtimes must pick the same merges."""
    import onnxruntime

    path = tmp_path / "merge.onnx"
    example = (torch.zeros(1, 32, 4), torch.zeros(1, 32))
    torch.onnx.export(_MergeOnly(), example, str(path), dynamo=False, opset_version=17,
                      input_names=["tokens", "person"], dynamic_axes={"tokens": {0: "B"}, "person": {0: "B"}})
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    patterns = rng.standard_normal((3, 4)).astype(np.float32)
    tokens = np.stack([np.ones((32, 4), np.float32), patterns[rng.integers(0, 3, 32)]])  # all equal; 3 values
    person = np.zeros((2, 32), np.float32)
    person[1, ::5] = 1
    expected = [value.numpy() for value in _MergeOnly()(torch.from_numpy(tokens), torch.from_numpy(person))]
    produced = session.run(None, {"tokens": tokens, "person": person})
    for reference, value in zip(expected, produced):
        np.testing.assert_array_equal(value, reference)

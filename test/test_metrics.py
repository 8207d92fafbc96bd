"""Metrics against hand-computed cases: known offsets, a similarity PA must undo exactly, mirrored
shapes PA must not undo, constant-velocity and constant-acceleration sequences, and the EMDB/3DPW
joint and root conventions."""

import numpy as np
import pytest

from fasthmr_model.body.rotations import axis_angle_to_matrix
from fasthmr_model.body.skeleton import JOINT_NAMES
from fasthmr_model.errors import InputError
from fasthmr_model.metrics import (
    H36M_TO_LSP14,
    LSP14_JOINT_NAMES,
    SMPL_TO_LSP14,
    accel_error,
    benchmark_joints,
    evaluate,
    mpjpe,
    pa_mpjpe,
    procrustes_align,
    pve,
    root_position,
)


@pytest.fixture
def skeleton():
    """(24, 3) irregular joint positions in metres (no symmetry PA could exploit)."""
    return np.random.default_rng(0).normal(scale=0.4, size=(24, 3))


def test_mpjpe_of_a_known_offset_in_millimetres(skeleton):
    assert mpjpe(skeleton + [0.01, 0.0, 0.0], skeleton) == pytest.approx(10.0)
    # One of two joints off by a 3-4-5 triangle of millimetres: mean 2.5 mm.
    two_joints = np.zeros((2, 3))
    moved = two_joints.copy()
    moved[1] = [0.003, 0.004, 0.0]
    assert mpjpe(moved, two_joints) == pytest.approx(2.5)


def test_root_alignment_removes_a_global_offset(skeleton):
    shifted = skeleton + [0.2, -0.1, 0.3]
    assert mpjpe(shifted, skeleton, root_indices=(1, 2)) == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(root_position(skeleton, (1, 2)), 0.5 * (skeleton[1] + skeleton[2]))
    # Only the root moved: after rooting at it, every other joint is off by the same 30 mm.
    root_moved = skeleton.copy()
    root_moved[0] += [0.03, 0.0, 0.0]
    assert mpjpe(root_moved, skeleton, root_indices=(0,)) == pytest.approx(30.0 * 23 / 24)


def test_per_frame_results_for_sequences(skeleton):
    sequence = np.stack([skeleton, skeleton + [0.0, 0.02, 0.0], skeleton + [0.0, 0.0, 0.05]])
    np.testing.assert_allclose(mpjpe(sequence, np.stack([skeleton] * 3)), [0.0, 20.0, 50.0])


def test_pa_mpjpe_undoes_a_similarity_exactly(skeleton):
    rotation = axis_angle_to_matrix([0.4, -1.1, 2.0])
    transformed = 1.7 * skeleton @ rotation.T + [0.5, -2.0, 3.0]
    assert pa_mpjpe(transformed, skeleton) == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(procrustes_align(transformed, skeleton), skeleton, atol=1e-12)
    # And the other way round.
    assert pa_mpjpe(skeleton, transformed) == pytest.approx(0.0, abs=1e-9)


def test_pa_mpjpe_never_exceeds_root_aligned_mpjpe(skeleton):
    rng = np.random.default_rng(1)
    predictions = skeleton + rng.normal(scale=0.03, size=(50, 24, 3))
    targets = np.broadcast_to(skeleton, predictions.shape)
    assert np.all(pa_mpjpe(predictions, targets) <= mpjpe(predictions, targets, root_indices=(0,)) + 1e-9)
    assert np.all(pa_mpjpe(predictions, targets) > 0.0)


def test_pa_mpjpe_does_not_fix_a_mirror_image_with_a_reflection(skeleton):
    mirrored = skeleton * [-1.0, 1.0, 1.0]
    # A reflection would fit it perfectly; a proper rotation cannot, so a real error remains.
    assert pa_mpjpe(mirrored, skeleton) > 50.0
    aligned = procrustes_align(mirrored, skeleton)
    centred_in = mirrored - mirrored.mean(axis=0)
    centred_out = aligned - aligned.mean(axis=0)
    fitted_map, *_ = np.linalg.lstsq(centred_in, centred_out, rcond=None)
    assert np.linalg.det(fitted_map) > 0.0
    # A flat (planar) shape's mirror image IS a rotation of it (half a turn about an in-plane
    # axis), so there PA must reach zero.
    planar = skeleton * [1.0, 1.0, 0.0]
    assert pa_mpjpe(planar * [-1.0, 1.0, 1.0], planar) == pytest.approx(0.0, abs=1e-9)


def test_pa_of_a_collapsed_prediction_lands_on_the_target_centroid(skeleton):
    collapsed = np.zeros_like(skeleton)
    centroid = np.broadcast_to(skeleton.mean(axis=0), skeleton.shape)
    np.testing.assert_allclose(procrustes_align(collapsed, skeleton), centroid)


def test_pve_with_and_without_roots():
    vertices = np.random.default_rng(2).normal(size=(2, 100, 3))
    assert np.allclose(pve(vertices + [0.0, 0.0, 0.004], vertices), 4.0)
    roots = np.array([[0.0, 0.0, 0.004], [0.0, 0.0, 0.004]])
    np.testing.assert_allclose(pve(vertices + [0.0, 0.0, 0.004], vertices, roots, np.zeros((2, 3))), 0.0, atol=1e-9)
    with pytest.raises(InputError, match="both pred_root and target_root"):
        pve(vertices, vertices, roots, None)


def test_accel_error_is_zero_for_a_constant_velocity_offset(skeleton):
    frames = np.arange(10)[:, None, None]
    target = skeleton + 0.01 * frames * [1.0, 0.0, 0.0]
    prediction = target + 0.02 * frames * [0.0, 1.0, -1.0]  # drifts at a constant rate
    errors = accel_error(prediction, target)
    assert errors.shape == (8,)
    np.testing.assert_allclose(errors, 0.0, atol=1e-9)


def test_accel_error_of_a_constant_acceleration_is_its_second_difference(skeleton):
    frames = np.arange(6)[:, None, None]
    target = np.broadcast_to(skeleton, (6, 24, 3))
    # p(t) = a t^2 / 2 has second difference a per frame^2: |(3, 4, 0) mm| = 5 mm/frame^2.
    prediction = target + 0.5 * frames**2 * np.array([0.003, 0.004, 0.0])
    np.testing.assert_allclose(accel_error(prediction, target), 5.0)
    # The same acceleration applied to all joints vanishes after root alignment.
    np.testing.assert_allclose(accel_error(prediction, target, root_indices=(1, 2)), 0.0, atol=1e-9)


def test_lsp14_maps_name_the_same_joints():
    smpl_names = [JOINT_NAMES[index] for index in SMPL_TO_LSP14]
    assert smpl_names[:-1] == list(LSP14_JOINT_NAMES[:-1])
    assert smpl_names[-1] == "head" and LSP14_JOINT_NAMES[-1] == "head_top"
    assert sorted(H36M_TO_LSP14) == [1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15, 16]


def test_emdb_convention_uses_24_joints_rooted_at_the_hips(skeleton):
    joints, root = benchmark_joints("emdb", skeleton)
    np.testing.assert_array_equal(joints, skeleton)
    np.testing.assert_allclose(root, 0.5 * (skeleton[1] + skeleton[2]))


def test_3dpw_fallback_picks_14_smpl_joints_rooted_at_the_hips(skeleton):
    joints, root = benchmark_joints("3dpw", np.stack([skeleton, skeleton + 1.0]))
    assert joints.shape == (2, 14, 3)
    np.testing.assert_array_equal(joints[0, 2], skeleton[2])  # right hip
    np.testing.assert_array_equal(joints[0, 13], skeleton[15])  # head stands in for the head top
    np.testing.assert_allclose(root[1], 0.5 * (skeleton[1] + skeleton[2]) + 1.0)


def test_3dpw_with_an_h36m_regressor_regresses_joints_and_roots_at_its_pelvis(skeleton):
    vertices = np.random.default_rng(3).normal(size=(2, 40, 3))
    regressor = np.zeros((17, 40))
    regressor[np.arange(17), np.arange(17) * 2] = 1.0  # H36M joint k sits on vertex 2k
    joints, root = benchmark_joints("3dpw", np.stack([skeleton] * 2), vertices, regressor)
    np.testing.assert_array_equal(joints, vertices[:, np.array(H36M_TO_LSP14) * 2])
    np.testing.assert_array_equal(root, vertices[:, 0])

    lsp_regressor = np.zeros((14, 40))
    lsp_regressor[np.arange(14), np.arange(14)] = 1.0
    joints, root = benchmark_joints("3dpw", np.stack([skeleton] * 2), vertices, lsp_regressor)
    np.testing.assert_array_equal(joints, vertices[:, :14])
    np.testing.assert_allclose(root, 0.5 * (vertices[:, 2] + vertices[:, 3]))


def test_evaluate_is_blind_to_a_global_offset_and_sees_a_wobble(skeleton):
    rng = np.random.default_rng(4)
    frames = 12
    target_joints = skeleton + 0.01 * np.arange(frames)[:, None, None]
    target_vertices = rng.normal(size=(frames, 50, 3))
    offset = np.array([1.0, -0.5, 2.0])
    for convention in ("emdb", "3dpw"):
        errors = evaluate(convention, target_joints + offset, target_joints, target_vertices + offset, target_vertices)
        assert errors.mpjpe.shape == errors.pa_mpjpe.shape == errors.pve.shape == (frames,)
        assert errors.accel.shape == (frames - 2,)
        for value in errors.means().values():
            assert value == pytest.approx(0.0, abs=1e-8)

    wobble = 0.005 * (-1.0) ** np.arange(frames)[:, None, None] * np.array([0.0, 0.0, 1.0])
    wobbly = target_joints.copy()
    wobbly[:, 4:] += wobble  # the hips (root) stay put; the rest jitters by 5 mm
    errors = evaluate("emdb", wobbly, target_joints, target_vertices, target_vertices)
    np.testing.assert_allclose(errors.mpjpe, 5.0 * 20 / 24)
    np.testing.assert_allclose(errors.accel, 20.0 * 20 / 24)  # |5 - 2(-5) + 5| = 20 mm/frame^2
    two_frames = evaluate("emdb", wobbly[:2], target_joints[:2], target_vertices[:2], target_vertices[:2])
    assert np.isnan(two_frames.means()["accel"])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mpjpe(np.zeros((24, 3)), np.zeros((14, 3))), "same shape"),
        (lambda: mpjpe(np.zeros((24, 2)), np.zeros((24, 2))), r"\(N, J, 3\)"),
        (lambda: mpjpe(np.full((24, 3), np.nan), np.zeros((24, 3))), "NaN"),
        (lambda: pa_mpjpe(np.zeros((24, 3)), np.full((24, 3), np.inf)), "NaN"),
        (lambda: accel_error(np.zeros((2, 24, 3)), np.zeros((2, 24, 3))), "N >= 3"),
        (lambda: mpjpe(np.zeros((24, 3)), np.zeros((24, 3)), root_indices=(30,)), "root_indices"),
        (lambda: benchmark_joints("h36m", np.zeros((24, 3))), "convention"),
        (lambda: benchmark_joints("emdb", np.zeros((14, 3))), "24 joints"),
        (lambda: benchmark_joints("emdb", np.zeros((24, 3)), np.zeros((5, 3)), np.zeros((17, 5))), "EMDB"),
        (lambda: benchmark_joints("3dpw", np.zeros((24, 3)), None, np.zeros((17, 5))), "vertices"),
        (lambda: benchmark_joints("3dpw", np.zeros((24, 3)), np.zeros((6, 3)), np.zeros((17, 5))), r"\(17, V\)"),
    ],
)
def test_bad_inputs_raise_input_error(call, message):
    with pytest.raises(InputError, match=message):
        call()

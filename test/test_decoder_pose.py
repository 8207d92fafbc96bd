"""The decoder's pose representation: rotations -> joints + twists -> IK -> the same rotations."""

from __future__ import annotations

import numpy as np
import pytest

from fasthmr_model.body.rotations import axis_angle_to_matrix
from fasthmr_model.data.motion import JOINT_LIMITS, joint_angles_to_matrix, synthetic_body_model
from fasthmr_model.decoder.pose import (
    NUM_POINTS, NUM_TWISTS, POSE_SIZE, body_rest_points, encode_pose, forward_points, inverse_kinematics,
    split_representation, swing,
)
from fasthmr_model.errors import InputError


@pytest.fixture(scope="module")
def body():
    return synthetic_body_model()


def geodesic(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Angle (radians) of first^T second, robust at small angles (from the antisymmetric part)."""
    relative = np.swapaxes(first, -1, -2) @ second
    sin_axis = 0.5 * np.stack([relative[..., 2, 1] - relative[..., 1, 2], relative[..., 0, 2] - relative[..., 2, 0],
                               relative[..., 1, 0] - relative[..., 0, 1]], -1)
    cos = 0.5 * (np.trace(relative, axis1=-2, axis2=-1) - 1.0)
    return np.arctan2(np.linalg.norm(sin_axis, axis=-1), cos)


def random_valid_poses(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 24, 3, 3): every joint uniformly inside the motion generator's limits, any global orientation."""
    low, high = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
    rotmats = joint_angles_to_matrix(rng.uniform(low, high, (count,) + low.shape))
    rotmats[:, 0] = axis_angle_to_matrix(rng.normal(0.0, 1.5, (count, 3)))
    return rotmats


def round_trip(body, rotmats, betas):
    rest = body_rest_points(body, betas)
    return inverse_kinematics(rest, encode_pose(rest, rotmats))


def test_sizes():
    assert (NUM_POINTS, NUM_TWISTS, POSE_SIZE) == (29, 22, 131)


def test_round_trip_on_random_valid_poses(body):
    rng = np.random.default_rng(0)
    rotmats = random_valid_poses(rng, 400)
    betas = rng.normal(0.0, 1.0, (400, 10))
    assert geodesic(rotmats, round_trip(body, rotmats, betas)).max() < 1e-4


def test_round_trip_on_straight_and_nearly_straight_limbs(body):
    """Zero and tiny swings (straight knees and elbows, limbs at their rest direction) are where
    axis-angle swing formulas divide 0 by 0."""
    rng = np.random.default_rng(1)
    rotmats = random_valid_poses(rng, 60)
    for scale, rows in ((0.0, slice(0, 20)), (1e-7, slice(20, 40)), (1e-3, slice(40, 60))):
        count = rows.stop - rows.start
        # Every non-root joint is a pure twist about its bone, plus a swing of size `scale`.
        for joint in range(1, 24):
            rotmats[rows, joint] = axis_angle_to_matrix(rng.normal(0.0, scale, (count, 3)))
    betas = rng.normal(0.0, 1.0, (60, 10))
    assert geodesic(rotmats, round_trip(body, rotmats, betas)).max() < 1e-4


def test_points_are_the_body_models_joints(body):
    rng = np.random.default_rng(2)
    rotmats, betas = random_valid_poses(rng, 8), rng.normal(0.0, 1.0, (8, 10))
    points, _ = split_representation(encode_pose(body_rest_points(body, betas), rotmats))
    _, joints = body.forward(betas, rotmats, with_vertices=False)
    np.testing.assert_allclose(points[:, :24], joints - joints[:, :1], atol=1e-12)


def test_ik_uses_directions_only(body):
    """Other bone lengths (another person's points) and unnormalised twists give the same rotations."""
    rng = np.random.default_rng(3)
    rotmats = random_valid_poses(rng, 16)
    rest = body_rest_points(body, rng.normal(0.0, 1.0, (16, 10)))
    other_rest = body_rest_points(body, rng.normal(0.0, 1.0, (16, 10)))
    representation = encode_pose(other_rest, rotmats)
    representation[:, 3 * NUM_POINTS:] *= 3.0
    # Shapes change bone directions a little as well as lengths, so allow a small angle.
    assert geodesic(rotmats, inverse_kinematics(rest, representation)).max() < 0.1


def test_ik_of_noisy_points_is_a_least_squares_fit(body):
    rng = np.random.default_rng(4)
    rotmats, betas = random_valid_poses(rng, 32), rng.normal(0.0, 1.0, (32, 10))
    rest = body_rest_points(body, betas)
    representation = encode_pose(rest, rotmats)
    representation[:, :3 * NUM_POINTS] += rng.normal(0.0, 0.01, (32, 3 * NUM_POINTS))
    recovered = inverse_kinematics(rest, representation)
    assert np.all(np.isfinite(recovered))
    np.testing.assert_allclose(recovered @ np.swapaxes(recovered, -1, -2), np.broadcast_to(np.eye(3), recovered.shape),
                               atol=1e-9)
    points, _ = forward_points(rest, recovered)
    true_points, _ = forward_points(rest, rotmats)
    assert np.abs(points - true_points).mean() < 0.02


def test_degenerate_input_gives_rotations_not_nans(body):
    rest = body_rest_points(body, np.zeros((2, 10)))
    recovered = inverse_kinematics(rest, np.zeros((2, POSE_SIZE)))
    assert np.all(np.isfinite(recovered))
    np.testing.assert_allclose(np.linalg.det(recovered), 1.0, atol=1e-9)


def test_swing_turns_bones_around():
    directions = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])
    turned = swing(directions, -directions)
    np.testing.assert_allclose(np.einsum("bij,bj->bi", turned, directions), -directions, atol=1e-12)


def test_bad_shapes_raise_input_error(body):
    rest = body_rest_points(body, np.zeros((1, 10)))
    with pytest.raises(InputError, match="pose representation"):
        inverse_kinematics(rest, np.zeros((1, 130)))
    with pytest.raises(InputError, match="batch size"):
        inverse_kinematics(rest, np.zeros((2, POSE_SIZE)))


def test_round_trip_with_a_bone_turned_exactly_around(body):
    """A swing of exactly pi (the shank folded onto the opposite of its rest direction) has no unique axis."""
    betas = np.zeros((2, 10))
    rest = body_rest_points(body, betas)
    shank = (rest[0, 7] - rest[0, 4]) / np.linalg.norm(rest[0, 7] - rest[0, 4])
    across = np.cross(shank, [1.0, 0.0, 0.0])
    across /= np.linalg.norm(across)
    rotmats = np.broadcast_to(np.eye(3), (2, 24, 3, 3)).copy()
    rotmats[:, 4] = axis_angle_to_matrix(np.pi * across)  # left knee: shank turned exactly around
    rotmats[1, 4] = rotmats[1, 4] @ axis_angle_to_matrix(0.3 * shank)  # and twisted
    np.testing.assert_allclose(rotmats[:, 4] @ shank, -np.stack([shank, shank]), atol=1e-12)
    assert geodesic(rotmats, round_trip(body, rotmats, betas)).max() < 1e-4


def test_closed_form_twists_match_the_swing_twist_split():
    """twist_cos_sin's closed form against twist_angles (swing^T R, then the angle), and at a half turn
    about an axis across the bone, where only the swing's choice of axis defines the twist."""
    from fasthmr_model.decoder.pose import twist_angles, twist_cos_sin

    rng = np.random.default_rng(5)
    rotations = axis_angle_to_matrix(rng.normal(0.0, 1.2, (500, 3)))
    axes = rng.normal(size=(500, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = twist_angles(rotations, axes)
    np.testing.assert_allclose(twist_cos_sin(rotations, axes), np.stack([np.cos(angles), np.sin(angles)], -1),
                               atol=1e-10)
    across = np.cross(axes[:2], [1.0, 0.0, 0.0])
    half_turns = axis_angle_to_matrix(np.pi * across / np.linalg.norm(across, axis=1, keepdims=True))
    angles = twist_angles(half_turns, axes[:2])
    np.testing.assert_allclose(twist_cos_sin(half_turns, axes[:2]), np.stack([np.cos(angles), np.sin(angles)], -1),
                               atol=1e-10)


def test_kabsch_fits_rotations_never_reflections():
    from fasthmr_model.decoder.pose import kabsch

    rng = np.random.default_rng(6)
    rest = rng.normal(size=(20, 3, 3))
    turns = axis_angle_to_matrix(rng.normal(size=(20, 3)))
    posed = rest @ np.swapaxes(turns, -1, -2)  # each row turned: posed_k = R rest_k
    np.testing.assert_allclose(kabsch(rest, posed), turns, atol=1e-9)
    mirrored = kabsch(rest, -posed)  # the best fit of a mirror image is a reflection: a rotation must come out
    np.testing.assert_allclose(np.linalg.det(mirrored), 1.0, atol=1e-9)
    np.testing.assert_allclose(mirrored @ np.swapaxes(mirrored, -1, -2), np.broadcast_to(np.eye(3), (20, 3, 3)),
                               atol=1e-9)

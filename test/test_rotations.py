"""Rotation conversions: Rodrigues against a series matrix exponential, round trips at zero, small,
medium and near-pi angles, and HMR2.0's 6D convention."""

import numpy as np
import pytest

from fasthmr_model.body.rotations import (
    axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_quaternion, matrix_to_rot6d, rot6d_to_matrix,
)
from fasthmr_model.errors import InputError


def _series_exponential(axis_angle):
    """exp of the cross-product matrix by a long Taylor series: an independent reference for R."""
    x, y, z = axis_angle
    generator = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    result, term = np.eye(3), np.eye(3)
    for power in range(1, 40):
        term = term @ generator / power
        result = result + term
    return result


def _random_axes(rng, count):
    axes = rng.normal(size=(count, 3))
    return axes / np.linalg.norm(axes, axis=1, keepdims=True)


def test_zero_axis_angle_is_exactly_the_identity():
    assert np.array_equal(axis_angle_to_matrix(np.zeros(3)), np.eye(3))
    assert np.array_equal(matrix_to_axis_angle(np.eye(3)), np.zeros(3))


def test_quarter_turn_about_z_maps_x_to_y():
    rotation = axis_angle_to_matrix([0.0, 0.0, np.pi / 2])
    np.testing.assert_allclose(rotation @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-15)


def test_rodrigues_matches_the_matrix_exponential():
    rng = np.random.default_rng(0)
    vectors = _random_axes(rng, 20) * rng.uniform(0.0, 3.0, size=(20, 1))
    expected = np.array([_series_exponential(vector) for vector in vectors])
    np.testing.assert_allclose(axis_angle_to_matrix(vectors), expected, atol=1e-13)


@pytest.mark.parametrize("angle", [1e-12, 1e-7, 1e-4, 0.3, 1.5, np.pi / 2, 2.5, np.pi - 1e-4, np.pi - 1e-8])
def test_axis_angle_round_trip(angle):
    rng = np.random.default_rng(1)
    vectors = _random_axes(rng, 200) * angle
    matrices = axis_angle_to_matrix(vectors)
    identities = np.broadcast_to(np.eye(3), matrices.shape)
    np.testing.assert_allclose(matrices @ np.swapaxes(matrices, -1, -2), identities, atol=1e-14)
    np.testing.assert_allclose(np.linalg.det(matrices), 1.0, atol=1e-14)
    # Near pi, the axis of R is only as precise as R itself (~1e-16 / (pi - angle)).
    np.testing.assert_allclose(matrix_to_axis_angle(matrices), vectors, atol=1e-15 / max(np.pi - angle, 1e-7) + 1e-15)


def test_half_turn_gives_angle_pi_and_the_same_rotation():
    rng = np.random.default_rng(2)
    vectors = _random_axes(rng, 200) * np.pi
    matrices = axis_angle_to_matrix(vectors)
    recovered = matrix_to_axis_angle(matrices)
    np.testing.assert_allclose(np.linalg.norm(recovered, axis=-1), np.pi, atol=1e-12)
    np.testing.assert_allclose(axis_angle_to_matrix(recovered), matrices, atol=1e-14)
    # Axis-aligned half turns are the hardest case for trace-based formulas.
    for axis in np.eye(3):
        half_turn = axis_angle_to_matrix(axis * np.pi)
        np.testing.assert_allclose(np.abs(matrix_to_axis_angle(half_turn)), axis * np.pi, atol=1e-15)


def test_angles_beyond_pi_come_back_as_the_equivalent_short_rotation():
    rng = np.random.default_rng(3)
    vectors = _random_axes(rng, 100) * rng.uniform(np.pi + 0.01, 2 * np.pi - 0.01, size=(100, 1))
    recovered = matrix_to_axis_angle(axis_angle_to_matrix(vectors))
    assert np.all(np.linalg.norm(recovered, axis=-1) <= np.pi)
    np.testing.assert_allclose(axis_angle_to_matrix(recovered), axis_angle_to_matrix(vectors), atol=1e-14)


def test_batch_shapes_are_kept():
    vectors = np.random.default_rng(4).normal(size=(2, 5, 3))
    matrices = axis_angle_to_matrix(vectors)
    assert matrices.shape == (2, 5, 3, 3)
    assert matrix_to_axis_angle(matrices).shape == (2, 5, 3)
    assert matrix_to_rot6d(matrices).shape == (2, 5, 6)
    assert rot6d_to_matrix(matrix_to_rot6d(matrices)).shape == (2, 5, 3, 3)


def test_rot6d_uses_hmr2_convention_first_three_numbers_are_the_first_column():
    # a1 along y, a2 along z: columns (y, z, y x z = x).
    rotation = rot6d_to_matrix([0.0, 2.0, 0.0, 0.0, 0.0, 5.0])
    np.testing.assert_allclose(rotation, [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], atol=1e-15)
    # Gram-Schmidt removes a2's component along a1 and normalises both.
    np.testing.assert_allclose(rot6d_to_matrix([3.0, 0.0, 0.0, 7.0, 2.0, 0.0]), np.eye(3), atol=1e-15)


def test_rot6d_round_trip_and_orthonormal_output():
    rng = np.random.default_rng(5)
    matrices = axis_angle_to_matrix(rng.normal(size=(100, 3)))
    np.testing.assert_allclose(rot6d_to_matrix(matrix_to_rot6d(matrices)), matrices, atol=1e-14)
    raw = rng.normal(size=(100, 6))
    rotations = rot6d_to_matrix(raw)
    identities = np.broadcast_to(np.eye(3), rotations.shape)
    np.testing.assert_allclose(rotations @ np.swapaxes(rotations, -1, -2), identities, atol=1e-14)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-14)
    first_direction = raw[:, :3] / np.linalg.norm(raw[:, :3], axis=1, keepdims=True)
    np.testing.assert_allclose(rotations[:, :, 0], first_direction, atol=1e-15)


@pytest.mark.parametrize(
    "function, bad_input",
    [
        (axis_angle_to_matrix, np.zeros((4, 2))),
        (matrix_to_axis_angle, np.zeros((3, 4))),
        (rot6d_to_matrix, np.zeros(5)),
        (matrix_to_rot6d, np.zeros(9)),
    ],
)
def test_wrong_shapes_raise_input_error(function, bad_input):
    with pytest.raises(InputError, match="must have shape"):
        function(bad_input)


def test_matrix_to_quaternion_matches_the_axis_angle_formula_everywhere():
    rng = np.random.default_rng(4)
    directions = rng.normal(size=(500, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    angles = rng.uniform(0.0, np.pi, size=500)
    angles[:3] = [0.0, 1e-9, np.pi - 1e-7]  # identity, tiny, and near the half turn
    vectors = directions * angles[:, None]
    expected = np.concatenate([directions * np.sin(angles / 2)[:, None], np.cos(angles / 2)[:, None]], axis=1)
    np.testing.assert_allclose(matrix_to_quaternion(axis_angle_to_matrix(vectors)), expected, atol=1e-12)
    # A half turn has w = 0: q and -q are the same rotation, either sign is right.
    half_turn = matrix_to_quaternion(axis_angle_to_matrix(np.array([0.0, np.pi, 0.0])))
    np.testing.assert_allclose(np.abs(half_turn), [0.0, 1.0, 0.0, 0.0], atol=1e-12)

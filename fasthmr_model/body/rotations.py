"""Rotation conversions in numpy: axis-angle, rotation matrices and HMR2.0's 6D representation.

All functions take any leading batch shape (...). Matrices act on column vectors (x' = R x).
"""

import numpy as np

from fasthmr_model.errors import InputError

# Below this angle (radians) Rodrigues' coefficients come from their Taylor series, which stays
# exact at zero where sin(t)/t is 0/0; the series' first dropped term is ~t^6/5040, far below
# float64 resolution at this size.
_SMALL_ANGLE = 1e-4
# HMR2.0 normalises with torch's F.normalize, which clamps the norm at this value.
_NORMALISE_EPS = 1e-12


def _check_last_dims(array, trailing, name):
    """Returns `array` as float64 after checking that its trailing dimensions are `trailing`."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim < len(trailing) or array.shape[-len(trailing):] != trailing:
        raise InputError(
            f"{name} must have shape (..., {', '.join(map(str, trailing))}), got {array.shape}: "
            f"pass an array whose last dimensions are {trailing}."
        )
    return array


def _skew(vectors):
    """Cross-product matrices: (..., 3) -> (..., 3, 3) with K v' = vectors x v'."""
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    zero = np.zeros_like(x)
    return np.stack(
        [
            np.stack([zero, -z, y], axis=-1),
            np.stack([z, zero, -x], axis=-1),
            np.stack([-y, x, zero], axis=-1),
        ],
        axis=-2,
    )


def axis_angle_to_matrix(axis_angle):
    """Rodrigues' formula: axis-angle vectors (..., 3) (direction = axis, norm = angle in radians)
    -> rotation matrices (..., 3, 3). Exact at zero angle (gives the identity).

    R = I + (sin t / t) K + ((1 - cos t) / t^2) K^2 with K the cross-product matrix of the vector.
    """
    axis_angle = _check_last_dims(axis_angle, (3,), "axis_angle")
    angle_sq = np.sum(axis_angle**2, axis=-1)
    angle = np.sqrt(angle_sq)
    small = angle < _SMALL_ANGLE
    safe_angle = np.where(small, 1.0, angle)
    sin_term = np.where(small, 1.0 - angle_sq / 6.0 + angle_sq**2 / 120.0, np.sin(safe_angle) / safe_angle)
    # 1 - cos t = 2 sin^2(t/2) avoids the cancellation of 1 - cos t at small angles.
    cos_term = np.where(
        small,
        0.5 - angle_sq / 24.0 + angle_sq**2 / 720.0,
        2.0 * (np.sin(0.5 * safe_angle) / safe_angle) ** 2,
    )
    cross = _skew(axis_angle)
    identity = np.broadcast_to(np.eye(3), cross.shape)
    return identity + sin_term[..., None, None] * cross + cos_term[..., None, None] * (cross @ cross)


def matrix_to_axis_angle(matrices):
    """Rotation matrices (..., 3, 3) -> axis-angle vectors (..., 3) with angle in [0, pi].

    Robust at both ends: near zero the axis comes from the antisymmetric part R - R^T (its norm is
    2 sin t, and t / sin t -> 1); near pi, where sin t vanishes, the axis comes from the symmetric
    part (R + R^T)/2 - cos t I = (1 - cos t) u u^T, with its sign taken from the antisymmetric part.
    At exactly pi both signs are the same rotation.
    """
    matrices = _check_last_dims(matrices, (3, 3), "matrices")
    cos_angle = np.clip((np.trace(matrices, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    # sin(t) * axis, read from the antisymmetric part.
    sin_axis = 0.5 * np.stack(
        [
            matrices[..., 2, 1] - matrices[..., 1, 2],
            matrices[..., 0, 2] - matrices[..., 2, 0],
            matrices[..., 1, 0] - matrices[..., 0, 1],
        ],
        axis=-1,
    )
    sin_angle = np.linalg.norm(sin_axis, axis=-1)
    angle = np.arctan2(sin_angle, cos_angle)

    # Small and medium angles (cos t > 0): axis-angle = sin_axis * t / sin t.
    tiny_sin = sin_angle < 1e-300
    angle_over_sin = np.where(tiny_sin, 1.0, angle / np.where(tiny_sin, 1.0, sin_angle))
    from_antisymmetric = sin_axis * angle_over_sin[..., None]

    # Large angles (cos t <= 0): the column of (1 - cos t) u u^T with the largest diagonal entry
    # is (1 - cos t) u_k u, the best-conditioned estimate of the axis.
    symmetric = 0.5 * (matrices + np.swapaxes(matrices, -1, -2)) - cos_angle[..., None, None] * np.eye(3)
    diagonal = np.diagonal(symmetric, axis1=-2, axis2=-1)
    best = np.argmax(diagonal, axis=-1)
    column = np.take_along_axis(symmetric, best[..., None, None], axis=-1)[..., 0]
    column_norm = np.linalg.norm(column, axis=-1, keepdims=True)
    axis = column / np.maximum(column_norm, 1e-300)
    axis = np.where(np.sum(axis * sin_axis, axis=-1, keepdims=True) < 0.0, -axis, axis)
    from_symmetric = axis * angle[..., None]

    large_angle = cos_angle <= 0.0
    return np.where(large_angle[..., None], from_symmetric, from_antisymmetric)


def _normalise(vectors):
    """Unit vectors along (..., 3) with HMR2.0's clamp of tiny norms (no division by zero)."""
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norm, _NORMALISE_EPS)


def rot6d_to_matrix(rot6d):
    """HMR2.0's 6D representation (..., 6) -> rotation matrices (..., 3, 3) by Gram-Schmidt.

    a1 = x[..., 0:3], a2 = x[..., 3:6]; b1 = a1 / |a1|; b2 = normalise(a2 - (b1 . a2) b1);
    b3 = b1 x b2; the matrix has COLUMNS b1, b2, b3.
    """
    rot6d = _check_last_dims(rot6d, (6,), "rot6d")
    first = _normalise(rot6d[..., 0:3])
    second_raw = rot6d[..., 3:6]
    second = _normalise(second_raw - np.sum(first * second_raw, axis=-1, keepdims=True) * first)
    third = np.cross(first, second)
    return np.stack([first, second, third], axis=-1)


def matrix_to_rot6d(matrices):
    """Rotation matrices (..., 3, 3) -> 6D (..., 6): the first column, then the second column.

    The inverse of rot6d_to_matrix for rotation matrices.
    """
    matrices = _check_last_dims(matrices, (3, 3), "matrices")
    return np.concatenate([matrices[..., :, 0], matrices[..., :, 1]], axis=-1)


def matrix_to_quaternion(matrices):
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) in ROS's order (x, y, z, w), w >= 0.

    Each of the four components can be read from the diagonal (4 q_i^2 = 1 +- m00 +- m11 +- m22); the
    largest one is computed from the square root and the others from the off-diagonal sums and
    differences divided by it, which is well conditioned for every rotation (Shepperd's method).
    """
    m = _check_last_dims(matrices, (3, 3), "matrices")
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    four_squares = np.stack([1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22, 1.0 - m00 - m11 + m22,
                             1.0 + m00 + m11 + m22], axis=-1)
    sum_01, sum_02, sum_12 = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    diff_x, diff_y, diff_z = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    # Row k: 4 q_k times (x, y, z, w), when component k is the one taken from the square root.
    scaled = np.stack([
        np.stack([four_squares[..., 0], sum_01, sum_02, diff_x], axis=-1),
        np.stack([sum_01, four_squares[..., 1], sum_12, diff_y], axis=-1),
        np.stack([sum_02, sum_12, four_squares[..., 2], diff_z], axis=-1),
        np.stack([diff_x, diff_y, diff_z, four_squares[..., 3]], axis=-1),
    ], axis=-2)
    best = np.argmax(four_squares, axis=-1)
    chosen = np.take_along_axis(scaled, best[..., None, None], axis=-2)[..., 0, :]
    quaternion = chosen / np.linalg.norm(chosen, axis=-1, keepdims=True)
    return np.where(quaternion[..., 3:] < 0.0, -quaternion, quaternion)

"""The decoder's pose representation (HybrIK-style joints + twists) and its analytical inverse kinematics.

The paper's decoder represents a frame as 29 joints and 23 twist angles (133 numbers) and recovers SMPL's
rotations by HybrIK's swing-twist IK. Our body models give SMPL's 24 joints, whose five leaves (the feet,
the head and the hands) carry rotations that move no joint, so like HybrIK we add one end point per leaf:
the leaf joint plus END_LENGTH metres along its parent bone's rest direction, carried by the leaf's
rotation (toe tips, head top, finger tips). That gives 29 points (24 joints + 5 ends).

A joint's local rotation R is split as R = swing @ twist: twist turns about the rest direction t of the
bone to its single child, swing is the smallest rotation taking t to the posed direction. The points give
the swing, the twist angle phi travels as (cos phi, sin phi). Joints with several children (the pelvis
and spine3) are fixed by their children's directions alone (a Kabsch fit), so they have no twist: 22
twists in all, one per non-root joint except spine3.

Per frame: 29 root-relative points (x, y, z) in the frame of the global orientation (the camera frame
for camera-frame poses), then 22 (cos, sin) pairs: POSE_SIZE = 29 * 3 + 22 * 2 = 131 numbers.
Only the directions of bones enter the IK, so predicted points with other bone lengths (or another
person's shape) still give rotations; the rest directions come from the body model and the betas.

Run-time module: numpy only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fasthmr_model.body.skeleton import NUM_JOINTS, PARENTS, KinematicTree
from fasthmr_model.errors import InputError

# Leaf joint -> its end point's name. The end sits END_LENGTH along the leaf's parent bone (rest pose).
END_POINTS = {10: "left_toes", 11: "right_toes", 15: "head_top", 22: "left_fingers", 23: "right_fingers"}
# Any positive length gives the same rotations; 10 cm keeps the points on the scale of the body.
END_LENGTH = 0.1
NUM_POINTS = NUM_JOINTS + len(END_POINTS)
POINT_PARENTS = PARENTS + tuple(END_POINTS)
CHILDREN = tuple(tuple(point for point in range(1, NUM_POINTS) if POINT_PARENTS[point] == joint)
                 for joint in range(NUM_JOINTS))
# Non-root joints with one child carry a twist; the pelvis and spine3 (three children each) do not.
TWIST_JOINTS = tuple(joint for joint in range(1, NUM_JOINTS) if len(CHILDREN[joint]) == 1)
NUM_TWISTS = len(TWIST_JOINTS)
POSE_SIZE = 3 * NUM_POINTS + 2 * NUM_TWISTS  # numbers per frame of the representation: 131
# Below this, a bone direction counts as zero (a degenerate prediction) and the swing as the identity.
_TINY = 1e-12
_EYE = np.eye(3)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norm = np.sqrt((vectors * vectors).sum(axis=-1, keepdims=True))
    return vectors / np.maximum(norm, _TINY)


def rest_points(rest_joints: np.ndarray) -> np.ndarray:
    """Rest-pose joints (B, 24, 3) -> the 29 rest points (B, 29, 3): the joints and the leaves' end points."""
    rest_joints = np.asarray(rest_joints, np.float64)
    leaves = list(END_POINTS)
    directions = _unit(rest_joints[:, leaves] - rest_joints[:, [PARENTS[leaf] for leaf in leaves]])
    return np.concatenate([rest_joints, rest_joints[:, leaves] + END_LENGTH * directions], axis=1)


def body_rest_points(body_model, betas: np.ndarray) -> np.ndarray:
    """The 29 rest points (B, 29, 3) of `body_model` (a BodyModel) with shapes betas (B, 10)."""
    return rest_points(body_model.rest_joints(betas))


def _check(array: np.ndarray, trailing: tuple, name: str) -> np.ndarray:
    array = np.asarray(array, np.float64)
    if array.ndim != len(trailing) + 1 or array.shape[1:] != trailing:
        raise InputError(f"{name} must have shape (B, {', '.join(map(str, trailing))}), got {array.shape}")
    return array


def _cross_matrix_table() -> np.ndarray:
    """(3, 9): vectors (..., 3) @ this = their cross-product matrices [v]x flattened row by row."""
    table = np.zeros((3, 3, 3))
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):  # [v]x[i, j] = -eps_ijk v_k
        table[k, i, j], table[k, j, i] = -1.0, 1.0
    return table.reshape(3, 9)


_CROSS_MATRIX = _cross_matrix_table()


def _cross_matrices(vectors: np.ndarray) -> np.ndarray:
    """The cross-product matrices [v]x (..., 3, 3) of vectors (..., 3), in one product with a table."""
    return (vectors @ _CROSS_MATRIX).reshape(vectors.shape + (3,))


def _axis_rotation(axes: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotations (..., 3, 3) about unit `axes` (..., 3) by the angle with the given cosine and sine (...)."""
    cos, sin = cos[..., None, None], sin[..., None, None]
    return cos * _EYE + sin * _cross_matrices(axes) + (1.0 - cos) * (axes[..., :, None] * axes[..., None, :])


def _perpendicular(axes: np.ndarray) -> np.ndarray:
    """A unit vector (..., 3) perpendicular to each unit axis (..., 3): the axis crossed with the coordinate
    axis it is least aligned with (never parallel to it)."""
    least = np.argmin(np.abs(axes), axis=-1)
    basis = np.eye(3)[least]
    return _unit(np.cross(axes, basis))


def swing(rest_directions: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """The smallest rotations (..., 3, 3) taking unit rest directions (..., 3) to unit directions (..., 3).

    R = I + [v]x + [v]x^2 / (1 + c) with v = t x p, c = t . p: exact and smooth down to zero swing (a
    straight limb), where axis-angle formulas divide 0 by 0. Only at c = -1 (a bone turned exactly
    around) is the axis undefined; any axis perpendicular to t then serves, and one is taken.
    """
    cross = np.cross(rest_directions, directions)
    cos = np.sum(rest_directions * directions, axis=-1)
    opposite = cos < -1.0 + 1e-9
    skew = _cross_matrices(cross)
    near = _EYE + skew + (skew @ skew) / np.where(opposite, 1.0, 1.0 + cos)[..., None, None]
    if not np.any(opposite):
        return near
    half_turn = _axis_rotation(_perpendicular(rest_directions), -np.ones_like(cos), np.zeros_like(cos))
    return np.where(opposite[..., None, None], half_turn, near)


def twist_angles(rotations: np.ndarray, rest_directions: np.ndarray) -> np.ndarray:
    """The twist angles (...) of rotations R (..., 3, 3) about unit rest directions t (..., 3), R = swing @ twist."""
    twist = np.swapaxes(swing(rest_directions, np.einsum("...ij,...j->...i", rotations, rest_directions)), -1, -2) @ rotations
    reference = _perpendicular(rest_directions)
    turned = np.einsum("...ij,...j->...i", twist, reference)
    return np.arctan2(np.sum(rest_directions * np.cross(reference, turned), -1), np.sum(reference * turned, -1))


def kabsch(rest_vectors: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """The rotations (B, 3, 3) that best turn rest_vectors (B, K, 3) onto vectors (B, K, 3) (least squares)."""
    covariance = np.swapaxes(rest_vectors, -1, -2) @ vectors  # sum_k rest_k vectors_k^T
    u, _, vt = np.linalg.svd(covariance)
    rotations = np.swapaxes(u @ vt, -1, -2)  # V U^T
    reflected = np.linalg.det(rotations) < 0.0
    if not reflected.any():
        return rotations
    # A reflection fits better than any rotation: flip the direction of the smallest singular value.
    fix = np.where(reflected[..., None], [1.0, 1.0, -1.0], 1.0)
    return (np.swapaxes(vt, -1, -2) * fix[..., None, :]) @ np.swapaxes(u, -1, -2)


_JOINT_TREE = KinematicTree(PARENTS)
_POINT_TREE = KinematicTree(POINT_PARENTS)
_TWIST_JOINT_ARRAY = np.array(TWIST_JOINTS, np.intp)
_TWIST_CHILD_ARRAY = np.array([CHILDREN[joint][0] for joint in TWIST_JOINTS], np.intp)


def forward_points(rest: np.ndarray, rotmats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics: rest points (B, 29, 3), local rotations (B, 24, 3, 3) ->
    (posed points relative to the pelvis (B, 29, 3), world rotations (B, 24, 3, 3))."""
    world = _JOINT_TREE.world_rotations(rotmats)
    return _POINT_TREE.root_offsets(world, rest), world


def twist_cos_sin(rotations: np.ndarray, rest_directions: np.ndarray) -> np.ndarray:
    """(cos, sin) (..., 2) of the twist angles of rotations R (..., 3, 3) about unit rest directions t (..., 3).

    Closed form: with R's quaternion (w, v), the twist about t is the quaternion (w, (v . t) t) normalised, so
    tan(phi / 2) = (v . t) / w = a / b with a = axial(R) . t and b = 1 + trace(R) (both 4 w^2 times the
    former). Where a and b both vanish (a half turn about an axis across t) the twist depends on the swing's
    choice of axis: twist_angles, with swing's own choice, decides there.
    """
    axial = np.stack([rotations[..., 2, 1] - rotations[..., 1, 2], rotations[..., 0, 2] - rotations[..., 2, 0],
                      rotations[..., 1, 0] - rotations[..., 0, 1]], axis=-1)
    a = np.sum(axial * rest_directions, axis=-1)
    b = 1.0 + np.trace(rotations, axis1=-2, axis2=-1)
    norm = a * a + b * b
    if np.any(norm < 1e-12):
        angles = twist_angles(rotations, rest_directions)
        return np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    return np.stack([(b * b - a * a) / norm, 2.0 * a * b / norm], axis=-1)


def encode_pose(rest: np.ndarray, rotmats: np.ndarray) -> np.ndarray:
    """Rest points (B, 29, 3) and rotations (B, 24, 3, 3) -> the representation (B, POSE_SIZE), float64."""
    rest = _check(rest, (NUM_POINTS, 3), "rest points")
    rotmats = _check(rotmats, (NUM_JOINTS, 3, 3), "rotmats")
    points, _ = forward_points(rest, rotmats)
    bones = _unit(rest[:, _TWIST_CHILD_ARRAY] - rest[:, _TWIST_JOINT_ARRAY])
    twists = twist_cos_sin(rotmats[:, _TWIST_JOINT_ARRAY], bones)
    return np.concatenate([points.reshape(len(points), -1), twists.reshape(len(points), -1)], axis=1)


def split_representation(representation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, POSE_SIZE) -> points (B, 29, 3) and twists (B, 22, 2) (cos, sin)."""
    representation = _check(representation, (POSE_SIZE,), "pose representation")
    count = len(representation)
    return (representation[:, :3 * NUM_POINTS].reshape(count, NUM_POINTS, 3),
            representation[:, 3 * NUM_POINTS:].reshape(count, NUM_TWISTS, 2))


def _twist_matrices(axes: np.ndarray, cos_sin: np.ndarray) -> np.ndarray:
    """Rotations (..., 3, 3) about unit axes (..., 3) by the angles of (cos, sin) pairs (..., 2), which need not
    be unit (their angle is atan2(sin, cos); a zero pair is no twist)."""
    norm = np.sqrt((cos_sin * cos_sin).sum(axis=-1, keepdims=True))
    if norm.min() > _TINY:
        unit = cos_sin / norm
    else:
        unit = np.where(norm > _TINY, cos_sin / np.maximum(norm, _TINY), [1.0, 0.0])
    return _axis_rotation(axes, unit[..., 0], unit[..., 1])


def _swing_rows(rest_directions: np.ndarray, directions: np.ndarray, doubled_rest_rows: np.ndarray) -> np.ndarray:
    """swing(rest_directions, directions) for unit t and p, as I - (t + p)(t + p)^T / (1 + c) + 2 p t^T (two
    reflections) in a few whole-array operations; doubled_rest_rows is 2 t^T as (..., 1, 3). Falls back to
    swing() where a bone is turned exactly around."""
    cos = (rest_directions * directions).sum(axis=-1)
    if cos.min() < -1.0 + 1e-9:
        return swing(rest_directions, directions)
    both = rest_directions + directions
    return (_EYE - both[..., :, None] * (both / (1.0 + cos)[..., None])[..., None, :]
            + directions[..., :, None] * doubled_rest_rows)


# The IK keeps world rotations by "row": the one-child joints in order of depth (a level's joints are a slice),
# then the several-children joints (the pelvis and spine3), whose rotations it fits first, in the world frame.
_SEVERAL = tuple(joint for joint in range(NUM_JOINTS) if len(CHILDREN[joint]) > 1)


class _Level(NamedTuple):
    """The one-child joints of one depth level of the tree: their rows (a slice) and their parents' rows."""

    rows: slice
    parent_rows: np.ndarray


def _tree_levels() -> tuple[tuple[_Level, ...], np.ndarray]:
    """The depth levels that have one-child joints (the IK handles a level at once, since its joints'
    parents all sit in earlier levels or are several-children joints), and the order of TWIST_JOINTS by
    depth (row -> index in TWIST_JOINTS)."""
    depth = [0] * NUM_JOINTS
    for joint in range(1, NUM_JOINTS):
        depth[joint] = depth[PARENTS[joint]] + 1
    by_depth = [[joint for joint in TWIST_JOINTS if depth[joint] == level] for level in range(max(depth) + 1)]
    row_joints = [joint for joints in by_depth for joint in joints] + list(_SEVERAL)
    levels, start = [], 0
    for joints in by_depth:
        if joints:
            levels.append(_Level(slice(start, start + len(joints)),
                                 np.array([row_joints.index(PARENTS[joint]) for joint in joints], np.intp)))
            start += len(joints)
    return tuple(levels), np.array([TWIST_JOINTS.index(joint) for joints in by_depth for joint in joints], np.intp)


TREE_LEVELS, LEVEL_ORDER = _tree_levels()
_LEVEL_JOINTS = _TWIST_JOINT_ARRAY[LEVEL_ORDER]
_LEVEL_CHILDREN = _TWIST_CHILD_ARRAY[LEVEL_ORDER]
_ROW_JOINTS = np.concatenate([_LEVEL_JOINTS, np.array(_SEVERAL, np.intp)])
_SEVERAL_JOINTS = np.repeat(np.array(_SEVERAL, np.intp), 3)
_SEVERAL_CHILDREN = np.array([child for joint in _SEVERAL for child in CHILDREN[joint]], np.intp)
# Rows of the several-children joints' parents (spine3's: spine2), the pelvis (no parent) reads itself.
_SEVERAL_PARENT_ROWS = np.array([list(_ROW_JOINTS).index(max(PARENTS[joint], 0)) for joint in _SEVERAL], np.intp)


def inverse_kinematics(rest: np.ndarray, representation: np.ndarray) -> np.ndarray:
    """HybrIK's analytical IK: rest points (B, 29, 3) and representations (B, POSE_SIZE) -> local
    rotations (B, 24, 3, 3), global orientation first.

    Walks the tree from the pelvis, one depth level at a time (a level's parents are known by then): a
    joint's posed child direction is brought into its parent's frame, and swing @ twist turns the rest
    bone onto it; joints with several children get a Kabsch fit of all child directions. Twists need not
    be unit (cos, sin) pairs: their angle is atan2(sin, cos). Everything that does not wait for a parent's
    rotation is computed for all joints at once before the walk: rest axes, posed directions, twist
    rotations, and the Kabsch fits, in the world frame (a fit turns with its data, so the local one is the
    parent's world rotation^T times it).
    """
    rest = _check(rest, (NUM_POINTS, 3), "rest points")
    points, twists = split_representation(representation)
    count = len(points)
    if len(rest) != count:
        raise InputError(f"rest points ({len(rest)}) and representations ({count}) must have the same batch size")
    axes = _unit(rest[:, _LEVEL_CHILDREN] - rest[:, _LEVEL_JOINTS])
    bones = points[:, _LEVEL_CHILDREN] - points[:, _LEVEL_JOINTS]
    lengths = np.sqrt((bones * bones).sum(axis=-1, keepdims=True))
    # A zero bone (a degenerate prediction) gives no direction: take any, here the rest axis.
    world_directions = np.where(lengths > _TINY, bones / np.maximum(lengths, _TINY), axes)[:, :, None, :]
    doubled_rest_rows = 2.0 * axes[:, :, None, :]
    twist = _twist_matrices(axes, twists[:, LEVEL_ORDER])
    several_rest = _unit(rest[:, _SEVERAL_CHILDREN] - rest[:, _SEVERAL_JOINTS]).reshape(-1, 3, 3)
    several = _unit(points[:, _SEVERAL_CHILDREN] - points[:, _SEVERAL_JOINTS]).reshape(-1, 3, 3)
    world = np.empty((count, len(_ROW_JOINTS), 3, 3))
    local = np.empty_like(world)
    world[:, len(_LEVEL_JOINTS):] = kabsch(several_rest, several).reshape(count, len(_SEVERAL), 3, 3)
    for level in TREE_LEVELS:
        parent_world = world[:, level.parent_rows]
        directions = (world_directions[:, level.rows] @ parent_world)[..., 0, :]
        swing_rows = _swing_rows(axes[:, level.rows], directions, doubled_rest_rows[:, level.rows])
        np.matmul(swing_rows, twist[:, level.rows], out=local[:, level.rows])
        np.matmul(parent_world, local[:, level.rows], out=world[:, level.rows])
    # Several-children joints: local = parent_world^T world (the pelvis: its world rotation).
    parents = world[:, _SEVERAL_PARENT_ROWS]
    parents[:, _SEVERAL.index(0)] = _EYE
    local[:, len(_LEVEL_JOINTS):] = np.swapaxes(parents, -1, -2) @ world[:, len(_LEVEL_JOINTS):]
    rotmats = np.empty((count, NUM_JOINTS, 3, 3))
    rotmats[:, _ROW_JOINTS] = local
    return rotmats

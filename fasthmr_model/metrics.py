"""Mesh-recovery metrics in millimetres (inputs in metres), numpy only, with the EMDB and 3DPW conventions.

- mpjpe: mean per-joint position error, optionally after subtracting a root.
- pa_mpjpe: MPJPE after the similarity (scale, rotation, translation) that best fits the prediction
  to the target (Umeyama's Procrustes, reflections excluded).
- pve: mean per-vertex error.
- accel_error: mean over joints of the error of the joints' second differences, mm/frame^2, as in
  the HMR literature (VIBE, TCMR, WHAM): |(p[t-1] - 2 p[t] + p[t+1]) - (same for the target)|.

Joint arrays are (N, J, 3) for N frames or (J, 3) for one; per-frame results come back as (N,)
arrays (a scalar for one frame): take the mean over a dataset's frames for its headline number.

Benchmark conventions (benchmark_joints, evaluate):
- "emdb": SMPL's 24 joints; root = mean of the hips (joints 1 and 2).
- "3dpw": 14 LSP-style joints. With an H36M joint regressor (17, V), the joints are regressed from
  the mesh and the root is the regressed H36M pelvis (joint 0), as in the published protocol; with a
  (14, V) regressor that already gives the 14 joints, the root is the mean of its hips. Without a
  regressor, the documented fallback picks the 14 joints from SMPL's 24 (SMPL_TO_LSP14) and roots
  them at the mean of the hips. The fallback's "head_top" is SMPL's head joint (the base of the
  skull), so its numbers are comparable with each other but not with published 3DPW tables.
"""

import dataclasses

import numpy as np

from fasthmr_model.body.skeleton import NUM_JOINTS
from fasthmr_model.errors import InputError
from fasthmr_model.tracking import match_boxes

MM_PER_METRE = 1000.0

CONVENTIONS = ("emdb", "3dpw")
EMDB_ROOT_JOINTS = (1, 2)

LSP14_JOINT_NAMES = (
    "right_ankle",
    "right_knee",
    "right_hip",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_wrist",
    "right_elbow",
    "right_shoulder",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "neck",
    "head_top",
)
LSP14_ROOT_JOINTS = (2, 3)
# H36M's 17 regressed joints: 0 pelvis, 1-3 right hip/knee/ankle, 4-6 left hip/knee/ankle, 7 spine,
# 8 thorax, 9 neck/nose, 10 head, 11-13 left shoulder/elbow/wrist, 14-16 right shoulder/elbow/wrist.
H36M_PELVIS = 0
H36M_TO_LSP14 = (3, 2, 1, 4, 5, 6, 16, 15, 14, 11, 12, 13, 8, 10)
# The fallback: SMPL joints in LSP14 order (SMPL's head joint stands in for the head top).
SMPL_TO_LSP14 = (8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12, 15)


def _as_points(array, name):
    """`array` as float64 (N, J, 3) or (J, 3) points, with no NaN or infinity."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim not in (2, 3) or array.shape[-1] != 3:
        raise InputError(f"{name} must have shape (N, J, 3) or (J, 3), got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains NaN or infinite values: drop or repair those frames before scoring.")
    return array


def _as_pair(pred, target):
    """Both arrays checked and of the same shape."""
    pred = _as_points(pred, "pred")
    target = _as_points(target, "target")
    if pred.shape != target.shape:
        raise InputError(f"pred and target must have the same shape, got {pred.shape} and {target.shape}.")
    return pred, target


def root_position(joints, root_indices):
    """(..., 3) mean of the joints `root_indices` of (..., J, 3) joints."""
    joints = _as_points(joints, "joints")
    root_indices = list(root_indices)
    if not root_indices or min(root_indices) < -joints.shape[-2] or max(root_indices) >= joints.shape[-2]:
        raise InputError(f"root_indices {root_indices} do not name joints of an array with {joints.shape[-2]} joints.")
    return joints[..., root_indices, :].mean(axis=-2)


def _root_relative(joints, root_indices):
    """The joints minus their root (mean of `root_indices`), or unchanged for root_indices None."""
    if root_indices is None:
        return joints
    return joints - root_position(joints, root_indices)[..., None, :]


def mpjpe(pred, target, root_indices=None):
    """Mean per-joint position error in mm, per frame.

    Args:
        pred, target: (N, J, 3) or (J, 3) joints in metres.
        root_indices: joints whose mean is subtracted from each array first (e.g. (1, 2) for EMDB's
            hips, (0,) for a pelvis); None compares the positions as given.

    Returns (N,) errors, or a scalar for (J, 3) input. Raises InputError on mismatched shapes or NaN.
    """
    pred, target = _as_pair(pred, target)
    difference = _root_relative(pred, root_indices) - _root_relative(target, root_indices)
    return MM_PER_METRE * np.linalg.norm(difference, axis=-1).mean(axis=-1)


def procrustes_align(pred, target):
    """`pred` moved by the similarity transform (s, R, t) that best fits it to `target`.

    Least squares over s > 0, R a proper rotation (det +1, so a mirrored prediction is not
    "fixed" by a reflection) and t, per frame (Umeyama 1991). A prediction whose points all
    coincide has no scale to fit and is placed at the target's centroid.

    Args: pred, target (N, J, 3) or (J, 3), metres. Returns the aligned pred, same shape.
    """
    pred, target = _as_pair(pred, target)
    pred_centre = pred.mean(axis=-2, keepdims=True)
    target_centre = target.mean(axis=-2, keepdims=True)
    pred_centred = pred - pred_centre
    target_centred = target - target_centre

    # Cross-covariance target^T pred (3, 3) per frame; its SVD U S V^T gives R = U D V^T, where D
    # flips the last axis when U V^T would be a reflection.
    covariance = np.swapaxes(target_centred, -1, -2) @ pred_centred
    u, singular_values, vt = np.linalg.svd(covariance)
    sign = np.sign(np.linalg.det(u @ vt))
    sign = np.where(sign == 0.0, 1.0, sign)
    correction = np.ones_like(singular_values)
    correction[..., -1] = sign
    rotation = (u * correction[..., None, :]) @ vt
    pred_spread = np.sum(pred_centred**2, axis=(-2, -1))
    fitted = np.sum(singular_values * correction, axis=-1)
    scale = np.where(pred_spread > 0.0, fitted / np.where(pred_spread > 0.0, pred_spread, 1.0), 0.0)
    return scale[..., None, None] * (pred_centred @ np.swapaxes(rotation, -1, -2)) + target_centre


def pa_mpjpe(pred, target):
    """MPJPE in mm after procrustes_align (Procrustes-aligned MPJPE), per frame.

    Args: pred, target (N, J, 3) or (J, 3) joints, metres. Returns (N,) or a scalar.
    """
    pred, target = _as_pair(pred, target)
    return mpjpe(procrustes_align(pred, target), target)


def pve(pred_vertices, target_vertices, pred_root=None, target_root=None):
    """Mean per-vertex error in mm, per frame.

    Args:
        pred_vertices, target_vertices: (N, V, 3) or (V, 3) vertices in metres (same topology).
        pred_root, target_root: (N, 3) or (3,) points subtracted from each mesh first (e.g. the
            benchmark root of each body's joints), or None to compare the meshes as given.

    Returns (N,) or a scalar. Raises InputError on mismatched shapes or NaN.
    """
    pred_vertices, target_vertices = _as_pair(pred_vertices, target_vertices)
    if (pred_root is None) != (target_root is None):
        raise InputError("pve needs both pred_root and target_root, or neither.")
    if pred_root is not None:
        roots_shape = pred_vertices.shape[:-2] + (3,)
        pred_root = np.asarray(pred_root, dtype=np.float64)
        target_root = np.asarray(target_root, dtype=np.float64)
        if pred_root.shape != roots_shape or target_root.shape != roots_shape:
            raise InputError(
                f"pred_root and target_root must have shape {roots_shape}, "
                f"got {pred_root.shape} and {target_root.shape}."
            )
        pred_vertices = pred_vertices - pred_root[..., None, :]
        target_vertices = target_vertices - target_root[..., None, :]
    return mpjpe(pred_vertices, target_vertices)


def accel_error(pred, target, root_indices=None):
    """Acceleration error in mm/frame^2 for (N, J, 3) joint sequences, N >= 3.

    The second difference p[t-1] - 2 p[t] + p[t+1] of each joint, compared between prediction and
    target and averaged over joints. root_indices as in mpjpe.

    Returns (N - 2,) errors, one per interior frame.
    """
    pred, target = _as_pair(pred, target)
    if pred.ndim != 3 or pred.shape[0] < 3:
        raise InputError(f"accel_error needs sequences (N, J, 3) with N >= 3 frames, got {pred.shape}.")
    pred = _root_relative(pred, root_indices)
    target = _root_relative(target, root_indices)
    pred_acceleration = pred[:-2] - 2.0 * pred[1:-1] + pred[2:]
    target_acceleration = target[:-2] - 2.0 * target[1:-1] + target[2:]
    return MM_PER_METRE * np.linalg.norm(pred_acceleration - target_acceleration, axis=-1).mean(axis=-1)


def benchmark_joints(convention, smpl_joints, vertices=None, h36m_regressor=None):
    """A benchmark's joints and root from a body model's output.

    Args:
        convention: "emdb" or "3dpw" (see the module docstring).
        smpl_joints: (N, 24, 3) or (24, 3) SMPL joints, metres.
        vertices: (N, V, 3) or (V, 3) mesh vertices; needed only with h36m_regressor.
        h36m_regressor: (17, V) H36M or (14, V) LSP-order joint regressor for "3dpw", or None for
            the fallback. Passing one with "emdb" is an error (EMDB is scored on SMPL's joints).

    Returns (joints (N, J, 3) or (J, 3), root (N, 3) or (3,)), J = 24 for "emdb", 14 for "3dpw".
    """
    if convention not in CONVENTIONS:
        raise InputError(f"convention must be one of {CONVENTIONS}, got {convention!r}.")
    smpl_joints = _as_points(smpl_joints, "smpl_joints")
    if smpl_joints.shape[-2] != NUM_JOINTS:
        raise InputError(f"smpl_joints must hold SMPL's {NUM_JOINTS} joints, got shape {smpl_joints.shape}.")
    if convention == "emdb":
        if h36m_regressor is not None:
            raise InputError("EMDB is scored on SMPL's 24 joints: do not pass an H36M regressor.")
        return smpl_joints, root_position(smpl_joints, EMDB_ROOT_JOINTS)

    if h36m_regressor is None:
        joints = smpl_joints[..., SMPL_TO_LSP14, :]
        return joints, root_position(joints, LSP14_ROOT_JOINTS)

    regressor = np.asarray(h36m_regressor, dtype=np.float64)
    if vertices is None:
        raise InputError("3DPW joints from an H36M regressor need the mesh vertices.")
    vertices = _as_points(vertices, "vertices")
    if regressor.ndim != 2 or regressor.shape[0] not in (17, 14) or regressor.shape[1] != vertices.shape[-2]:
        raise InputError(
            f"h36m_regressor must have shape (17, V) or (14, V) with V = {vertices.shape[-2]} vertices, "
            f"got {regressor.shape}."
        )
    if vertices.shape[:-2] != smpl_joints.shape[:-2]:
        raise InputError(f"vertices {vertices.shape} and smpl_joints {smpl_joints.shape} must have the same frames.")
    regressed = np.einsum("jv,...vc->...jc", regressor, vertices)
    if regressor.shape[0] == 17:
        return regressed[..., H36M_TO_LSP14, :], regressed[..., H36M_PELVIS, :]
    return regressed, root_position(regressed, LSP14_ROOT_JOINTS)


@dataclasses.dataclass(frozen=True)
class BenchmarkErrors:
    """Per-frame errors of one sequence: mpjpe, pa_mpjpe, pve (N,) in mm; accel (N - 2,) in mm/frame^2."""

    mpjpe: np.ndarray
    pa_mpjpe: np.ndarray
    pve: np.ndarray
    accel: np.ndarray

    def means(self):
        """{metric: mean over frames}; accel is NaN for sequences shorter than 3 frames."""
        return {
            "mpjpe": float(np.mean(self.mpjpe)),
            "pa_mpjpe": float(np.mean(self.pa_mpjpe)),
            "pve": float(np.mean(self.pve)),
            "accel": float(np.mean(self.accel)) if self.accel.size else float("nan"),
        }


def evaluate(convention, pred_joints, target_joints, pred_vertices, target_vertices, h36m_regressor=None):
    """All four metrics of one sequence under a benchmark convention.

    Joints and vertices are rooted at each body's own benchmark root before MPJPE, PVE and the
    acceleration error; PA-MPJPE fits its own similarity.

    Args:
        convention: "emdb" or "3dpw".
        pred_joints, target_joints: (N, 24, 3) SMPL joints, metres.
        pred_vertices, target_vertices: (N, V, 3) vertices, metres.
        h36m_regressor: for "3dpw", a (17, V) or (14, V) regressor, or None for the fallback.

    Returns BenchmarkErrors.
    """
    pred_joints = _as_points(pred_joints, "pred_joints")
    if pred_joints.ndim != 3:
        raise InputError(f"evaluate scores sequences: pred_joints must be (N, 24, 3), got {pred_joints.shape}.")
    pred_points, pred_root = benchmark_joints(convention, pred_joints, pred_vertices, h36m_regressor)
    target_points, target_root = benchmark_joints(convention, target_joints, target_vertices, h36m_regressor)
    pred_points, target_points = _as_pair(
        pred_points - pred_root[..., None, :], target_points - target_root[..., None, :]
    )
    return BenchmarkErrors(
        mpjpe=mpjpe(pred_points, target_points),
        pa_mpjpe=pa_mpjpe(pred_points, target_points),
        pve=pve(pred_vertices, target_vertices, pred_root, target_root),
        accel=accel_error(pred_points, target_points) if len(pred_points) >= 3 else np.zeros(0),
    )


# Smallest box overlap at which a predicted body counts as the prediction of a true one (`fasthmr replay`).
MATCH_MIN_IOU = 0.3


class StreamAccuracy:
    """Accuracy of a stream's predictions against ground truth, frame by frame (`fasthmr replay`).

    Each frame's predicted and true bodies are matched one to one by box overlap (tracking.match_boxes,
    at least MATCH_MIN_IOU); a true body with no match counts as missed. MPJPE, PA-MPJPE and PVE use the
    EMDB convention; the acceleration error is taken over runs of at least 3 consecutive frames in which
    a true track stays matched.
    """

    def __init__(self) -> None:
        self._tracks: dict[int, list] = {}  # true track -> [(frame, pred joints, true joints, pred verts, true verts)]
        self.truths = 0
        self.missed = 0

    def add(self, frame: int, predicted_boxes, predicted_joints, predicted_vertices, true_boxes, true_track_ids,
            true_joints, true_vertices) -> None:
        """One frame (frames count up by one between consecutive frames): predicted boxes (P, 4) (x0, y0, x1, y1),
        joints (P, 24, 3), vertices (P, V, 3); the true ones likewise (T, ...), with their track ids (T,)."""
        self.truths += len(true_boxes)
        pairs = match_boxes(predicted_boxes, true_boxes, MATCH_MIN_IOU)
        self.missed += len(true_boxes) - len(pairs)
        for pred, true in pairs:
            self._tracks.setdefault(int(true_track_ids[true]), []).append(
                (frame, predicted_joints[pred], true_joints[true], predicted_vertices[pred], true_vertices[true]))

    def metrics(self) -> dict | None:
        """{"mpjpe", "pa_mpjpe", "pve", "accel"} in mm (accel mm/frame^2, None without a run of 3 frames), or None
        when nothing was matched."""
        sums = dict.fromkeys(("mpjpe", "pa_mpjpe", "pve", "accel"), 0.0)
        counts = dict.fromkeys(sums, 0)
        for entries in self._tracks.values():
            # Runs of consecutive frames: the acceleration needs neighbours.
            runs, current = [], [entries[0]]
            for entry in entries[1:]:
                if entry[0] == current[-1][0] + 1:
                    current.append(entry)
                else:
                    runs.append(current)
                    current = [entry]
            runs.append(current)
            for run in runs:
                errors = evaluate("emdb", *(np.stack([entry[k] for entry in run]) for k in range(1, 5)))
                for name in sums:
                    values = np.atleast_1d(getattr(errors, name))
                    sums[name] += float(np.sum(values))
                    counts[name] += len(values)
        if not counts["mpjpe"]:
            return None
        return {name: round(sums[name] / counts[name], 2) if counts[name] else None for name in sums}

"""Reads AMASS-style motion-capture sequences (.npz) into MotionSequence, in this project's y-up world.

An AMASS file holds, per sequence:
- poses (T, 156) SMPL-H, (T, 165) SMPL-X or (T, 72) SMPL axis-angle, radians: the root orientation
  then the body joints in SMPL's order. SMPL-H and SMPL-X share SMPL's first 22 joints (root + 21);
  their remaining entries are hands (and face), so SMPL's two hand joints 22, 23 are set to identity.
- trans (T, 3) metres: SMPL's transl.
- betas (16,) or (10,): shape coefficients; the first 10 are kept. They are coefficients of the
  body model the file was made with (usually SMPL-H); other bodies give them other meanings.
- mocap_framerate (older releases) or mocap_frame_rate: frames per second.
- gender (optional): "male", "female" or "neutral".

AMASS is z-up; this project's world is y-up (the body model's rest frame). The whole world is rotated
by -90 degrees about x, which takes +z (up) to +y and +y (forward in AMASS) to -z:
root orientation R -> A R, and since the body rotates about its pelvis, the pelvis position
(rest pelvis J0 + trans) -> A (J0 + trans), i.e. trans -> A (trans + J0) - J0, with J0 the rest
pelvis of the body model the sequence will be played on, for these betas.
"""

from pathlib import Path

import numpy as np

from fasthmr_model.body.lbs import move_body
from fasthmr_model.body.rotations import axis_angle_to_matrix
from fasthmr_model.body.skeleton import JOINT_INDEX, NUM_BETAS, NUM_JOINTS
from fasthmr_model.data.motion import MotionSequence, resample_sequence, rest_skeleton
from fasthmr_model.errors import InputError
from fasthmr_model.pickles import load_npz_arrays

# AMASS z-up -> our y-up: a rotation by -90 degrees about x, (x, y, z) -> (x, z, -y).
AMASS_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
# Pose widths by body model, and how many of their leading joints are SMPL's.
POSE_WIDTHS = {3 * NUM_JOINTS: ("SMPL", NUM_JOINTS), 156: ("SMPL-H", 22), 165: ("SMPL-X", 22)}
FRAME_RATE_KEYS = ("mocap_framerate", "mocap_frame_rate")
GENDERS = ("neutral", "male", "female")
MOCAP_LABEL = "mocap"


def _load_arrays(path):
    """{key: array} of the .npz at `path`; InputError if it is missing or not a plain-array .npz."""
    if not path.is_file():
        raise InputError(f"The AMASS file {path} does not exist.")
    try:
        return load_npz_arrays(path)
    except ValueError as error:
        raise InputError(
            f"Cannot read the AMASS file {path}: {error}. It must be an .npz of plain arrays (no pickled "
            f"objects); re-save it with numpy.savez, gender as a plain string."
        ) from error
    except Exception as error:  # not a zip, a truncated member, ...: all mean "unreadable"
        raise InputError(f"Cannot read the AMASS file {path} ({type(error).__name__}: {error}).") from error


def _numeric(path, arrays, key):
    """arrays[key] as a float64 array of finite values, else InputError."""
    if key not in arrays:
        raise InputError(f"The AMASS file {path} has no '{key}' array (it has {', '.join(sorted(arrays)) or 'none'}).")
    array = arrays[key]
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"'{key}' in the AMASS file {path} must be numeric, got {array.dtype} with shape {array.shape}.")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise InputError(f"'{key}' in the AMASS file {path} contains NaN or infinite values.")
    return array


def _frame_rate(path, arrays):
    """The file's frame rate (positive float) under either spelling of its key."""
    present = [key for key in FRAME_RATE_KEYS if key in arrays]
    if not present:
        raise InputError(f"The AMASS file {path} has no frame rate: expected one of {', '.join(FRAME_RATE_KEYS)}.")
    rate = _numeric(path, arrays, present[0])
    if rate.size != 1 or rate.item() <= 0.0:
        raise InputError(f"'{present[0]}' in the AMASS file {path} must be one positive number, got {rate!r}.")
    return float(rate.item())


def _gender(path, arrays):
    """The file's gender as one of GENDERS ("neutral" when the file has none)."""
    if "gender" not in arrays:
        return "neutral"
    value = arrays["gender"]
    if value.dtype.kind == "S":
        value = np.char.decode(value, "utf-8")
    gender = str(value).strip().lower() if value.dtype.kind in "SU" and value.size == 1 else None
    if gender not in GENDERS:
        raise InputError(f"'gender' in the AMASS file {path} must be one of {', '.join(GENDERS)}, got {arrays['gender']!r}.")
    return gender


def read_amass(path, target_fps=None, body_model=None):
    """Reads an AMASS-style .npz into a MotionSequence in the y-up world (see the module docstring).

    Args:
        path: the .npz file.
        target_fps: resample to this frame rate (slerp for rotations, linear for translation), or None
            to keep the file's rate.
        body_model: the BodyModel the sequence will be played on, for its rest pelvis (default: the
            synthetic body).

    Every frame is labelled "mocap". Raises InputError (with the path) for a missing or unreadable
    file, missing keys, arrays of the wrong shape, non-finite values, or an unknown gender.
    """
    path = Path(path)
    arrays = _load_arrays(path)
    poses = _numeric(path, arrays, "poses")
    if poses.ndim != 2 or poses.shape[1] not in POSE_WIDTHS or poses.shape[0] < 1:
        raise InputError(
            f"'poses' in the AMASS file {path} has shape {poses.shape}; expected (T, W) with T >= 1 and W one of "
            + ", ".join(f"{size} ({model})" for size, (model, _) in POSE_WIDTHS.items())
            + "."
        )
    frame_count, width = poses.shape
    trans = _numeric(path, arrays, "trans")
    if trans.shape != (frame_count, 3):
        raise InputError(f"'trans' in the AMASS file {path} has shape {trans.shape}; expected ({frame_count}, 3) to match 'poses'.")
    betas = _numeric(path, arrays, "betas")
    if betas.ndim != 1 or betas.size < NUM_BETAS:
        raise InputError(f"'betas' in the AMASS file {path} has shape {betas.shape}; expected ({NUM_BETAS},) or longer, e.g. (16,).")
    fps = _frame_rate(path, arrays)
    gender = _gender(path, arrays)

    _, smpl_joints = POSE_WIDTHS[width]
    axis_angles = np.zeros((frame_count, NUM_JOINTS, 3))
    axis_angles[:, :smpl_joints] = poses[:, : 3 * smpl_joints].reshape(frame_count, smpl_joints, 3)
    rotmats = axis_angle_to_matrix(axis_angles)
    betas = betas[:NUM_BETAS]
    rest_pelvis = rest_skeleton(body_model, betas).joints[JOINT_INDEX["pelvis"]]
    rotmats[:, 0], translation = move_body(AMASS_TO_WORLD, np.zeros(3), rotmats[:, 0], trans, rest_pelvis)
    sequence = MotionSequence(
        fps=fps,
        rotmats=rotmats,
        translation=translation,
        betas=betas,
        labels=np.full(frame_count, MOCAP_LABEL),
        gender=gender,
    )
    return sequence if target_fps is None else resample_sequence(sequence, target_fps)

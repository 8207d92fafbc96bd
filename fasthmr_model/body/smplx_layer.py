"""An smplx.SMPL layer built from any body model file we can read (training, export and parity tests).

torch and smplx are imported inside load_smplx_layer only, so importing this module costs nothing at
run time. The arrays come from our own loader and reach smplx through its data_struct argument, so
smplx never opens the file itself (it would need chumpy for an official .pkl).
"""

import contextlib
import io

from fasthmr_model.body.model_file import load_body_model_file
from fasthmr_model.body.skeleton import NUM_BETAS, NUM_JOINTS
from fasthmr_model.errors import InputError

# smplx.SMPL always appends five face landmarks (nose, eyes, ears) picked by vertex index, and its
# default indices address SMPL's 6890-vertex mesh. Any valid index serves, because
# _first_24_joints drops them again: only SMPL's 24 joints are used here.
_FACE_LANDMARK_NAMES = ("nose", "reye", "leye", "rear", "lear")


def _first_24_joints(joints):
    """smplx joint_mapper: (B, 24 + extras, 3) -> (B, 24, 3), SMPL's own joints."""
    return joints[:, :NUM_JOINTS]


def load_smplx_layer(path, dtype="float32"):
    """An smplx.SMPL module for the body model file `path` (.npz or SMPL .pkl).

    Its forward(betas=(B, 10), global_orient=(B, 3), body_pose=(B, 69), transl=(B, 3)) returns
    vertices (B, V, 3) and joints (B, 24, 3); with pose2rot=False it takes rotation matrices
    (B, 1, 3, 3) and (B, 23, 3, 3) instead. dtype is "float32" or "float64".

    Raises BodyModelError if the file is unusable (see load_body_model_file), InputError for
    another dtype.
    """
    if dtype not in ("float32", "float64"):
        raise InputError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    import torch
    import smplx
    from smplx.utils import Struct

    arrays = load_body_model_file(path)
    torch_dtype = getattr(torch, dtype)
    data_struct = Struct(**{key: value for key, value in arrays.as_dict().items() if key != "model_name"})
    # smplx prints a warning for files with fewer than 300 shape components; ours keep 10 on purpose.
    with contextlib.redirect_stdout(io.StringIO()):
        layer = smplx.SMPL(
            model_path=str(path),
            data_struct=data_struct,
            num_betas=NUM_BETAS,
            dtype=torch_dtype,
            vertex_ids={name: 0 for name in _FACE_LANDMARK_NAMES},
            use_hands=False,
            use_feet_keypoints=False,
            joint_mapper=_first_24_joints,
        )
    return layer

"""The body model: SMPL's joint tree, rotations, the synthetic body, file loading and numpy LBS.

Run-time code uses BodyModel (numpy only). load_smplx_layer builds the torch/smplx twin of the same
file for training, export and parity tests; it imports torch only when called.
"""

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.model_file import BodyModelArrays, load_body_model_file
from fasthmr_model.body.skeleton import JOINT_NAMES, NUM_BETAS, NUM_JOINTS, PARENTS
from fasthmr_model.body.smplx_layer import load_smplx_layer
from fasthmr_model.body.synthetic import MODEL_NAME as SYNTHETIC_BODY_NAME
from fasthmr_model.body.synthetic import build_synthetic_body, write_synthetic_body

__all__ = [
    "BodyModel",
    "BodyModelArrays",
    "JOINT_NAMES",
    "NUM_BETAS",
    "NUM_JOINTS",
    "PARENTS",
    "SYNTHETIC_BODY_NAME",
    "build_synthetic_body",
    "load_body_model_file",
    "load_smplx_layer",
    "write_synthetic_body",
]

"""`fasthmr eval`: a bundle's accuracy on a split of the synthetic world, next to the mean-pose baseline.

Both are scored on the split's person crops (made by the run-time preprocessing) with the EMDB convention:
SMPL's 24 joints, each body rooted at the mean of its hips; PA-MPJPE after a similarity Procrustes fit;
PVE over the body model's vertices with the same roots. The baseline always predicts the bundle's mean
pose and mean shape (the parameters its read-outs start from). Run-time module: numpy + onnxruntime.
"""

from __future__ import annotations

import numpy as np

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.rotations import rot6d_to_matrix
from fasthmr_model.body.skeleton import NUM_BETAS, NUM_JOINTS
from fasthmr_model.bundle import Bundle
from fasthmr_model.data.crop import normalise_windows
from fasthmr_model.data.world import CropSet
from fasthmr_model.encoder.config import POSE_6D_SIZE
from fasthmr_model.errors import BundleError
from fasthmr_model.metrics import evaluate
from fasthmr_model.runtime import EncoderSession, RuntimeConfig

BATCH_SIZE = 32


def score_parameters(body: BodyModel, betas: np.ndarray, rotmats: np.ndarray, crops: CropSet) -> dict[str, float]:
    """Predicted betas (N, 10) and rotmats (N, 24, 3, 3) against the crops' truth -> {mpjpe, pa_mpjpe, pve} in mm.

    The truth is posed by the same body model (no translation): the metrics root every body at its own
    hips, so the camera-frame translation of the stored joints plays no part.
    """
    vertices, joints = body.forward(betas, rotmats)
    true_vertices, true_joints = body.forward(np.asarray(crops.betas, np.float64), np.asarray(crops.rotmats, np.float64))
    means = evaluate("emdb", joints, true_joints, vertices, true_vertices).means()
    return {name: round(means[name], 2) for name in ("mpjpe", "pa_mpjpe", "pve")}


def evaluate_bundle(bundle: Bundle, crops: CropSet, runtime: RuntimeConfig = RuntimeConfig()) -> dict:
    """{"model": {mpjpe, pa_mpjpe, pve}, "mean_pose_baseline": {...}, "frames": .., "persons": ..} in mm, and
    where the encoder ran ("provider", "device", "precision")."""
    session = EncoderSession(bundle, runtime)
    body = BodyModel.from_file(bundle.body_model_path)
    count = len(crops)
    betas = np.empty((count, NUM_BETAS), np.float32)
    pose_6d = np.empty((count, POSE_6D_SIZE), np.float32)
    for start in range(0, count, BATCH_SIZE):
        window = slice(start, min(start + BATCH_SIZE, count))
        output = session.run(normalise_windows(np.asarray(crops.windows[window])),
                             np.asarray(crops.person_tokens[window], np.float32))
        betas[window], pose_6d[window] = output.betas, output.pose_6d
    mean = bundle.mean_parameters
    if mean is None:
        raise BundleError(f"{bundle.path}'s manifest has no encoder.mean_parameters; re-export the bundle")
    return {
        "model": score_parameters(body, betas, rot6d_to_matrix(pose_6d.reshape(count, NUM_JOINTS, 6)), crops),
        "mean_pose_baseline": score_parameters(
            body, np.repeat(mean.betas[None], count, 0),
            np.repeat(rot6d_to_matrix(mean.pose_6d.reshape(1, NUM_JOINTS, 6)), count, 0), crops),
        "frames": int(len(np.unique(crops.frame_index))),
        "persons": count,
        "provider": session.provider, "device": session.device, "precision": session.opened.precision,
    }

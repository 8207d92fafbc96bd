"""Bodies in the conventions robots read: REP-103 body frames, per-joint frames, and the 18 image keypoints
that REP-155 (ROS4HRI's Skeleton2D, OpenPose's COCO order) names, from SMPL-format results.

SMPL's root frame has x = the body's left, y = up, z = the facing direction. A body frame in ROS (REP-103)
has x = forward (facing), y = left, z = up. The ROS adapter (fasthmr_ros) turns these arrays into TF, people
and REP-155 messages. Run-time module: numpy only.
"""

from __future__ import annotations

import numpy as np

from fasthmr_model.body.skeleton import JOINT_INDEX, KinematicTree
from fasthmr_model.data.lens import CameraModel

# Column k is REP-103 body axis k (x forward, y left, z up) in SMPL's root coordinates (x left, y up, z facing).
SMPL_TO_REP103_AXES = np.array([[0.0, 1.0, 0.0],
                                [0.0, 0.0, 1.0],
                                [1.0, 0.0, 0.0]])

# The 18 keypoints of REP-155's Skeleton2D (hri_msgs: NOSE = 0 ... RIGHT_EAR = 17) -> the SMPL joint drawn for
# each. SMPL has no nose, eyes or ears: those take the head joint with confidence 0 (not estimated).
SKELETON2D_JOINTS = (
    ("nose", "head"), ("neck", "neck"),
    ("right_shoulder", "right_shoulder"), ("right_elbow", "right_elbow"), ("right_wrist", "right_wrist"),
    ("left_shoulder", "left_shoulder"), ("left_elbow", "left_elbow"), ("left_wrist", "left_wrist"),
    ("right_hip", "right_hip"), ("right_knee", "right_knee"), ("right_ankle", "right_ankle"),
    ("left_hip", "left_hip"), ("left_knee", "left_knee"), ("left_ankle", "left_ankle"),
    ("left_eye", "head"), ("right_eye", "head"), ("left_ear", "head"), ("right_ear", "head"),
)
SKELETON2D_SMPL_JOINTS = np.array([JOINT_INDEX[joint] for _, joint in SKELETON2D_JOINTS], np.intp)
# Keypoints that are a real SMPL joint (the others are the head joint's stand-ins).
SKELETON2D_ESTIMATED = np.array([keypoint == joint for keypoint, joint in SKELETON2D_JOINTS])


def normalised_image_points(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel coordinates (..., 2) (pixel u spans [u - 0.5, u + 0.5], as the boxes' edges) -> REP-155's normalised
    coordinates: 0 at the image's left (top) edge, 1 at its right (bottom) edge."""
    return (np.asarray(pixels, np.float64) + 0.5) / np.array([width, height], np.float64)


def rep103_rotations(smpl_rotations: np.ndarray) -> np.ndarray:
    """Rotations (..., 3, 3) of SMPL frames (a root's global orientation, a joint's world rotation) in the camera
    frame -> the rotations of the matching REP-103 body frames (x = the SMPL frame's z, y = its x, z = its y)."""
    return smpl_rotations @ SMPL_TO_REP103_AXES


def joint_frames(rotmats: np.ndarray, joints: np.ndarray, tree: KinematicTree) -> tuple[np.ndarray, np.ndarray]:
    """Each joint's REP-103 frame relative to its body's frame (the pelvis joint's): rotmats (B, J, 3, 3) local
    rotations (the root's global), joints (B, J, 3) positions in the camera frame -> rotations (B, J, 3, 3) and
    positions (B, J, 3) in the body frame (row 0: identity and zero)."""
    body = rep103_rotations(rotmats[:, 0])  # (B, 3, 3)
    world = rep103_rotations(tree.world_rotations(rotmats))  # (B, J, 3, 3)
    to_body = np.swapaxes(body, -1, -2)[:, None]
    positions = (to_body @ (joints - joints[:, :1])[..., None])[..., 0]
    return to_body @ world, positions


def skeleton_keypoints(joints: np.ndarray, camera: CameraModel, width: int, height: int,
                       confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """REP-155's 18 keypoints of each body: joints (B, J, 3) in the camera frame (m), the camera (K and its lens:
    the points are where the joints appear in the image as published, distortion included), the image's width
    and height (pixels), the bodies' confidence (B,) -> normalised image points (B, 18, 2) (x right, y down, in
    [0, 1] inside the image) and their confidence (B, 18): the body's for an estimated joint in front of the
    camera and inside the image, else 0."""
    points = joints[:, SKELETON2D_SMPL_JOINTS].astype(np.float64)  # (B, 18, 3)
    depth = points[..., 2]
    in_front = depth > 1e-6
    safe_depth = np.where(in_front, depth, 1.0)
    u, v = camera.to_pixels(*camera.distort_normalised(points[..., 0] / safe_depth, points[..., 1] / safe_depth))
    normalised = normalised_image_points(np.stack([u, v], axis=-1), width, height)
    inside = in_front & np.all((normalised >= 0.0) & (normalised <= 1.0), axis=-1)
    keypoint_confidence = np.where(inside & SKELETON2D_ESTIMATED, np.asarray(confidence, np.float64)[:, None], 0.0)
    return np.where(in_front[..., None], normalised, 0.0), keypoint_confidence

"""One camera frame through the model: crops -> encoder session -> SMPL-format bodies in the camera frame.

The per-frame stage of the stream (fasthmr_model.stream.StreamPipeline, which adds tracks and the temporal
decoder), and on its own the per-frame reference of the tests and tools. Run-time module: numpy and
onnxruntime only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.rotations import matrix_to_axis_angle, rot6d_to_matrix
from fasthmr_model.body.skeleton import NUM_BETAS, NUM_JOINTS
from fasthmr_model.bundle import Bundle, load_bundle
from fasthmr_model.data.crop import (
    PreprocessConfig, camera_translation, crop_ray_rotations, prepare_persons, validate_intrinsics,
)
from fasthmr_model.data.lens import CameraModel
from fasthmr_model.encoder.config import CAM_SIZE, POSE_6D_SIZE
from fasthmr_model.errors import InputError
from fasthmr_model.runtime import EncoderSession, RuntimeConfig


@dataclass
class FrameResult:
    """The persons found in one frame (B may be 0); every array's first axis is the person.

    ids (B,) instance ids; boxes (B, 4) tight mask boxes (x0, y0, x1, y1); crop_boxes (B, 3); crop_rays (B, 3)
    the turn of the optical axis onto each crop centre's ray (data.crop.crop_ray_rotations);
    person_tokens (B, 192); rotmats (B, 24, 3, 3); axis_angle (B, 24, 3); betas (B, 10); cam (B, 3);
    translation (B, 3) metres, camera optical frame; joints (B, 24, 3) camera frame; vertices (B, V, 3)
    camera frame or None when not asked for; feature (B, D); timings_ms: stage -> milliseconds;
    persons_over_cap: persons of the frame left out because it had more than preprocess.max_persons.
    """

    ids: np.ndarray
    boxes: np.ndarray
    crop_boxes: np.ndarray
    crop_rays: np.ndarray
    person_tokens: np.ndarray
    rotmats: np.ndarray
    axis_angle: np.ndarray
    betas: np.ndarray
    cam: np.ndarray
    translation: np.ndarray
    joints: np.ndarray
    vertices: np.ndarray | None
    feature: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)
    persons_over_cap: int = 0


class FramePipeline:
    """Loads a bundle (the default one when None), warms its session, and processes frames."""

    def __init__(self, bundle: Bundle | str | Path | None = None, runtime: RuntimeConfig = RuntimeConfig(),
                 preprocess: PreprocessConfig = PreprocessConfig(), body_model_path: str | Path | None = None
                 ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.preprocess = preprocess
        self.encoder = EncoderSession(self.bundle, runtime)
        self.body_model = BodyModel.from_file(body_model_path or self.bundle.body_model_path)

    @property
    def provider(self) -> str:
        return self.encoder.provider

    @property
    def device(self) -> str:
        return self.encoder.device

    def process(self, image: np.ndarray, instance_mask: np.ndarray, intrinsics: np.ndarray | CameraModel,
                with_vertices: bool = True) -> FrameResult:
        """image (H, W, 3) uint8 RGB, instance_mask (H, W) (0 = background, k = person k), intrinsics K (3, 3)
        of a pinhole camera, or a CameraModel (K and lens distortion: crops and translations then come from
        the undistorted view; crop_boxes are in its pixels, boxes stay the image's)."""
        camera = intrinsics if isinstance(intrinsics, CameraModel) else None
        intrinsics = camera.intrinsics if camera is not None else intrinsics
        validate_intrinsics(intrinsics)
        timings = {}
        start = time.perf_counter()
        crops = prepare_persons(image, instance_mask, self.preprocess, camera)
        timings["preprocess"] = _ms_since(start)

        start = time.perf_counter()
        if len(crops.ids):
            encoded = self.encoder.run(crops.images, crops.person_tokens)
        else:
            encoded = None
        timings["encoder"] = _ms_since(start)

        start = time.perf_counter()
        count = len(crops.ids)
        if encoded is None:
            feature_size = self.bundle.feature_size
            pose_6d = np.zeros((0, POSE_6D_SIZE), np.float32)
            betas, cam, feature = np.zeros((0, NUM_BETAS), np.float32), np.zeros((0, CAM_SIZE), np.float32), np.zeros(
                (0, feature_size), np.float32)
        else:
            pose_6d, betas, cam, feature = encoded
        rotmats = rot6d_to_matrix(pose_6d.reshape(count, NUM_JOINTS, 6))
        translation = camera_translation(cam, crops.crop_boxes, intrinsics)
        if self.bundle.camera_anchor == "pelvis":  # the camera placed the pelvis, not the body's origin
            translation = translation - self.body_model.rest_joints(betas)[:, 0]
        if not np.all(np.isfinite(translation)):  # a valid K keeps this from happening: never publish it
            raise InputError(f"the bodies' translations are not finite ({translation.tolist()}); check the "
                             "CameraInfo's K and the bundle")
        vertices, joints = self.body_model.forward(betas, rotmats, translation, with_vertices)
        timings["body_model"] = _ms_since(start)
        return FrameResult(
            ids=crops.ids, boxes=crops.boxes, crop_boxes=crops.crop_boxes,
            crop_rays=crop_ray_rotations(crops.crop_boxes, intrinsics), person_tokens=crops.person_tokens,
            rotmats=rotmats, axis_angle=matrix_to_axis_angle(rotmats), betas=betas, cam=cam,
            translation=translation, joints=joints, vertices=vertices,
            feature=feature, timings_ms=timings, persons_over_cap=crops.over_cap,
        )


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0

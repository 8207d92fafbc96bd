"""`fasthmr figure`: a grid of test-split crops with the predicted mesh drawn over them (for the README).

The mesh is posed from the encoder's pose and shape and placed by its crop camera (HMR2.0's
CROP_FOCAL_PX in the 256 px crop), rasterised with a z-buffer and shaded per face, half transparent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.rotations import rot6d_to_matrix
from fasthmr_model.body.skeleton import NUM_JOINTS
from fasthmr_model.bundle import Bundle
from fasthmr_model.data.crop import CROP_COLUMN_OFFSET, normalise_windows
from fasthmr_model.data.render import rasterize
from fasthmr_model.data.world import CropSet
from fasthmr_model.encoder.config import CROP_FOCAL_PX, CROP_SIZE
from fasthmr_model.runtime import EncoderSession

# Crop pixel i has its centre at normalised coordinate (i + 0.5 - 128) / 256.
CROP_INTRINSICS = np.array([[CROP_FOCAL_PX, 0.0, CROP_SIZE / 2 - 0.5 - CROP_COLUMN_OFFSET],
                            [0.0, CROP_FOCAL_PX, CROP_SIZE / 2 - 0.5], [0.0, 0.0, 1.0]])
MESH_COLOUR = np.array([110.0, 190.0, 255.0])
LIGHT = np.array([0.0, -0.4, -1.0]) / np.linalg.norm([0.0, -0.4, -1.0])  # from the camera, slightly above
OPACITY = 0.6


def overlay_mesh(image: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                 intrinsics: np.ndarray = CROP_INTRINSICS) -> np.ndarray:
    """image (H, W, 3) uint8 (default: a 256x192 encoder window), camera-frame vertices (V, 3) of the camera
    with `intrinsics` (default: the crop camera) -> the image with the mesh drawn over it."""
    fragments = rasterize(vertices, faces, intrinsics, image.shape[1], image.shape[0])
    corners = vertices[faces[fragments.face]]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    shade = 0.35 + 0.65 * np.clip(normals @ LIGHT / np.linalg.norm(normals, axis=1).clip(1e-12), 0, 1)
    out = image.reshape(-1, 3).astype(np.float32)
    out[fragments.pixel] = (1 - OPACITY) * out[fragments.pixel] + OPACITY * shade[:, None] * MESH_COLOUR
    return out.reshape(image.shape).clip(0, 255).astype(np.uint8)


def prediction_grid(bundle: Bundle, crops: CropSet, count: int = 16, columns: int = 8) -> Image.Image:
    """`count` crops spread evenly over the split, each with the bundle's mesh drawn over it."""
    chosen = np.linspace(0, len(crops) - 1, count).round().astype(int)
    windows = np.asarray(crops.windows[chosen])
    output = EncoderSession(bundle).run(normalise_windows(windows), np.asarray(crops.person_tokens[chosen], np.float32))
    body = BodyModel.from_file(bundle.body_model_path)
    rotmats = rot6d_to_matrix(output.pose_6d.reshape(count, NUM_JOINTS, 6))
    scale = np.maximum(output.cam[:, 0], 1e-2)
    placement = np.stack([output.cam[:, 1], output.cam[:, 2], 2 * CROP_FOCAL_PX / (CROP_SIZE * scale)], axis=1)
    if bundle.camera_anchor == "pelvis":  # as the pipeline does: the camera placed the pelvis
        placement = placement - body.rest_joints(output.betas)[:, 0]
    vertices, _ = body.forward(output.betas, rotmats, placement)
    tiles = [overlay_mesh(window, points, body.faces) for window, points in zip(windows, vertices)]
    rows = [np.concatenate(tiles[start:start + columns], axis=1) for start in range(0, count, columns)]
    return Image.fromarray(np.concatenate(rows, axis=0))


def write_prediction_grid(bundle: Bundle, crops: CropSet, out: Path, count: int = 16) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.stem}.tmp{out.suffix}")  # the suffix picks the format (.png, .jpg)
    prediction_grid(bundle, crops, count).save(temporary)
    temporary.replace(out)
    return out

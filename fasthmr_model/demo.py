"""`fasthmr demo`: one synthetic camera frame through the whole run-time pipeline, with what it found.

Until the synthetic world's renderer and trained default model land, the frame is drawn by splatting the
posed synthetic body's vertices (a silhouette and flat colours, no shading), and a bundle without trained
weights is said to be untrained in the output: the figures show the pipeline's work and speed, not accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.rotations import axis_angle_to_matrix
from fasthmr_model.bundle import default_bundle_path, load_bundle
from fasthmr_model.data.world import default_cache
from fasthmr_model.metrics import EMDB_ROOT_JOINTS, mpjpe
from fasthmr_model.pipeline import FramePipeline

IMAGE_SIZE = (480, 640)  # rows, columns
INTRINSICS = np.array([[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]])
# Two people seen by a robot's camera: (translation in the camera frame, left shoulder/elbow raise, betas).
SCENE = (
    (np.array([-0.7, 0.25, 4.0]), 1.1, np.array([0.5, -0.3, 0, 0, 0, 0, 0, 0, 0, 0.0])),
    (np.array([0.9, 0.15, 6.0]), -0.4, np.array([-1.0, 0.8, 0, 0, 0, 0, 0, 0, 0, 0.0])),
)
SPLAT_RADIUS_M = 0.035
TIMED_RUNS = 20


def synthetic_frame(body: BodyModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image (H, W, 3) uint8, instance mask (H, W) uint8, true joints (P, 24, 3)) of SCENE."""
    rows, cols = IMAGE_SIZE
    gradient = np.linspace(60, 200, rows, dtype=np.float32)[:, None, None]
    image = np.broadcast_to(gradient * np.array([0.6, 0.8, 1.0], np.float32), (rows, cols, 3)).astype(np.uint8)
    image = np.ascontiguousarray(image)
    mask = np.zeros(IMAGE_SIZE, np.uint8)
    poses = []
    for translation, arm, betas in SCENE:
        axis_angle = np.zeros((24, 3))
        axis_angle[0] = [np.pi, 0.0, 0.0]  # upright and facing the camera (the camera's y points down)
        axis_angle[16] = [0.0, 0.0, -arm]  # left shoulder
        axis_angle[18] = [0.0, -arm / 2, 0.0]  # left elbow
        poses.append((axis_angle_to_matrix(axis_angle), betas, translation))
    vertices, joints = body.forward(np.array([p[1] for p in poses]), np.array([p[0] for p in poses]),
                                    np.array([p[2] for p in poses]))
    colours = ((200, 90, 60), (70, 160, 90))
    for person in np.argsort(-vertices[:, :, 2].mean(axis=1)):  # far to near, so nearer people occlude
        points = vertices[person]
        u = INTRINSICS[0, 0] * points[:, 0] / points[:, 2] + INTRINSICS[0, 2]
        v = INTRINSICS[1, 1] * points[:, 1] / points[:, 2] + INTRINSICS[1, 2]
        radius = int(np.ceil(INTRINSICS[0, 0] * SPLAT_RADIUS_M / points[:, 2].mean()))
        offsets = np.stack(np.mgrid[-radius:radius + 1, -radius:radius + 1], -1).reshape(-1, 2)
        offsets = offsets[(offsets ** 2).sum(1) <= radius ** 2]
        pixel_rows = (np.round(v)[:, None] + offsets[None, :, 0]).astype(int).ravel()
        pixel_cols = (np.round(u)[:, None] + offsets[None, :, 1]).astype(int).ravel()
        inside = (pixel_rows >= 0) & (pixel_rows < rows) & (pixel_cols >= 0) & (pixel_cols < cols)
        mask[pixel_rows[inside], pixel_cols[inside]] = person + 1
        image[pixel_rows[inside], pixel_cols[inside]] = colours[person]
    return image, mask, joints


def demo_bundle(bundle: str | None) -> Path:
    """The named bundle, else the shipped default, else a cached untrained `tiny` bundle (written once)."""
    if bundle is not None:
        return Path(bundle)
    if (default_bundle_path() / "manifest.json").is_file():
        return default_bundle_path()
    cache = default_cache().parent / "untrained-tiny"
    if not (cache / "manifest.json").is_file():
        from fasthmr_model.tools import write_untrained_bundle

        print(f"no default bundle is shipped yet: writing an untrained tiny bundle to {cache}")
        write_untrained_bundle("tiny", seed=0, out=cache, overwrite=True)
    return cache


def run_demo(bundle: str | None = None) -> None:
    loaded = load_bundle(demo_bundle(bundle))
    pipeline = FramePipeline(loaded)
    image, mask, true_joints = synthetic_frame(pipeline.body_model)
    results = [pipeline.process(image, mask, INTRINSICS) for _ in range(TIMED_RUNS)]
    result = results[-1]
    source = loaded.manifest.get("provenance", {}).get("source", "unknown")
    print(f"bundle {loaded.path} ({source}); onnxruntime provider {pipeline.provider}")
    print(f"frame {IMAGE_SIZE[1]}x{IMAGE_SIZE[0]}, {len(result.ids)} persons found in the instance mask")
    for index, person in enumerate(result.ids):
        truth = true_joints[person - 1]
        print(f"  person {person}: box {np.round(result.boxes[index]).astype(int).tolist()}, "
              f"root translation {np.round(result.translation[index], 2).tolist()} m "
              f"(true {np.round(SCENE[person - 1][0], 2).tolist()}), "
              f"root-aligned MPJPE {mpjpe(result.joints[index], truth, EMDB_ROOT_JOINTS):.0f} mm")
    for stage in result.timings_ms:
        times = [r.timings_ms[stage] for r in results[1:]]
        print(f"  {stage:<11} median {np.median(times):7.2f} ms over {len(times)} runs")
    if source == "untrained":
        print("the encoder is untrained: the poses are its mean guesses; the numbers show plumbing and speed")

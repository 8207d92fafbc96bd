"""`fasthmr demo`: frames of the synthetic test split through the whole run-time pipeline, with what it found.

Each frame is rendered by the synthetic world's renderer (the same scenes the test split caches as crops),
then goes through the node's pipeline from the full 640x480 image and instance mask: person boxes, crops,
the encoder through ONNX Runtime, the body model in the camera frame. The output compares each person's
joints and root position with the renderer's ground truth and gives the median latency of every stage.
(The bag-replay demo of the replay issue will replace this one.)
"""

from __future__ import annotations

import numpy as np

from fasthmr_model.bundle import load_bundle
from fasthmr_model.data.world import motion_pool, render_frame, split
from fasthmr_model.metrics import EMDB_ROOT_JOINTS, mpjpe
from fasthmr_model.pipeline import FramePipeline

DEMO_FRAMES = (0, 1, 2)  # of the test split
TIMED_RUNS = 20


def run_demo(bundle: str | None = None) -> None:
    """Print what the bundle (default: the shipped one) finds in DEMO_FRAMES, against the truth."""
    loaded = load_bundle(bundle)
    pipeline = FramePipeline(loaded)
    spec = split("test")
    pool = motion_pool(spec, pipeline.body_model)
    source = loaded.manifest.get("provenance", {}).get("source", "unknown")
    print(f"bundle {loaded.path} ({source}); onnxruntime provider {pipeline.provider}")
    timings: dict[str, list[float]] = {}
    for index in DEMO_FRAMES:
        frame = render_frame(spec, index, pipeline.body_model, pool)
        intrinsics = frame.camera.intrinsics
        results = [pipeline.process(frame.image, frame.instance_mask, intrinsics) for _ in range(TIMED_RUNS)]
        for result in results[1:]:
            for stage, milliseconds in result.timings_ms.items():
                timings.setdefault(stage, []).append(milliseconds)
        result = results[-1]
        height, width = frame.image.shape[:2]
        print(f"test frame {index}: {width}x{height}, {len(result.ids)} persons in the instance mask")
        truth = {person.instance_id: person for person in frame.people}
        for row, person in enumerate(result.ids):
            true = truth[int(person)]
            root_error = np.linalg.norm(result.joints[row, 0] - true.joints_3d[0])
            print(f"  person {person}: box {np.round(result.boxes[row]).astype(int).tolist()}, "
                  f"pelvis at {np.round(result.joints[row, 0], 2).tolist()} m "
                  f"(true {np.round(true.joints_3d[0], 2).tolist()}, {root_error:.2f} m off), "
                  f"root-aligned MPJPE {mpjpe(result.joints[row], true.joints_3d, EMDB_ROOT_JOINTS):.0f} mm")
    print(f"median latency per stage over {TIMED_RUNS - 1} runs of each frame:")
    for stage, values in timings.items():
        print(f"  {stage:<11} {np.median(values):7.2f} ms")
    if source == "untrained":
        print("the encoder is untrained: the poses are its mean guesses; the numbers show plumbing and speed")

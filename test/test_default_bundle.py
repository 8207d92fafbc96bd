"""The shipped default bundle: complete, small, trained, and accurate on frames of the synthetic test split."""

from __future__ import annotations

import numpy as np

from fasthmr_model.bundle import default_bundle_path, load_bundle
from fasthmr_model.data.world import motion_pool, render_frame, split
from fasthmr_model.metrics import EMDB_ROOT_JOINTS, mpjpe
from fasthmr_model.pipeline import FramePipeline

SHIPPED_LIMIT_BYTES = 25 * 1024 * 1024


def test_default_bundle_loads_and_says_what_it_is():
    bundle = load_bundle()  # verifies every checksum
    assert bundle.path == default_bundle_path()
    assert bundle.manifest["encoder"]["preset"] == "tiny"
    assert bundle.camera_anchor == "pelvis"
    provenance = bundle.manifest["provenance"]
    assert provenance["source"] == "synthetic-trained" and provenance["steps"] > 0
    # The node runs the merged encoder: Mask-ToMe's 40/40/22 schedule; no ECLM (a poor trade on `tiny`).
    merge = bundle.manifest["encoder"]["merge"]
    assert merge["plan"]["token_schedule"] == [40, 40, 22] and merge["plan"]["merged_windows"] == []
    shipped = sum(path.stat().st_size for path in default_bundle_path().iterdir())
    assert shipped < SHIPPED_LIMIT_BYTES


def test_default_bundle_recovers_people_of_rendered_test_frames():
    """Frames rendered by the world (not the cached crops): full image -> people in the camera frame."""
    pipeline = FramePipeline()
    spec = split("test")
    pool = motion_pool(spec, pipeline.body_model)
    errors, root_errors, depths = [], [], []
    for index in range(4):
        frame = render_frame(spec, index, pipeline.body_model, pool)
        result = pipeline.process(frame.image, frame.instance_mask, frame.camera.intrinsics, with_vertices=False)
        truth = {person.instance_id: person for person in frame.people}
        for row, person in enumerate(result.ids):
            true_joints = truth[int(person)].joints_3d
            errors.append(mpjpe(result.joints[row], true_joints, EMDB_ROOT_JOINTS))
            root_errors.append(np.linalg.norm(result.joints[row, 0] - true_joints[0]))
            depths.append(true_joints[0, 2])
    assert len(errors) >= 4
    # The mean-pose baseline scores about 256 mm on this split; the model about 101 mm on average.
    assert np.median(errors) < 150
    # Weak-perspective depth is the least certain part: within 15% of the distance.
    assert np.median(np.array(root_errors) / np.array(depths)) < 0.15

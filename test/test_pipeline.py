"""The run-time frame pipeline: its outputs agree with its parts, and it runs without torch or smplx."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from fasthmr_model.body.rotations import rot6d_to_matrix
from fasthmr_model.data.crop import camera_translation, crop_ray_rotations, prepare_persons
from fasthmr_model.encoder.config import PRESETS
from fasthmr_model.encoder.model import build_encoder
from fasthmr_model.errors import InputError
from fasthmr_model.export import build_bundle
from fasthmr_model.pipeline import FramePipeline

K = np.array([[500.0, 0.0, 160.0], [0.0, 500.0, 120.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "tiny"
    return build_bundle(build_encoder(PRESETS["tiny"], seed=5), out,
                        provenance={"source": "untrained"}, camera_anchor="pelvis", preset_name="tiny")


def frame() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    mask = np.zeros((240, 320), np.uint8)
    mask[40:200, 60:110] = 2
    mask[30:150, 200:240] = 5
    return image, mask


@pytest.mark.parametrize("anchor", ["pelvis", "body_origin"])
def test_frame_results_agree_with_the_parts(bundle, anchor):
    bundle = dataclasses.replace(bundle, manifest=copy.deepcopy(bundle.manifest))
    bundle.manifest["encoder"]["camera_anchor"] = anchor
    pipeline = FramePipeline(bundle)
    image, mask = frame()
    result = pipeline.process(image, mask, K)
    crops = prepare_persons(image, mask)
    encoded = pipeline.encoder.run(crops.images, crops.person_tokens)
    assert result.ids.tolist() == [2, 5]
    np.testing.assert_allclose(result.rotmats, rot6d_to_matrix(encoded.pose_6d.reshape(2, 24, 6)), atol=1e-6)
    # The crop camera places the pelvis (models trained here) or the body model's origin (HMR2.0).
    placed = camera_translation(encoded.cam, crops.crop_boxes, K)
    if anchor == "pelvis":
        np.testing.assert_allclose(result.joints[:, 0], placed, atol=1e-6)
    else:
        np.testing.assert_allclose(result.translation, placed, atol=1e-9)
    np.testing.assert_allclose(result.crop_rays, crop_ray_rotations(crops.crop_boxes, K), atol=1e-12)
    vertices, joints = pipeline.body_model.forward(encoded.betas, result.rotmats, result.translation)
    np.testing.assert_allclose(result.joints, joints, atol=1e-6)
    np.testing.assert_allclose(result.vertices, vertices, atol=1e-6)
    assert result.feature.shape == (2, PRESETS["tiny"].head_width)
    assert set(result.timings_ms) == {"preprocess", "encoder", "body_model"}
    assert pipeline.process(image, mask, K, with_vertices=False).vertices is None


def test_frame_without_people(bundle):
    result = FramePipeline(bundle).process(np.zeros((20, 30, 3), np.uint8), np.zeros((20, 30), np.uint8), K)
    assert result.ids.shape == (0,) and result.joints.shape == (0, 24, 3)


def test_bad_intrinsics_fail_before_any_work(bundle):
    image, mask = frame()
    with pytest.raises(InputError, match="intrinsics"):
        FramePipeline(bundle).process(image, mask, np.zeros((3, 3)))


RUNTIME_ONLY = """
import json, sys
import numpy as np
from fasthmr_model.pipeline import FramePipeline
pipeline = FramePipeline(sys.argv[1])
image = np.zeros((120, 160, 3), np.uint8); mask = np.zeros((120, 160), np.uint8); mask[20:100, 60:90] = 1
k = np.array([[200.0, 0, 80], [0, 200.0, 60], [0, 0, 1]])
result = pipeline.process(image, mask, k)
print(json.dumps({"persons": len(result.ids), "heavy": sorted(m for m in ("torch", "smplx") if m in sys.modules)}))
"""


def test_runtime_path_imports_neither_torch_nor_smplx(bundle):
    """Bundle load, preprocessing, the encoder session and the body model run on numpy + onnxruntime."""
    completed = subprocess.run([sys.executable, "-c", RUNTIME_ONLY, str(bundle.path)], capture_output=True,
                               text=True, timeout=120, check=True)
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {"persons": 1, "heavy": []}

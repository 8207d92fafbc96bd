"""The synthetic world's splits: deterministic frames, crops through the run-time preprocessing, cached builds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.synthetic import write_synthetic_body
from fasthmr_model.data import world
from fasthmr_model.errors import FastHMRError

SMALL = {name: dataclasses.replace(spec, motion_sequences=2, motion_frames=40) for name, spec in world.SPLITS.items()}


@pytest.fixture(autouse=True)
def small_motion_pools(monkeypatch):
    """Tests use two short motion sequences per split: the same code, a fraction of the generation time."""
    monkeypatch.setattr(world, "SPLITS", SMALL)


@pytest.fixture(scope="module")
def body_path(tmp_path_factory):
    return write_synthetic_body(tmp_path_factory.mktemp("body") / "body.npz")


def test_same_seed_gives_byte_identical_frames_and_labels(body_path):
    body = BodyModel.from_file(body_path)
    spec = SMALL["val"]
    first = world.render_frame(spec, 3, body, world.motion_pool(spec, body))
    second = world.render_frame(spec, 3, body, world.motion_pool(spec, body))
    assert first.image.tobytes() == second.image.tobytes()
    assert first.instance_mask.tobytes() == second.instance_mask.tobytes()
    for a, b in zip(first.people, second.people):
        for field in ("rotmats", "betas", "translation", "joints_3d", "joints_2d", "joint_visible"):
            assert getattr(a, field).tobytes() == getattr(b, field).tobytes()
    other = world.render_frame(spec, 4, body, world.motion_pool(spec, body))
    assert other.image.tobytes() != first.image.tobytes()


def test_crops_carry_their_persons_ground_truth(body_path):
    body = BodyModel.from_file(body_path)
    spec = SMALL["val"]
    frame = world.render_frame(spec, 1, body, world.motion_pool(spec, body))
    crops = world.frame_crops(frame, 1)
    assert len(crops["windows"]) >= 1
    for index, instance_id in enumerate(crops["instance_id"]):
        person = frame.people[instance_id - 1]
        box = crops["crop_boxes"][index]
        np.testing.assert_allclose(crops["joints_2d"][index] * box[2] + box[:2], person.joints_2d, atol=1e-3)
        np.testing.assert_allclose(crops["joints_3d"][index], person.joints_3d, atol=1e-6)
        assert crops["person_tokens"][index].sum() > 0


def test_split_builds_once_byte_identically_and_partial_builds_stay_apart(body_path, tmp_path):
    first = world.build_split("val", tmp_path / "a", body_path, workers=1, frames=5, progress=False)
    second = world.build_split("val", tmp_path / "b", body_path, workers=1, frames=5, progress=False)
    assert first.name == "val-first5"
    for field in world.CROP_FIELDS:
        assert (first / f"{field}.npy").read_bytes() == (second / f"{field}.npy").read_bytes(), field
    stamp = (first / "windows.npy").stat().st_mtime_ns
    assert world.build_split("val", tmp_path / "a", body_path, workers=1, frames=5, progress=False) == first
    assert (first / "windows.npy").stat().st_mtime_ns == stamp  # cached, not rebuilt
    crops = world.load_crop_set(first)
    assert crops.split_name == "val" and crops.windows.shape[1:] == (256, 192, 3)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["val-first5"]  # no staging left behind


def test_unbuilt_split_and_unknown_names_fail_clearly(tmp_path):
    with pytest.raises(FastHMRError, match="fasthmr world build"):
        world.load_crop_set(tmp_path / "nothing")
    with pytest.raises(FastHMRError, match="unknown split"):
        world.split("holdout")

"""Encoder training (a few steps of a tiny run), resuming, and evaluation against the mean-pose baseline."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from fasthmr_model.body.synthetic import write_synthetic_body
from fasthmr_model.bundle import load_bundle
from fasthmr_model.data import world
from fasthmr_model.encoder.config import PRESETS
from fasthmr_model.encoder.model import build_encoder
from fasthmr_model.errors import FastHMRError
from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.evaluation import evaluate_bundle, score_parameters
from fasthmr_model.export import build_bundle
from fasthmr_model.train.encoder import (Batches, EncoderTrainingConfig, train_encoder,
                                         training_mean_parameters)

SMALL = {name: dataclasses.replace(spec, motion_sequences=2, motion_frames=40) for name, spec in world.SPLITS.items()}
FAST = EncoderTrainingConfig(steps=3, batch_size=4, warmup_steps=1, log_every=1, checkpoint_every=3)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    body = write_synthetic_body(folder / "body.npz")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(world, "SPLITS", SMALL)
        splits = {name: world.build_split(name, folder, body, workers=1, frames=4, progress=False)
                  for name in ("train", "test")}
    return body, splits


def test_training_runs_logs_and_resumes(built, tmp_path):
    body, splits = built
    run = tmp_path / "run"
    train_encoder(splits["train"], run, body, FAST, progress=False)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(np.isfinite(r["total"]) for r in records)
    first = torch.load(run / "checkpoint.pt", weights_only=True)
    resumed = train_encoder(splits["train"], run, body, dataclasses.replace(FAST, steps=5), progress=False)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]  # continued, not restarted
    assert not torch.equal(first["model"]["head.cam_readout.weight"], resumed.state_dict()["head.cam_readout.weight"])


def test_device_resident_batches_equal_memory_mapped_ones(built):
    """The GPU path gathers batches from tensors copied to the device; it must give the CPU path's batches."""
    crops = world.load_crop_set(built[1]["train"])
    indices = np.array([3, 0, 3, 1])
    mapped = Batches(crops, torch.device("cpu"), resident=False)(indices, np.random.default_rng(7), FAST)
    resident = Batches(crops, torch.device("cpu"), resident=True)(indices, np.random.default_rng(7), FAST)
    assert mapped.keys() == resident.keys() == {"image", "person_tokens", "rotmats", "betas", "joints_3d", "joints_2d"}
    for name in mapped:
        torch.testing.assert_close(mapped[name], resident[name], rtol=0, atol=0)
    assert mapped["image"].shape == (4, 3, 256, 192)
    assert mapped["image"].dtype == torch.float32


def test_the_test_split_is_never_trained_on(built, tmp_path):
    body, splits = built
    with pytest.raises(FastHMRError, match="never trained on"):
        train_encoder(splits["test"], tmp_path / "run", body, FAST, progress=False)


def test_mean_parameters_are_the_data_mean(built):
    crops = world.load_crop_set(built[1]["train"])
    pose_6d, betas = training_mean_parameters(crops)
    np.testing.assert_allclose(betas, np.asarray(crops.betas).mean(0), atol=1e-6)
    assert pose_6d.shape == (144,)


def test_the_truth_scores_zero_and_a_wrong_shape_does_not(built):
    body_path, splits = built
    body, crops = BodyModel.from_file(body_path), world.load_crop_set(splits["test"])
    exact = score_parameters(body, np.asarray(crops.betas), np.asarray(crops.rotmats), crops)
    assert exact == {"mpjpe": 0.0, "pa_mpjpe": 0.0, "pve": 0.0}
    taller = score_parameters(body, np.asarray(crops.betas) + np.eye(10)[0] * 2, np.asarray(crops.rotmats), crops)
    assert 5 < taller["mpjpe"] < 300 and 5 < taller["pve"] < 300


def test_a_model_that_predicts_its_mean_scores_as_the_baseline(built, tmp_path):
    """Zero read-outs make the encoder output exactly its mean parameters: model == baseline."""
    body, splits = built
    model = build_encoder(PRESETS["tiny"], seed=0)
    crops = world.load_crop_set(splits["test"])
    pose_6d, betas = training_mean_parameters(crops)
    with torch.no_grad():
        for readout in (model.head.pose_readout, model.head.betas_readout):
            readout.weight.zero_()
            readout.bias.zero_()
        model.head.mean_pose_6d.copy_(torch.from_numpy(pose_6d)[None])
        model.head.mean_betas.copy_(torch.from_numpy(betas)[None])
    bundle = build_bundle(model, tmp_path / "mean", provenance={"source": "test"}, camera_anchor="pelvis",
                          body_model=body, preset_name="tiny")
    result = evaluate_bundle(load_bundle(bundle.path), crops)
    assert result["persons"] == len(crops) and result["frames"] >= 1
    for metric in ("mpjpe", "pa_mpjpe", "pve"):
        assert result["model"][metric] == pytest.approx(result["mean_pose_baseline"][metric], abs=0.05)
        assert result["model"][metric] > 0


def test_joint_tokens_follow_the_patch_footprints():
    from fasthmr_model.train.encoder import joint_tokens

    def normalised(window_column, window_row):  # window pixel edges -> crop-normalised coordinates
        return [(window_column + 32 - 128) / 256, (window_row - 128) / 256]

    joints = torch.tensor([[normalised(14.0, 14.0),     # first pixel of token (1, 1)'s footprint
                            normalised(13.9, 29.9),     # last column of token (1, 0), last row of (1, *)
                            normalised(189.0, 253.0),   # last pixel any token sees: token (15, 11)
                            normalised(191.0, 255.0),   # the last two rows/columns: seen by no token
                            normalised(-40.0, 100.0)]])  # left of the window: ignored
    assert joint_tokens(joints).tolist() == [[1 * 12 + 1, 1 * 12 + 0, 15 * 12 + 11, -100, -100]]

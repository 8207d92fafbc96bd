"""Rendered sequences for the decoder: one person's motion, continuous, in the run-time crops; cached features."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fasthmr_model.data.motion import generate_sequence, synthetic_body_model
from fasthmr_model.data.world import MOTION_FPS, load_crop_set
from fasthmr_model.decoder.sequences import (
    SequenceSplit, build_sequence_split, encoder_outputs, render_sequence, sequence_crops, sequence_intrinsics,
    sequence_ranges, sequence_split, split_crop_rays,
)
from fasthmr_model.encoder.config import PRESETS
from fasthmr_model.encoder.model import build_encoder
from fasthmr_model.export import build_bundle

SPEC = SequenceSplit("sequence-unit", seed=77, sequences=2, frames=6)


@pytest.fixture(scope="module")
def body():
    return synthetic_body_model()


def test_a_sequence_renders_its_motion_in_the_camera_frame(body):
    frames = render_sequence(SPEC, 0, body)
    motion = generate_sequence([SPEC.seed, 1, 0], SPEC.frames, MOTION_FPS, body_model=body)
    assert len(frames) == SPEC.frames
    for rendered, rotmats in zip(frames, motion.rotmats):
        truth = rendered.people[0]
        np.testing.assert_allclose(truth.rotmats[1:], rotmats[1:], atol=1e-9)  # the body pose is the motion's
        # The global orientation is the motion's, turned by one fixed heading and the camera.
        relative = truth.rotmats[0] @ rotmats[0].T
        np.testing.assert_allclose(relative, frames[0].people[0].rotmats[0] @ motion.rotmats[0, 0].T, atol=1e-9)
    # A still camera: the scene around the person does not change (the first pixel row is background).
    pelvis_steps = np.diff([rendered.people[0].joints_3d[0] for rendered in frames], axis=0)
    assert np.linalg.norm(pelvis_steps, axis=1).max() < 0.2  # no jumps between frames (m at 30 frames/s)


def test_sequence_crops_are_one_track_in_frame_order(body):
    crops = sequence_crops(SPEC, 1, body)
    assert crops["frame_index"].tolist() == list(range(SPEC.frames))
    assert set(crops["instance_id"].tolist()) == {1}


def test_a_split_gives_its_cameras_and_crop_rays(tmp_path, body):
    """A rendered split stores no K: it is recovered from the stored projections, equal to the renderer's, and
    each crop's ray is the crop centre's through it."""
    from fasthmr_model.body.rotations import axis_angle_to_matrix
    from fasthmr_model.data.crop import crop_ray_rotations

    folder = build_sequence_split("val", tmp_path, _body_file(tmp_path), workers=1, sequences=1, frames=4,
                                  progress=False)
    crops = load_crop_set(folder)
    rows = sequence_ranges(crops)[0]
    rendered = render_sequence(replace(sequence_split("val"), frames=4), 0, body)  # as the split was cut
    np.testing.assert_allclose(sequence_intrinsics(crops, rows), rendered[0].camera.intrinsics, rtol=1e-4, atol=1e-2)
    rays = split_crop_rays(crops)
    assert rays.shape == (len(crops), 3) and np.all(rays[:, 2] == 0.0)
    np.testing.assert_allclose(rays, crop_ray_rotations(np.asarray(crops.crop_boxes), rendered[0].camera.intrinsics),
                               atol=1e-5)
    # The turn takes the optical axis onto the ray through the crop centre's pixel.
    directions = axis_angle_to_matrix(rays.astype(np.float64))[:, :, 2]
    pixels = directions @ rendered[0].camera.intrinsics.T
    np.testing.assert_allclose(pixels[:, :2] / pixels[:, 2:], np.asarray(crops.crop_boxes)[:, :2], atol=1e-2)


def test_split_ranges_and_cached_features(tmp_path, body):
    folder = build_sequence_split("val", tmp_path, _body_file(tmp_path), workers=1, sequences=1, frames=8,
                                  progress=False)
    crops = load_crop_set(folder)
    ranges = sequence_ranges(crops)
    assert folder.name == "sequence-val-first1x8" and len(crops) == 8
    assert len(ranges) == 1 and ranges[0] == slice(0, len(crops))
    bundle = build_bundle(build_encoder(PRESETS["tiny"], seed=1), tmp_path / "bundle",
                          provenance={"source": "untrained"}, camera_anchor="pelvis", preset_name="tiny")
    first = encoder_outputs(bundle, crops, progress=False)
    assert first["feature"].shape == (len(crops), PRESETS["tiny"].head_width)
    cached = list((folder.parent / "features").glob("*.npz"))
    assert len(cached) == 1
    np.testing.assert_array_equal(encoder_outputs(bundle, crops, progress=False)["feature"], first["feature"])


def _body_file(folder):
    from fasthmr_model.body.synthetic import write_synthetic_body

    return write_synthetic_body(folder / "body.npz")


def _untrained_bundle_with_decoder(folder):
    """A tiny untrained encoder with a tiny untrained window-4 decoder, as a bundle in `folder`."""
    import torch

    from fasthmr_model.decoder.config import DecoderConfig
    from fasthmr_model.decoder.export import bundle_with_decoder
    from fasthmr_model.decoder.model import Denoiser, MotionVAE, OneStepDecoder

    torch.manual_seed(0)
    config = DecoderConfig(window=4, latent_tokens=2, latent_size=8, width=32, num_heads=2, mlp_width=64)
    encoder_bundle = build_bundle(build_encoder(PRESETS["tiny"], seed=1), folder / "bundle",
                                  provenance={"source": "untrained"}, camera_anchor="pelvis", preset_name="tiny")
    return bundle_with_decoder(encoder_bundle, OneStepDecoder(MotionVAE(config), Denoiser(config), 1.0).eval(),
                               folder / "with-decoder", {"source": "untrained"})


def test_sequence_evaluation_reports_every_method(tmp_path, body):
    """`fasthmr eval --sequences`' JSON on a tiny split with an untrained decoder, and the trajectory plot."""
    from fasthmr_model.decoder.evaluation import evaluate_sequences, plot_trajectory
    from fasthmr_model.decoder.filters import EmaParameters, FilterParameters, OneEuroParameters

    folder = build_sequence_split("test", tmp_path, _body_file(tmp_path), workers=1, sequences=1, frames=8,
                                  progress=False)
    crops = load_crop_set(folder)
    bundle = _untrained_bundle_with_decoder(tmp_path)
    filters = FilterParameters(EmaParameters(0.4), OneEuroParameters(1.0, 0.2), {"split": "sequence-val"})
    result = evaluate_sequences(bundle, crops, latency_runs=3, filters=filters)
    for method in ("per_frame", "causal", "offline", "ema", "one_euro", "causal_without_features"):
        assert set(result[method]) == {"mpjpe", "pa_mpjpe", "pve", "accel"}
        assert all(np.isfinite(value) and value > 0 for value in result[method].values())
    # This (random) decoder reads its features: zeroing them changes what it decodes.
    assert result["causal_without_features"] != result["causal"]
    # Filtering smooths: less acceleration error than the encoder's own poses.
    assert result["ema"]["accel"] < result["per_frame"]["accel"]
    assert result["filters"]["ema"] == {"alpha": 0.4} and result["filters"]["tuned_on"] == "sequence-val"
    assert set(result["latency_ms"]) == {"encoder", "decoder", "frame_pose", "decoder_graph", "ik"}
    assert (result["window"], result["sequences"], result["frames"]) == (4, 1, 8)
    plot = plot_trajectory(bundle, crops, tmp_path / "plot.png", filters=filters)
    assert plot.stat().st_size > 10_000


def test_a_named_split_from_its_own_seed_renders_and_scores(tmp_path, capsys, monkeypatch):
    """`fasthmr world sequences --split NAME --seed S --count N --frames F`, then `fasthmr eval --sequences NAME
    --json` with its every key; the tuning refuses the test split."""
    import json

    from fasthmr_model.cli import main

    cache = tmp_path / "cache"
    render = ["world", "sequences", "--split", "fresh", "--seed", "4242", "--count", "1", "--frames", "8",
              "--cache", str(cache), "--workers", "1"]
    assert main(render) == 0
    assert "fresh: 1 sequences, 8 frames" in capsys.readouterr().out
    recorded = json.loads((cache / "sequence-fresh" / "split.json").read_text())
    assert (recorded["seed"], recorded["sequences"], recorded["frames"]) == (4242, 1, 8)
    assert main(render) == 0  # already rendered: kept
    capsys.readouterr()
    assert main(render[:5] + ["4243"] + render[6:]) == 2  # the same name from another seed: refused, not replaced
    assert "choose another name" in capsys.readouterr().err
    bundle = _untrained_bundle_with_decoder(tmp_path)
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"ema": {"alpha": 0.5}, "one_euro": {"min_cutoff": 1.0, "beta": 0.1}}))
    assert main(["eval", "--bundle", str(bundle.path), "--sequences", "fresh", "--cache", str(cache), "--json",
                 "--filters", str(filters), "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    for method in ("per_frame", "causal", "offline", "ema", "one_euro", "causal_without_features"):
        assert set(result[method]) == {"mpjpe", "pa_mpjpe", "pve", "accel"}
    assert {"encoder", "decoder"} <= set(result["latency_ms"]) and result["frames"] == 8
    # --provider is the encoder's, as in the node: the latency's encoder session asks for it; the decoder's
    # sessions stay on runtime.decoder_provider (the CPU); the scores read the features cached from the CPU
    # (on another machine's injected GPU build: the sessions themselves run on this CPU).
    import fasthmr_model.runtime
    from injected_providers import InjectedEnvironment

    gpu_machine = InjectedEnvironment()
    monkeypatch.setattr(fasthmr_model.runtime, "ENVIRONMENT", gpu_machine)
    assert main(["eval", "--bundle", str(bundle.path), "--sequences", "fresh", "--cache", str(cache), "--json",
                 "--filters", str(filters), "--provider", "cuda"]) == 0
    capsys.readouterr()
    first_asked = [chain[0] if isinstance(chain[0], str) else chain[0][0] for chain in gpu_machine.asked]
    assert first_asked == ["CPUExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.undo()
    assert main(["eval", "--bundle", str(bundle.path), "--sequences", "never_rendered", "--cache", str(cache)]) == 2
    assert "render it first" in capsys.readouterr().err
    assert main(["tune-filters", "--sequences", "test", "--cache", str(cache)]) == 2
    assert "never choose" in capsys.readouterr().err


@pytest.mark.parametrize("name, seed, message", [
    ("../escape", 5, "plain name"), ("a/b", 5, "plain name"), ("with.dot", 5, "plain name"),
    ("val-first1", 5, "plain name"), ("", 5, "plain name"), ("test", 5, "built-in"), ("fresh", 13_000, "seed"),
    ("fresh", 1_000, "seed"),
])
def test_named_splits_refuse_paths_built_in_names_and_seeds(tmp_path, name, seed, message):
    from fasthmr_model.errors import FastHMRError

    with pytest.raises(FastHMRError, match=message):
        build_sequence_split(name, tmp_path, tmp_path / "body.npz", workers=1, sequences=1, frames=4, seed=seed,
                             progress=False)
    assert not any(tmp_path.iterdir())


def test_the_decoder_trains_on_training_splits_only(tmp_path):
    """`fasthmr train decoder --sequences NAME... --sequence-count N`: val and test are refused, and a count beyond
    the splits' usable sequences says how many they hold (both before any training)."""
    from fasthmr_model.cli import build_parser
    from fasthmr_model.decoder.export import train_and_bundle_decoder
    from fasthmr_model.errors import FastHMRError
    from fasthmr_model.train.recipes import DENOISER_RECIPE

    args = build_parser().parse_args(["train", "decoder", "--run", "R", "--vae-run", "V", "--out", "B",
                                      "--sequences", "train", "more", "--sequence-count", "300"])
    assert (args.sequences, args.sequence_count) == (["train", "more"], 300)
    assert build_parser().parse_args(["train", "decoder", "--run", "R", "--vae-run", "V", "--out", "B"]).sequences \
        == ["train"]
    cache = tmp_path / "cache"
    encoder_bundle = build_bundle(build_encoder(PRESETS["tiny"], seed=1), tmp_path / "bundle",
                                  provenance={"source": "untrained"}, camera_anchor="pelvis", preset_name="tiny")
    build_sequence_split("fresh", cache, encoder_bundle.body_model_path, workers=1, sequences=1, frames=6, seed=4242,
                         progress=False)
    for splits, count, message in ((("train", "val"), None, "val chooses"), (("test",), None, "val chooses"),
                                   (("fresh",), 2, "hold 1 usable")):
        with pytest.raises(FastHMRError, match=message):
            train_and_bundle_decoder(tmp_path / "run", tmp_path / "vae", encoder_bundle.path, tmp_path / "out", cache,
                                     DENOISER_RECIPE, progress=False, splits=splits, sequence_count=count)
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()

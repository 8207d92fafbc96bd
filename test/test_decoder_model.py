"""The decoder's networks, training steps, ONNX export (parity with PyTorch) and the torch-free run time."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from fasthmr_model.data.motion import synthetic_body_model
from fasthmr_model.decoder.config import DecoderConfig
from fasthmr_model.decoder.diffusion import diffusion_schedule
from fasthmr_model.decoder.export import bundle_with_decoder, decoder_parity
from fasthmr_model.decoder.model import RAY_TURN_SCALE, Denoiser, MotionVAE, OneStepDecoder, turn_points
from fasthmr_model.decoder.pose import POSE_SIZE
from fasthmr_model.decoder.runtime import DecoderSession, StreamingDecoder, decode_causal, decode_offline
from fasthmr_model.runtime import RuntimeConfig
from fasthmr_model.torch_files import load_torch_checkpoint
from fasthmr_model.decoder.train import (
    EncoderErrors, TrainingConfig, WindowAugmentation, cut_windows, encoder_like_windows, measure_encoder_errors,
    train_denoiser, train_vae, turn_windows,
)
from fasthmr_model.encoder.config import PRESETS
from fasthmr_model.encoder.model import build_encoder
from fasthmr_model.errors import BundleError, FastHMRError, InputError
from fasthmr_model.export import build_bundle

TINY = DecoderConfig(window=6, feature_size=PRESETS["tiny"].head_width, latent_tokens=2, latent_size=8, width=32,
                     num_heads=2, mlp_width=64, vae_layers=3, denoiser_layers=3)


def test_schedule_has_zero_terminal_snr_and_keeps_the_first_step():
    schedule = diffusion_schedule(DecoderConfig())
    assert schedule.alpha_bar[-1] == 0.0
    assert schedule.alpha_bar[0] == pytest.approx(1.0 - 0.00085)
    assert np.all(np.diff(schedule.alpha_bar) < 0)


def test_config_checks():
    with pytest.raises(FastHMRError, match="odd"):
        DecoderConfig(vae_layers=4)
    assert DecoderConfig.from_dict(TINY.to_dict()) == TINY


def test_windows_follow_the_series_and_reverse():
    series = [(np.arange(40, dtype=np.float32)[:, None], 2 * np.arange(40, dtype=np.float32)[:, None])]
    first, second = cut_windows(series, 5, 200, np.random.default_rng(0), WindowAugmentation(warm_up_probability=0.3))
    np.testing.assert_allclose(second, 2 * first, atol=1e-5)  # members stay aligned
    steps = np.diff(first[..., 0], axis=1)
    padded = steps == 0  # warm-up copies
    assert padded.any() and (~padded).any()
    moving = np.abs(steps[~padded])
    assert moving.min() >= 0.75 - 1e-5 and moving.max() <= 1.33 + 1e-5  # warped speeds
    assert (steps > 0).any() and (steps < 0).any()  # forwards and reversed
    # Warm-up padding sits at the old end only.
    for row in first[..., 0]:
        change = np.flatnonzero(np.diff(row) != 0)
        assert change.size == 0 or np.all(np.diff(row)[change[0]:] != 0)


def test_short_sequences_become_warm_up_windows():
    series = [(np.arange(3, dtype=np.float32)[:, None],)]
    (windows,) = cut_windows(series, 6, 4, np.random.default_rng(1), None)
    assert windows[0, :, 0].tolist() == [0, 0, 0, 0, 1, 2]


def test_vae_and_denoiser_train(tmp_path):
    """A few steps of each run, resumable, and the losses are finite."""
    from fasthmr_model.body.synthetic import write_synthetic_body

    body_path = write_synthetic_body(tmp_path / "body.npz")
    config = TrainingConfig(steps=3, batch_size=4, motion_sequences=2, log_every=1, checkpoint_every=2, threads=1)
    errors = EncoderErrors(np.full(24, 0.1), np.full(24, 0.03))
    vae = train_vae(tmp_path / "vae", body_path, TINY, config, progress=False, errors=errors)
    logs = [json.loads(line) for line in (tmp_path / "vae" / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in logs] == [1, 2, 3] and all(np.isfinite(r["total"]) for r in logs)
    stored = load_torch_checkpoint(tmp_path / "vae" / "checkpoint.pt")["encoder_errors"]
    np.testing.assert_allclose(EncoderErrors.from_dict(stored).mean, errors.mean, atol=1e-4)  # kept in degrees, 3 decimals
    rng = np.random.default_rng(0)
    series = [(rng.standard_normal((30, TINY.feature_size)).astype(np.float32),
               (0.3 * rng.standard_normal((30, 3))).astype(np.float32),
               rng.standard_normal((30, POSE_SIZE)).astype(np.float32),
               rng.standard_normal((30, POSE_SIZE)).astype(np.float32))]
    denoiser, scale = train_denoiser(tmp_path / "denoiser", vae, series, config, progress=False)
    assert scale > 0 and isinstance(denoiser, Denoiser)
    torch.testing.assert_close(denoiser.pose_std, vae.pose_std)  # frame poses are normalised as the VAE's input
    resumed, _ = train_denoiser(tmp_path / "denoiser", vae, series, config, progress=False)  # already done: no steps
    for name, value in denoiser.state_dict().items():
        torch.testing.assert_close(value, resumed.state_dict()[name])


@pytest.fixture(scope="module")
def decoder_bundle(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("decoder")
    encoder_bundle = build_bundle(build_encoder(PRESETS["tiny"], seed=3), folder / "encoder",
                                  provenance={"source": "untrained"}, camera_anchor="pelvis", preset_name="tiny")
    model = OneStepDecoder(MotionVAE(TINY).eval(), Denoiser(TINY).eval(), latent_scale=1.7).eval()
    with torch.no_grad():  # a ray turn as a trained one has (about half the ray), so that the export carries it
        model.denoiser.ray_turn.copy_(torch.tensor([0.4, 0.5, 0.0]) / RAY_TURN_SCALE)
    bundle = bundle_with_decoder(encoder_bundle, model, folder / "with-decoder", {"source": "untrained"})
    return model, bundle


def test_onnx_matches_pytorch(decoder_bundle):
    model, bundle = decoder_bundle
    assert decoder_parity(model, bundle) < 1e-4
    section = bundle.decoder
    assert section.window == TINY.window and len(section.noise) == TINY.latent_tokens * TINY.latent_size


def test_offline_and_causal_decoding_read_the_right_windows(decoder_bundle):
    _, bundle = decoder_bundle
    session = DecoderSession(bundle)
    rng = np.random.default_rng(0)
    features = rng.standard_normal((10, TINY.feature_size)).astype(np.float32)
    rays = (0.3 * rng.standard_normal((10, 3))).astype(np.float32)
    poses = rng.standard_normal((10, POSE_SIZE)).astype(np.float32)
    frames = np.concatenate([features, rays, poses], axis=1)
    causal = decode_causal(session, frames)
    offline = decode_offline(session, frames)
    assert causal.shape == offline.shape == (10, POSE_SIZE)
    np.testing.assert_allclose(causal[9], session.run(features[None, 4:10], rays[None, 4:10], poses[None, 4:10])[0, -1],
                               atol=1e-5)
    np.testing.assert_allclose(offline[5], session.run(features[None, 2:8], rays[None, 2:8], poses[None, 2:8])[0, 3],
                               atol=1e-5)
    first_two = np.concatenate([np.repeat(frames[:1], 4, axis=0), frames[:2]])
    np.testing.assert_allclose(causal[1], session.run_frames(first_two[None])[0, -1], atol=1e-5)
    # The pose condition and the rays are read: another frame pose or other rays change the decoded window.
    decoded = session.run(features[None, :6], rays[None, :6], poses[None, :6])
    assert np.abs(session.run(features[None, :6], rays[None, :6], poses[None, 4:10]) - decoded).max() > 1e-4
    assert np.abs(session.run(features[None, :6], rays[None, 4:10], poses[None, :6]) - decoded).max() > 1e-4


def test_a_bundle_without_a_decoder_says_what_to_do(decoder_bundle, tmp_path):
    from fasthmr_model.bundle import load_bundle

    _, bundle = decoder_bundle
    encoder_only = load_bundle(bundle.path.parent / "encoder")
    with pytest.raises(BundleError, match="fasthmr train decoder"):
        DecoderSession(encoder_only)
    with pytest.raises(InputError, match="decoder features"):
        DecoderSession(bundle).run(np.zeros((1, 3, TINY.feature_size), np.float32), np.zeros((1, 3, 3)),
                                   np.zeros((1, 3, POSE_SIZE)))
    with pytest.raises(InputError, match="frame poses"):
        DecoderSession(bundle).run(np.zeros((1, TINY.window, TINY.feature_size), np.float32),
                                   np.zeros((1, TINY.window, 3)), np.zeros((1, TINY.window, 3)))
    with pytest.raises(InputError, match="crop rays"):
        DecoderSession(bundle).run(np.zeros((1, TINY.window, TINY.feature_size), np.float32),
                                   np.zeros((1, TINY.window, 2)), np.zeros((1, TINY.window, POSE_SIZE)))


RUNTIME_ONLY = """
import json, sys
import numpy as np
from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.bundle import load_bundle
from fasthmr_model.decoder.runtime import StreamingDecoder
from fasthmr_model.runtime import RuntimeConfig
bundle = load_bundle(sys.argv[1])
decoder = StreamingDecoder(bundle, BodyModel.from_file(bundle.body_model_path), RuntimeConfig())
rng = np.random.default_rng(0)
for frame in range(8):
    result = decoder.step([3, 4], rng.standard_normal((2, bundle.feature_size)), np.zeros((2, 3)),
                          np.tile(np.eye(3), (2, 24, 1, 1)), np.zeros((2, 10)))
print(json.dumps({"shape": list(result.rotmats.shape), "warm_up": result.warm_up.tolist(),
                  "heavy": sorted(m for m in ("torch", "smplx") if m in sys.modules)}))
"""


def test_streaming_step_runs_without_torch(decoder_bundle):
    _, bundle = decoder_bundle
    completed = subprocess.run([sys.executable, "-c", RUNTIME_ONLY, str(bundle.path)], capture_output=True, text=True,
                               timeout=120, check=True)
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {"shape": [2, 24, 3, 3], "warm_up": [False, False], "heavy": []}


def test_streaming_decoder_flags_warm_up(decoder_bundle):
    _, bundle = decoder_bundle
    decoder = StreamingDecoder(bundle, synthetic_body_model(), RuntimeConfig())
    features, rest = np.zeros((1, bundle.feature_size), np.float32), np.tile(np.eye(3), (1, 24, 1, 1))
    rays = np.zeros((1, 3))
    flags = [bool(decoder.step([1], features, rays, rest, np.zeros((1, 10))).warm_up[0])
             for t in range(TINY.window + 1)]
    assert flags == [True] * (TINY.window - 1) + [False, False]
    rotmats = decoder.step([1], features, rays, rest, np.zeros((1, 10))).rotmats
    np.testing.assert_allclose(np.linalg.det(rotmats), 1.0, atol=1e-9)


def test_turned_windows_keep_the_local_pose():
    """The turn augmentation turns the whole body about the camera's y axis: every local rotation but the
    global orientation is unchanged, and that one turns by the same angle on every frame."""
    from fasthmr_model.body.rotations import axis_angle_to_matrix
    from fasthmr_model.decoder.pose import body_rest_points, encode_pose, inverse_kinematics

    body = synthetic_body_model()
    rotmats = axis_angle_to_matrix(np.random.default_rng(0).normal(0.0, 0.4, (6, 24, 3)))
    rest = body_rest_points(body, np.zeros((6, 10)))
    window = encode_pose(rest, rotmats)[None]
    rays = np.tile([[[0.1, -0.2, 0.0]]], (1, 6, 1))
    turned_rays, turned = turn_windows(np.random.default_rng(1), 1.0, rays, window)
    recovered = inverse_kinematics(rest, turned[0])
    np.testing.assert_allclose(recovered[:, 1:], rotmats[:, 1:], atol=1e-9)
    turn = recovered[:, 0] @ np.swapaxes(rotmats[:, 0], 1, 2)
    np.testing.assert_allclose(turn, np.broadcast_to(turn[0], turn.shape), atol=1e-9)
    assert abs(turn[0, 1, 1] - 1.0) < 1e-9 and abs(turn[0, 0, 0]) < 1.0 - 1e-6  # about y, by some angle
    # The rays' rotation vectors turn with the body (so R(ray) conjugated by the turn is R(turned ray)).
    np.testing.assert_allclose(turned_rays[0], (turn[0] @ rays[0].T).T, atol=1e-6)
    kept_rays, kept = turn_windows(np.random.default_rng(1), 0.0, rays, window)
    np.testing.assert_array_equal(kept, window)
    np.testing.assert_array_equal(kept_rays, rays)


def test_turn_points_turns_the_points_and_keeps_the_twists():
    """Rodrigues' formula in the graph against the rotation matrix; a zero turn is the identity (no division
    by a zero angle)."""
    from fasthmr_model.body.rotations import axis_angle_to_matrix
    from fasthmr_model.decoder.pose import NUM_POINTS

    rng = np.random.default_rng(4)
    poses = rng.standard_normal((2, 5, POSE_SIZE))
    vectors = 0.4 * rng.standard_normal((2, 5, 3))
    turned = turn_points(torch.from_numpy(poses), torch.from_numpy(vectors)).numpy()
    points = poses[..., :3 * NUM_POINTS].reshape(2, 5, NUM_POINTS, 3)
    expected = np.einsum("bwij,bwpj->bwpi", axis_angle_to_matrix(vectors), points).reshape(2, 5, -1)
    np.testing.assert_allclose(turned[..., :3 * NUM_POINTS], expected, atol=1e-9)
    np.testing.assert_array_equal(turned[..., 3 * NUM_POINTS:], poses[..., 3 * NUM_POINTS:])
    kept = turn_points(torch.from_numpy(poses), torch.zeros(2, 5, 3, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(kept, poses, atol=1e-12)


def test_encoder_errors_are_measured_per_joint():
    """A constant error on one joint is all slow; a per-frame one is all change."""
    from fasthmr_model.body.rotations import axis_angle_to_matrix

    rng = np.random.default_rng(0)
    truth = axis_angle_to_matrix(rng.normal(0.0, 0.5, (40, 24, 3)))
    error = np.broadcast_to(np.eye(3), (40, 24, 3, 3)).copy()
    error[:, 3] = axis_angle_to_matrix(np.array([0.2, 0.0, 0.0]))  # spine1: constant 0.2 rad
    error[:, 5] = axis_angle_to_matrix(np.array([[0.0, 0.1 * (-1) ** frame, 0.0] for frame in range(40)]))  # flips
    measured = measure_encoder_errors(truth, truth @ error, [slice(0, 20), slice(20, 40)])
    np.testing.assert_allclose(measured.mean[[3, 5]], [0.2, 0.1], atol=1e-9)
    np.testing.assert_allclose(measured.change[[3, 5]], [0.0, 0.2], atol=1e-9)
    assert measured.mean[[0, 1, 4]].max() < 1e-7
    assert measured.slow_sigma[5] < measured.slow_sigma[3] and measured.jitter_sigma[3] < 1e-9


def test_encoder_like_windows_keep_twists_and_jitter_a_share():
    from fasthmr_model.body.rotations import axis_angle_to_matrix
    from fasthmr_model.decoder.pose import NUM_POINTS, body_rest_points

    body = synthetic_body_model()
    rng = np.random.default_rng(1)
    rotmats = axis_angle_to_matrix(rng.normal(0.0, 0.3, (6, 5, 24, 3)))
    rest = np.broadcast_to(body_rest_points(body, np.zeros((1, 10))), (6, 5, 29, 3))
    config = TrainingConfig(jitter_share=0.5)
    plain_inputs, plain_targets = encoder_like_windows(rng, rotmats, rest, None, config)
    np.testing.assert_array_equal(plain_inputs, plain_targets)
    errors = EncoderErrors(np.full(24, 0.2), np.full(24, 0.05))
    inputs, targets = encoder_like_windows(np.random.default_rng(2), rotmats, rest, errors, config)
    # Targets carry slow errors in the points, never in the twists.
    assert np.abs(targets[..., :3 * NUM_POINTS] - plain_targets[..., :3 * NUM_POINTS]).max() > 1e-3
    np.testing.assert_allclose(targets[..., 3 * NUM_POINTS:], plain_targets[..., 3 * NUM_POINTS:], atol=1e-6)
    jittered = np.abs(inputs - targets).max(axis=(1, 2)) > 1e-4
    assert jittered.any() and not jittered.all()


def test_the_denoiser_starts_as_the_vae_encoder():
    """Before training, x0 = -v at t = T - 1 is the VAE's latent mean of the frame poses (its timestep token
    all but unseen), whatever the features, the crop rays and the noise."""
    torch.manual_seed(0)
    vae = MotionVAE(TINY).eval()
    denoiser = Denoiser(TINY).eval()
    denoiser.start_from_vae_encoder(vae, latent_scale=2.0)
    poses = torch.randn(3, TINY.window, POSE_SIZE)
    last = torch.full((3,), TINY.timesteps - 1)
    with torch.no_grad():
        expected = vae.encode(poses)[0] / 2.0
        first = -denoiser(torch.randn(3, TINY.latent_tokens, TINY.latent_size), last,
                          torch.randn(3, TINY.window, TINY.feature_size), torch.randn(3, TINY.window, 3), poses)
        second = -denoiser(torch.randn(3, TINY.latent_tokens, TINY.latent_size), last,
                           torch.randn(3, TINY.window, TINY.feature_size), torch.randn(3, TINY.window, 3), poses)
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(first, expected, atol=1e-3, rtol=1e-3)


def test_training_keeps_the_start_unless_a_checkpoint_beats_it_significantly(tmp_path):
    """The training loop's early stopping: per-sequence validation scores; a checkpoint whose gain over the
    start is within twice its standard error never replaces the start, a clear gain does."""
    from fasthmr_model.train.loop import train_loop

    def kept_step(run, later_scores):
        model = torch.nn.Linear(2, 1)
        calls = []

        def scores():
            calls.append(None)
            return [10.0, 10.0, 10.0, 10.0] if len(calls) == 1 else later_scores[len(calls) - 2]

        def loss_of_step(_step):
            return {"total": model(torch.ones(1, 2)).square().sum()}

        config = TrainingConfig(steps=4, checkpoint_every=2, log_every=2, learning_rate=0.1, warmup_steps=0)
        train_loop(kind="probe", run=tmp_path / run, modules={"model": model}, config=config,
                   loss_of_step=loss_of_step, samples="probes", validation_scores=scores, progress=False)
        return load_torch_checkpoint(tmp_path / run / "checkpoint.pt")["best"]["step"]

    noisy_gain = [9.0, 11.5, 8.5, 10.8]  # mean gain 0.05 +- 1.3: noise
    assert kept_step("noise", [noisy_gain, noisy_gain]) == 0
    assert kept_step("clear", [[9.0, 9.1, 8.9, 9.0], [8.0, 8.2, 7.9, 8.1]]) == 4  # every sequence better, then more

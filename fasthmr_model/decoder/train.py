"""`fasthmr train vae` and `fasthmr train decoder`: the motion VAE and the latent denoiser (torch, CPU or CUDA).

VAE data: sequences from the synthetic motion generator (and AMASS-format files when given), each seen by a
random robot camera (yaw anywhere, pitch and roll within the camera sampler's limits), turned into the pose
representation per frame. Denoiser data: the rendered training sequences' per-frame encoder features, crop rays
(data.crop.crop_ray_rotations, with each sequence's recovered K) and the encoder's own poses in that
representation (of the bundle given, e.g. the merged default) with the true poses; encoder and VAE are frozen.

Windows of W frames are cut at random from the sequences, with these augmentations:
time reversal, time warping (replay at 0.75x-1.33x speed by linear interpolation, of features and poses
alike) and warm-up windows (the first frames of a track, padded with copies of its first frame as the
streaming buffer pads them).

Losses: the VAE, MSE on the normalised representation + KL (weight 1e-5, a tenth of MLD's: the one-step
denoiser regresses latents and needs no smooth prior, and the reconstruction is a floor under the decoder's
error); the denoiser, the paper's ||v^ - v||^2 + ||eps^ - eps||^2 on unit-variance latents. Only t = T - 1
is ever sampled, so half of every batch trains there and the other half at uniform t (the paper trains all t; the terminal step is the one
the node runs).

The VAE reads windows as the encoder gives them (encoder_like_windows: the encoder's slow errors, which it
reconstructs, and its per-frame jitter, which it removes; sizes measured on the rendered training
sequences), so that its encoder is a smoother of the encoder's poses; the denoiser starts as that encoder
(Denoiser.start_from_vae_encoder). The denoiser gets Gaussian noise on its input features (feature_noise
times each feature's spread) and is validated at the start and every checkpoint by decoding the val
sequences causally; it keeps the best weights, a trained checkpoint only if it beats the start by more
than the per-sequence noise (train.loop.significant_gain). The rendered training set is 200 sequences:
without noise and validation it learnt them by heart, and corrections learnt on them helped some val
sequences by 20 mm and hurt others by as much.

Both run the shared training loop (train.loop: AdamW, warm-up and cosine decay, clipping, atomic checkpoints,
resume, the log); their configs are train.recipes.TrainingConfig, the shipped ones VAE_RECIPE and
DENOISER_RECIPE.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.skeleton import NUM_BETAS, NUM_JOINTS
from fasthmr_model.decoder.config import DecoderConfig
from fasthmr_model.decoder.diffusion import diffusion_schedule
from fasthmr_model.decoder.model import Denoiser, MotionVAE, OneStepDecoder
from fasthmr_model.decoder.pose import NUM_POINTS, body_rest_points, encode_pose
from fasthmr_model.errors import FastHMRError
from fasthmr_model.torch_files import load_torch_checkpoint
from fasthmr_model.train.loop import CHECKPOINT_NAME, train_loop, training_device
from fasthmr_model.train.recipes import TrainingConfig

MOTION_SEED = 21_000  # VAE training motions; validation motions use MOTION_SEED + 1
MOTION_FRAMES = 300


@dataclass(frozen=True)
class WindowAugmentation:
    """Chances and ranges of the window augmentations (see the module docstring)."""

    reverse_probability: float = 0.5
    speed_range: tuple = (0.75, 1.33)
    warm_up_probability: float = 0.15


# ----------------------------------------------------------------------------------------------------
# Data


def random_camera_rotations(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 3, 3) world -> camera rotations of robot cameras (fasthmr_model.data.camera's ranges)."""
    from fasthmr_model.data.camera import CameraConfig, camera_rotation

    limits = CameraConfig()
    return np.stack([camera_rotation(rng.uniform(-np.pi, np.pi), np.radians(rng.uniform(-1, 1) * limits.pitch_limit_deg),
                                     np.radians(rng.uniform(-1, 1) * limits.roll_limit_deg)) for _ in range(count)])


def sequence_representation(body_model: BodyModel, betas: np.ndarray, rotmats: np.ndarray) -> np.ndarray:
    """One person's frames: betas (10,) or per frame (T, 10), rotmats (T, 24, 3, 3) -> representations
    (T, 131) float32."""
    betas = np.broadcast_to(np.asarray(betas, np.float64), (len(rotmats), NUM_BETAS))
    return encode_pose(body_rest_points(body_model, betas), rotmats).astype(np.float32)


def motion_dataset(body_model: BodyModel, sequences: int, seed: int, amass_files=()
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Generated motions (and AMASS files) seen by random robot cameras: per motion its local rotations
    (T, 24, 3, 3) and its rest points (T, 29, 3) (one shape, repeated without copies), float32."""
    from fasthmr_model.data.motion import generate_sequence

    motions = [generate_sequence([seed, k], MOTION_FRAMES, 30.0, body_model=body_model) for k in range(sequences)]
    if amass_files:
        from fasthmr_model.data.amass import read_amass

        motions += [read_amass(path, fps=30.0) for path in amass_files]
    cameras = random_camera_rotations(np.random.default_rng([seed, 1]), len(motions))
    series = []
    for motion, camera in zip(motions, cameras):
        rotmats = np.array(motion.rotmats, np.float32)
        rotmats[:, 0] = camera @ rotmats[:, 0]
        betas = np.asarray(motion.betas, np.float64).reshape(1, NUM_BETAS)
        rest = body_rest_points(body_model, betas).astype(np.float32)
        series.append((rotmats, np.broadcast_to(rest, (len(rotmats),) + rest.shape[1:])))
    return series


def motion_representations(series: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """motion_dataset's series -> their representations (T, 131) float32."""
    return [encode_pose(rest, rotmats).astype(np.float32) for rotmats, rest in series]


@dataclass(frozen=True)
class EncoderErrors:
    """How an encoder's per-frame poses err, per joint (24,), in radians (measure_encoder_errors).

    mean: the mean angle of its error rotations (true^T predicted, in the joint's parent frame).
    change: the mean angle between consecutive frames' error rotations: its frame-to-frame jitter.
    """

    mean: np.ndarray
    change: np.ndarray

    # A rotation vector with independent N(0, s^2) axes turns by s * 2 sqrt(2 / pi) = 1.596 s on average.
    _MEAN_ANGLE_PER_SIGMA = 2.0 * np.sqrt(2.0 / np.pi)

    @property
    def jitter_sigma(self) -> np.ndarray:
        """Per-axis spread (24,) of independent per-frame noise that changes between frames as the errors do
        (the difference of two such draws spreads by sqrt(2) times)."""
        return self.change / (self._MEAN_ANGLE_PER_SIGMA * np.sqrt(2.0))

    @property
    def slow_sigma(self) -> np.ndarray:
        """Per-axis spread (24,) of the rest of the error: what stays from frame to frame."""
        total = self.mean / self._MEAN_ANGLE_PER_SIGMA
        return np.sqrt(np.maximum(total ** 2 - self.jitter_sigma ** 2, 0.0))

    def to_dict(self) -> dict:
        return {"mean_deg": np.degrees(self.mean).round(3).tolist(), "change_deg": np.degrees(self.change).round(3).tolist()}

    @classmethod
    def from_dict(cls, values: dict) -> "EncoderErrors":
        return cls(np.radians(np.asarray(values["mean_deg"], np.float64)),
                   np.radians(np.asarray(values["change_deg"], np.float64)))


def measure_encoder_errors(true_rotmats: np.ndarray, rotmats: np.ndarray, ranges: list[slice]) -> EncoderErrors:
    """An encoder's errors from its rotations (N, 24, 3, 3) against the true ones (N, 24, 3, 3) over
    sequences given as row ranges (consecutive frames of one person each)."""
    from fasthmr_model.body.rotations import matrix_to_axis_angle

    def matrix_angle(matrices: np.ndarray) -> np.ndarray:
        return np.linalg.norm(matrix_to_axis_angle(matrices), axis=-1)

    errors = np.swapaxes(true_rotmats, -1, -2) @ rotmats
    following = np.concatenate([np.arange(rows.start, rows.stop - 1) for rows in ranges])
    if not len(following):
        raise FastHMRError("measuring the encoder's errors needs sequences of at least two frames")
    changes = np.swapaxes(errors[following], -1, -2) @ errors[following + 1]
    return EncoderErrors(matrix_angle(errors).mean(axis=0), matrix_angle(changes).mean(axis=0))


def encoder_like_windows(rng: np.random.Generator, rotmats: np.ndarray, rest: np.ndarray, errors: EncoderErrors | None,
                         config: TrainingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Motion windows, rotations (B, W, 24, 3, 3) and rest points (B, W, 29, 3) -> the VAE's (inputs, targets)
    as representations (B, W, 131) float32.

    With errors, the windows look like the encoder's poses: targets carry slow errors (a per-window offset
    per joint plus a linear drift across the window: no smoother can tell them from motion, so the prior
    must reconstruct them), but the motion's own twists (the encoder's twist errors are noise to remove);
    inputs add independent per-frame jitter on top, in a share of the windows. Without errors both are
    the motion itself.
    """
    count, window = rotmats.shape[:2]
    rotmats = rotmats.reshape(-1, NUM_JOINTS, 3, 3).astype(np.float64)
    rest = rest.reshape(-1, rest.shape[-2], 3).astype(np.float64)
    # Windows time-warped by interpolation hold blends of rotations: back to the nearest rotations.
    left, _, right = np.linalg.svd(rotmats)
    rotmats = left @ right
    clean = encode_pose(rest, rotmats).reshape(count, window, -1)
    if errors is None:
        clean = clean.astype(np.float32)
        return clean, clean
    from fasthmr_model.body.rotations import axis_angle_to_matrix

    across = np.linspace(-0.5, 0.5, window)[None, :, None, None]
    slow = (rng.standard_normal((count, 1, NUM_JOINTS, 3))
            + config.error_drift * across * rng.standard_normal((count, 1, NUM_JOINTS, 3)))
    slow = slow * (config.error_scale * errors.slow_sigma)[:, None]
    slowed = rotmats @ axis_angle_to_matrix(slow.reshape(-1, NUM_JOINTS, 3))
    targets = encode_pose(rest, slowed).reshape(count, window, -1)
    targets[..., 3 * NUM_POINTS:] = clean[..., 3 * NUM_POINTS:]
    jitter = rng.standard_normal((count * window, NUM_JOINTS, 3)) * (config.jitter_scale * errors.jitter_sigma)[:, None]
    jittered = encode_pose(rest, slowed @ axis_angle_to_matrix(jitter)).reshape(count, window, -1)
    chosen = (rng.random(count) < config.jitter_share)[:, None, None]
    return np.where(chosen, jittered, targets).astype(np.float32), targets.astype(np.float32)


def cut_windows(series: list[tuple[np.ndarray, ...]], window: int, count: int, rng: np.random.Generator,
                augmentation: WindowAugmentation | None) -> tuple[np.ndarray, ...]:
    """`count` windows of `window` frames from aligned series (each a tuple of (T, ...) arrays) ->
    one (count, window, ...) float32 array per series member. Sequences shorter than the window (or its
    warped span) are used as warm-up windows."""
    outputs = [np.empty((count, window) + member.shape[1:], np.float32) for member in series[0]]
    for row in range(count):
        chosen = series[int(rng.integers(len(series)))]
        length = len(chosen[0])
        speed = rng.uniform(*augmentation.speed_range) if augmentation else 1.0
        # Warm-up: only the last `real` frames are the track's; earlier ones copy its first frame.
        real = window if augmentation is None or rng.random() >= augmentation.warm_up_probability \
            else int(rng.integers(1, window))
        if (real - 1) * speed > length - 1:  # too short at this speed: play what there is
            speed, real = 1.0, min(real, length)
        span = (real - 1) * speed
        start = rng.uniform(0.0, length - 1 - span) if length - 1 > span else 0.0
        played = np.minimum(start + speed * np.arange(real), length - 1)
        if augmentation and rng.random() < augmentation.reverse_probability:
            played = played[::-1]
        positions = np.concatenate([np.full(window - real, played[0]), played])
        low = np.floor(positions).astype(int)
        high = np.minimum(low + 1, length - 1)
        weight = (positions - low).astype(np.float32)
        for output, member in zip(outputs, chosen):
            weights = weight.reshape((window,) + (1,) * (member.ndim - 1))
            output[row] = member[low] * (1 - weights) + member[high] * weights
    return tuple(outputs)


def turn_windows(rng: np.random.Generator, probability: float, rays: np.ndarray, *windows: np.ndarray
                 ) -> tuple[np.ndarray, ...]:
    """Crop rays (B, W, 3) and pose windows (B, W, 131), aligned, with a share `probability` of the B turned about
    the camera's y axis by one random angle each (all frames and arrays alike): the points turn, the twists
    (local) do not; the rays' rotation vectors turn too, so that the encoder's crop-relative error R (truth =
    R(ray) encoder) stays what the turned ray gives (Q R Q^T is the rotation about Q's turn of R's axis).
    Returns (rays, *windows)."""
    turned = tuple(np.array(member) for member in (rays,) + windows)
    chosen = np.flatnonzero(rng.random(len(turned[0])) < probability)
    if not len(chosen):
        return turned
    angles = rng.uniform(-np.pi, np.pi, len(chosen))
    cos, sin, zero, one = np.cos(angles), np.sin(angles), np.zeros(len(chosen)), np.ones(len(chosen))
    rotations = np.stack([cos, zero, sin, zero, one, zero, -sin, zero, cos], axis=1).reshape(-1, 1, 1, 3, 3)
    turned[0][chosen] = (rotations[:, :, 0] @ turned[0][chosen, :, :, None])[..., 0]
    for member in turned[1:]:
        points = member[chosen, :, :3 * NUM_POINTS].reshape(len(chosen), member.shape[1], NUM_POINTS, 3, 1)
        member[chosen, :, :3 * NUM_POINTS] = (rotations @ points).reshape(len(chosen), member.shape[1], -1)
    return turned


# ----------------------------------------------------------------------------------------------------
# VAE


def newest_frame_weights(window: int, newest_weight: float, device) -> torch.Tensor:
    """(window,) loss weights per frame, oldest first: 1, ..., 1, newest_weight, scaled to mean 1 (so that
    the other loss terms' weights keep their meaning)."""
    weights = torch.ones(window, device=device)
    weights[-1] = newest_weight
    return weights * (window / weights.sum())


def train_vae(run: Path, body_model_path: Path, decoder_config: DecoderConfig, config: TrainingConfig, *,
              amass_files=(), errors: EncoderErrors | None = None, progress: bool = True) -> MotionVAE:
    """Train (or resume) the motion VAE in `run`; returns it (eval mode, on the CPU). With an encoder's errors
    (measure_encoder_errors), it learns to read windows as that encoder gives them (encoder_like_windows)."""
    device = training_device(config)
    body = BodyModel.from_file(body_model_path)
    series = motion_dataset(body, config.motion_sequences, MOTION_SEED, amass_files)
    vae = MotionVAE(decoder_config)
    stacked = np.concatenate(motion_representations(series))
    with torch.no_grad():
        vae.pose_mean.copy_(torch.from_numpy(stacked.mean(axis=0)))
        # A floor on the scale keeps near-constant numbers (the pelvis point is always 0) from blowing up.
        vae.pose_std.copy_(torch.from_numpy(np.maximum(stacked.std(axis=0), 1e-2)))
    vae.to(device)
    augmentation = WindowAugmentation()
    frame_weights = newest_frame_weights(decoder_config.window, config.newest_frame_weight, device)

    def loss_of_step(step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([config.seed, step])
        rotmats, rest = cut_windows(series, decoder_config.window, config.batch_size, rng, augmentation)
        inputs, targets = (torch.from_numpy(member).to(device)
                           for member in encoder_like_windows(rng, rotmats, rest, errors, config))
        mean, log_variance = vae.encode(inputs)
        latents = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
        reconstruction = (((vae.decode(latents) - targets) / vae.pose_std).square().mean(dim=2) * frame_weights).mean()
        kl = 0.5 * (mean.square() + log_variance.exp() - 1.0 - log_variance).sum(dim=(1, 2)).mean()
        return {"total": reconstruction + config.kl_weight * kl, "reconstruction": reconstruction, "kl": kl}

    train_loop(kind="vae", run=run, modules={"model": vae}, config=config, loss_of_step=loss_of_step,
               samples="windows", extra_state={"decoder_config": decoder_config.to_dict(),
                                               "amass_files": [str(path) for path in amass_files],
                                               "encoder_errors": errors.to_dict() if errors else None},
               progress=progress)
    return vae.cpu()


def load_vae(run: Path) -> tuple[MotionVAE, dict]:
    """The VAE of a finished (or interrupted) run and its checkpoint state."""
    path = Path(run) / CHECKPOINT_NAME
    if not path.is_file():
        raise FastHMRError(f"{path} is missing: train the VAE first with `fasthmr train vae --run {run}`")
    state = load_torch_checkpoint(path)
    if state.get("kind") != "vae":
        raise FastHMRError(f"{path} is a {state.get('kind')} run, not a VAE run")
    vae = MotionVAE(DecoderConfig.from_dict(state["decoder_config"]))
    vae.load_state_dict(state["model"])
    return vae.eval(), state


def vae_reconstruction_mm(vae: MotionVAE, body_model_path: Path, sequences: int = 32) -> dict[str, float]:
    """The VAE's reconstruction of held-out generated motions (their own seed), decoded from the latent mean:
    joint error (mm, root-relative points) and, through IK and the body model, MPJPE (mm, EMDB convention)."""
    from fasthmr_model.decoder.pose import inverse_kinematics, split_representation
    from fasthmr_model.metrics import mpjpe

    body = BodyModel.from_file(body_model_path)
    config = vae.config
    held_out = motion_representations(motion_dataset(body, sequences, MOTION_SEED + 1))
    windows = []
    for poses in held_out:  # non-overlapping windows, no augmentation
        windows += [poses[start:start + config.window] for start in range(0, len(poses) - config.window + 1, config.window)]
    poses = np.stack(windows)
    with torch.no_grad():
        decoded = vae.decode(vae.encode(torch.from_numpy(poses))[0]).numpy().astype(np.float64)
    flat_true = poses.reshape(-1, poses.shape[-1]).astype(np.float64)
    flat_decoded = decoded.reshape(-1, decoded.shape[-1])
    true_points, _ = split_representation(flat_true)
    points, _ = split_representation(flat_decoded)
    mean_shape = np.zeros((len(flat_true), NUM_BETAS))
    rest = body_rest_points(body, mean_shape)
    _, joints = body.forward(mean_shape, inverse_kinematics(rest, flat_decoded), with_vertices=False)
    _, true_joints = body.forward(mean_shape, inverse_kinematics(rest, flat_true), with_vertices=False)
    return {"points_mm": round(float(1000 * np.linalg.norm(points - true_points, axis=-1).mean()), 2),
            "mpjpe_mm": round(float(mpjpe(joints, true_joints, (1, 2)).mean()), 2),
            "windows": len(poses)}


# ----------------------------------------------------------------------------------------------------
# Denoiser


def sequence_dataset(crops, encoded: dict[str, np.ndarray], body_model: BodyModel
                     ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(features (T, D), crop rays (T, 3), the encoder's poses (T, 131), true poses (T, 131)) per rendered
    sequence of a split (representations: decoder.pose; the encoder's with its own betas, as the run time
    computes them; rays: decoder.sequences.split_crop_rays)."""
    from fasthmr_model.body.rotations import rot6d_to_matrix
    from fasthmr_model.decoder.sequences import sequence_ranges, split_crop_rays

    rays = split_crop_rays(crops)
    series = []
    for rows in sequence_ranges(crops):
        encoder_rotmats = rot6d_to_matrix(encoded["pose_6d"][rows].reshape(-1, NUM_JOINTS, 6).astype(np.float64))
        frame_poses = sequence_representation(body_model, encoded["betas"][rows], encoder_rotmats)
        poses = sequence_representation(body_model, np.asarray(crops.betas[rows.start]),
                                        np.asarray(crops.rotmats[rows], np.float64))
        series.append((encoded["feature"][rows], rays[rows], frame_poses, poses))
    return series


def train_denoiser(run: Path, vae: MotionVAE, series: list, config: TrainingConfig, *,
                   validation_series: list | None = None, progress: bool = True) -> tuple[Denoiser, float]:
    """Train (or resume) the denoiser in `run` on (features, crop rays, frame poses, true poses) series
    (sequence_dataset)
    with the VAE frozen, starting as the VAE's encoder; returns the denoiser (eval mode, CPU) and the latent
    scale. With validation series (the val sequences), the weights kept are those that decode the val
    sequences causally best (_causal_validation), the start included (train_loop: a trained checkpoint must
    beat the start significantly)."""
    device = training_device(config)
    decoder_config = vae.config
    feature_size = series[0][0].shape[1]
    if feature_size != decoder_config.feature_size:
        decoder_config = DecoderConfig(**{**decoder_config.to_dict(), "feature_size": feature_size})
    vae = vae.to(device).eval()
    for parameter in vae.parameters():
        parameter.requires_grad_(False)
    augmentation = WindowAugmentation()
    # Latent scale: the standard deviation of the VAE's latent means over training windows (Stable
    # Diffusion's scale factor), so that the denoiser works on unit-variance latents as the schedule assumes.
    checkpoint = run / CHECKPOINT_NAME
    if checkpoint.is_file():
        latent_scale = float(load_torch_checkpoint(checkpoint)["latent_scale"])
    else:
        *_, poses = cut_windows(series, decoder_config.window, 2048, np.random.default_rng([config.seed, 1 << 30]),
                                    None)
        with torch.no_grad():
            latent_scale = float(vae.encode(torch.from_numpy(poses).to(device))[0].std())
    schedule = diffusion_schedule(decoder_config)
    signal = torch.from_numpy(np.sqrt(schedule.alpha_bar)).float().to(device)
    noise_level = torch.from_numpy(np.sqrt(1.0 - schedule.alpha_bar)).float().to(device)
    denoiser = Denoiser(decoder_config).to(device)
    denoiser.start_from_vae_encoder(vae, latent_scale)
    # 200 rendered sequences are few: without noise on its input the denoiser learns them by heart.
    feature_spread = torch.from_numpy(np.concatenate([features for features, *_ in series]).std(axis=0)).to(device)

    def loss_of_step(step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([config.seed, step])
        features, rays, frame_poses, poses = cut_windows(series, decoder_config.window, config.batch_size, rng,
                                                         augmentation)
        rays, frame_poses, poses = turn_windows(rng, config.turn_probability, rays, frame_poses, poses)
        features, rays, frame_poses, poses = (torch.from_numpy(member).to(device)
                                              for member in (features, rays, frame_poses, poses))
        features = features + config.feature_noise * feature_spread * torch.randn_like(features)
        with torch.no_grad():
            clean = vae.encode(poses)[0] / latent_scale
        terminal = torch.from_numpy(rng.random(len(poses)) < config.terminal_fraction).to(device)
        timesteps = torch.where(terminal, decoder_config.timesteps - 1,
                                torch.from_numpy(rng.integers(0, decoder_config.timesteps, len(poses))).to(device))
        a, s = signal[timesteps][:, None, None], noise_level[timesteps][:, None, None]
        noise = torch.randn_like(clean)
        noisy = a * clean + s * noise
        v = a * noise - s * clean
        predicted_v = denoiser(noisy, timesteps, features, rays, frame_poses)
        predicted_noise = s * noisy + a * predicted_v
        v_loss = (predicted_v - v).square().mean()
        noise_loss = (predicted_noise - noise).square().mean()
        terms = {"v": v_loss, "eps": noise_loss}
        if config.pose_loss_weight:
            # x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v, decoded by the frozen VAE: the poses themselves.
            terms["pose"] = pose_error(vae.decode((a * noisy - s * predicted_v) * latent_scale), poses)
        terms["total"] = v_loss + noise_loss + config.pose_loss_weight * terms.get("pose", 0.0)
        return terms

    def pose_error(decoded: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """Mean squared error of pose windows (B, W, 131) in the VAE's normalised units, the twists weighted by
        twist_loss_weight and the newest frame as in the VAE's training (the frame the stream keeps)."""
        squared = ((decoded - poses) / vae.pose_std).square() * number_weights
        return (squared.sum(dim=2) / number_weights.sum() * frame_weights).mean()

    frame_weights = newest_frame_weights(decoder_config.window, config.newest_frame_weight, device)
    number_weights = torch.ones(decoder_config.pose_size, device=device)
    number_weights[3 * NUM_POINTS:] = config.twist_loss_weight

    validation_scores = None
    if validation_series:
        scores = _causal_validation(validation_series, vae, latent_scale, decoder_config, config.seed, device)
        validation_scores = partial(scores, denoiser)
    train_loop(kind="denoiser", run=run, modules={"model": denoiser}, config=config, loss_of_step=loss_of_step,
               samples="windows", extra_state={"latent_scale": latent_scale, "decoder_config": decoder_config.to_dict()},
               validation_scores=validation_scores, progress=progress)
    return denoiser.cpu(), latent_scale


def _causal_validation(series: list, vae: MotionVAE, latent_scale: float, decoder_config: DecoderConfig, seed: int,
                       device):
    """The denoiser's validation as the stream runs it: per sequence (features, rays, frame poses, true poses), the
    window ending at every frame (warm-up windows padded) decoded in one step from a fixed noise sample, and
    the newest frame's 24 joints against the truth -> a function of the denoiser giving each sequence's mean
    joint error (S,) in mm (the decoder's own points, relative to the pelvis)."""
    from fasthmr_model.decoder.runtime import sliding_windows

    window = decoder_config.window
    members = [[], [], [], []]
    lengths = []
    for sequence in series:
        starts = np.arange(len(sequence[0])) - window + 1
        for stack, member in zip(members, sequence):
            stack.append(sliding_windows(member, window, starts))
        lengths.append(len(sequence[0]))
    features, rays, frame_poses, poses = (torch.from_numpy(np.concatenate(stack)).to(device) for stack in members)
    true_joints = poses[:, -1, :3 * NUM_POINTS].reshape(-1, NUM_POINTS, 3)[:, :NUM_JOINTS]
    owner = np.repeat(np.arange(len(lengths)), lengths)
    noise = torch.randn((1, decoder_config.latent_tokens, decoder_config.latent_size),
                        generator=torch.Generator().manual_seed(seed)).to(device)
    last = torch.full((len(poses),), decoder_config.timesteps - 1, dtype=torch.int64, device=device)

    def scores(model: Denoiser) -> np.ndarray:
        errors = []
        for rows in torch.split(torch.arange(len(poses), device=device), 1024):
            latents = -model(noise.expand(len(rows), -1, -1), last[rows], features[rows], rays[rows], frame_poses[rows])
            decoded = vae.decode(latents * latent_scale)[:, -1, :3 * NUM_POINTS]
            decoded = decoded.reshape(-1, NUM_POINTS, 3)[:, :NUM_JOINTS]
            errors.append((decoded - true_joints[rows]).norm(dim=-1).mean(dim=-1))
        per_frame = 1000.0 * torch.cat(errors).cpu().numpy()
        return np.bincount(owner, per_frame) / np.asarray(lengths)

    return scores


def one_step_decoder(vae: MotionVAE, denoiser: Denoiser, latent_scale: float) -> OneStepDecoder:
    """The exported module: the VAE rebuilt with the denoiser's config (the feature size may differ)."""
    rebuilt = MotionVAE(denoiser.config)
    rebuilt.load_state_dict(vae.state_dict())
    return OneStepDecoder(rebuilt.eval(), denoiser.eval(), latent_scale).eval()

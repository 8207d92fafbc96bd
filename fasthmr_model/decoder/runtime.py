"""The decoder at run time: decoder.onnx in ONNX Runtime, the causal streaming step, and offline decoding.

Per frame and person: the encoder's feature, the crop's ray (data.crop.crop_ray_rotations) and the
encoder's pose (in the decoder's representation, decoder.pose, with the encoder's betas) enter the track's
ring buffer; the window ending at this frame goes through decoder.onnx (one denoising step + the VAE
decoder); the newest frame's points and twists go through the IK with the encoder's betas; the result
replaces the encoder's pose, while shape and camera stay the encoder's (as in the paper). Offline decoding
(evaluation) gives every frame of a whole sequence the window centred on it instead.

Run-time module: numpy and onnxruntime only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import numpy as np

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.skeleton import NUM_BETAS, NUM_JOINTS
from fasthmr_model.bundle import Bundle
from fasthmr_model.decoder.config import CROP_RAY_SIZE, DecoderConfig
from fasthmr_model.decoder.pose import POSE_SIZE, body_rest_points, encode_pose, inverse_kinematics
from fasthmr_model.decoder.streaming import TrackWindows
from fasthmr_model.errors import BundleError, InputError
from fasthmr_model.runtime import BatchedSession, RuntimeConfig, create_session


class DecoderSession:
    """The bundle's decoder.onnx in ONNX Runtime with its fixed noise sample, warmed up at construction.

    It runs on runtime.decoder_provider with the other runtime settings, always in fp32 (its graph is tiny:
    fp16 would save nothing and cost accuracy), in chunks of runtime.max_batch windows. With threads left to
    ONNX Runtime (0), the graph runs on one thread: its operators are too small to split (a 16-frame graph
    with 3 + 3 layers took 0.30 ms per person-frame on one thread and 0.51 ms on two, on a 2-core CPU).
    """

    def __init__(self, bundle: Bundle, config: RuntimeConfig = RuntimeConfig()) -> None:
        section = bundle.decoder
        if section is None:
            raise BundleError(f"{bundle.path} has no decoder; train one with `fasthmr train decoder --bundle "
                              f"{bundle.path} ...` or use per-frame poses")
        self.config = DecoderConfig.from_dict(section.config)
        if self.config.feature_size != bundle.feature_size:
            raise BundleError(f"{bundle.path}: the decoder reads {self.config.feature_size}-d features, the encoder "
                              f"gives {bundle.feature_size}; retrain the decoder on this encoder")
        self.noise = np.asarray(section.noise, np.float32).reshape(self.config.latent_tokens, self.config.latent_size)
        single = config if config.threads else replace(config, threads=1)
        batch_inputs = {"features": (self.config.window, self.config.feature_size),
                        "crop_rays": (self.config.window, CROP_RAY_SIZE),
                        "frame_poses": (self.config.window, POSE_SIZE), "noise": self.noise.shape}
        opened = create_session(bundle.path / section.file, single, provider=config.decoder_provider, precision="fp32",
                                sha256=bundle.file_sha256(section.file), batch_inputs=batch_inputs)
        names = ([node.name for node in opened.session.get_inputs()],
                 [node.name for node in opened.session.get_outputs()])
        if names != (list(batch_inputs), ["poses"]):
            raise BundleError(f"{bundle.path / section.file} has inputs/outputs {names}, not the decoder contract "
                              f"({', '.join(batch_inputs)} -> poses): retrain the decoder with this fasthmr")
        self.batched = BatchedSession(opened, single, batch_inputs)
        self.batched.warm_up()

    @property
    def session(self):
        return self.batched.session

    @property
    def provider(self) -> str:
        """ONNX Runtime's name of the provider the decoder's session obtained."""
        return self.batched.opened.provider

    @property
    def window(self) -> int:
        return self.config.window

    @property
    def frame_size(self) -> int:
        """Numbers per frame of frame_inputs' rows: D + 3 + 131."""
        return self.config.feature_size + CROP_RAY_SIZE + POSE_SIZE

    def run(self, features: np.ndarray, crop_rays: np.ndarray, frame_poses: np.ndarray) -> np.ndarray:
        """features (B, W, D), crop rays (B, W, 3) and the encoder's frame poses (B, W, 131), oldest first -> pose
        representations (B, W, 131) float32."""
        window, batch = self.config.window, len(features)
        if features.ndim != 3 or features.shape[1:] != (window, self.config.feature_size):
            raise InputError(f"decoder features must be (B, {window}, {self.config.feature_size}), got {features.shape}")
        if crop_rays.shape != (batch, window, CROP_RAY_SIZE) or frame_poses.shape != (batch, window, POSE_SIZE):
            raise InputError(f"decoder crop rays and frame poses must be ({batch}, {window}, {CROP_RAY_SIZE}) and "
                             f"({batch}, {window}, {POSE_SIZE}), got {crop_rays.shape} and {frame_poses.shape}")
        noise = np.broadcast_to(self.noise, (len(features),) + self.noise.shape)
        return self.batched.run({"features": features, "crop_rays": crop_rays, "frame_poses": frame_poses,
                                 "noise": noise})[0]

    def run_frames(self, frames: np.ndarray) -> np.ndarray:
        """frames (B, W, D + 3 + 131): per frame the feature, the crop ray, then the frame pose (frame_inputs)
        -> (B, W, 131)."""
        size = self.config.feature_size
        return self.run(frames[..., :size], frames[..., size:size + CROP_RAY_SIZE], frames[..., size + CROP_RAY_SIZE:])


class DecodedPoses(NamedTuple):
    """rotmats (B, 24, 3, 3) decoded local rotations (global orientation in the camera frame first);
    frames (B,) real frames in each window; warm_up (B,) bool: fewer than W (the window was padded);
    reset (B,) bool: the track started over at this frame."""

    rotmats: np.ndarray
    frames: np.ndarray
    warm_up: np.ndarray
    reset: np.ndarray


def poses_to_rotmats(rest: np.ndarray, representations: np.ndarray) -> np.ndarray:
    """Rest points of the encoder's betas (B, 29, 3) (decoder.pose.body_rest_points) and decoded representations
    (B, 131) -> rotations (B, 24, 3, 3) by the IK."""
    return inverse_kinematics(rest, representations.astype(np.float64))


def frame_inputs(rest: np.ndarray, features: np.ndarray, crop_rays: np.ndarray, rotmats: np.ndarray) -> np.ndarray:
    """The decoder's input of B person-frames: rest points of the encoder's betas (B, 29, 3), its features
    (B, D), the crops' rays (B, 3) (data.crop.crop_ray_rotations) and its rotations (B, 24, 3, 3) ->
    (B, D + 3 + 131) float32: the feature, the ray, then the encoder's pose in the decoder's representation."""
    poses = encode_pose(rest, np.asarray(rotmats, np.float64))
    return np.concatenate([np.asarray(features, np.float32), np.asarray(crop_rays, np.float32).reshape(-1, CROP_RAY_SIZE),
                           poses.astype(np.float32)], axis=1)


class StreamingDecoder:
    """The causal decoder of a stream: ring buffers per track, one decoder call per frame for all persons.
    The stream (fasthmr_model.stream) says which tracks ended (`end`) or whether everything starts over
    (`clear`)."""

    def __init__(self, bundle: Bundle, body_model: BodyModel, runtime: RuntimeConfig) -> None:
        self.session = DecoderSession(bundle, runtime)
        self.body_model = body_model
        self.windows = TrackWindows(self.session.window, self.session.frame_size)

    def step(self, track_ids, features: np.ndarray, crop_rays: np.ndarray, rotmats: np.ndarray, betas: np.ndarray
             ) -> DecodedPoses:
        """One frame: track_ids (B,), the encoder's features (B, D), the crops' rays (B, 3)
        (data.crop.crop_ray_rotations), rotations (B, 24, 3, 3) and betas (B, 10) -> DecodedPoses."""
        count = len(np.asarray(track_ids).reshape(-1))
        betas, rotmats = np.asarray(betas), np.asarray(rotmats)
        if betas.shape != (count, NUM_BETAS) or rotmats.shape != (count, NUM_JOINTS, 3, 3):
            raise InputError(f"betas and rotmats must be ({count}, {NUM_BETAS}) and ({count}, {NUM_JOINTS}, 3, 3) for "
                             f"{count} tracks, got {betas.shape} and {rotmats.shape}")
        features = np.asarray(features)
        if features.shape != (count, self.session.config.feature_size) or np.shape(crop_rays) != (count, CROP_RAY_SIZE):
            raise InputError(f"features and crop rays must be ({count}, {self.session.config.feature_size}) and "
                             f"({count}, {CROP_RAY_SIZE}) for {count} tracks, got {features.shape} and "
                             f"{np.shape(crop_rays)}")
        if count == 0:
            windows = self.windows.push(track_ids, np.zeros((0, self.windows.feature_size), np.float32))
            return DecodedPoses(np.zeros((0, NUM_JOINTS, 3, 3)), windows.frames, windows.warm_up, windows.reset)
        rest = body_rest_points(self.body_model, np.asarray(betas, np.float64))  # for the pose in and the IK out
        windows = self.windows.push(track_ids, frame_inputs(rest, features, crop_rays, rotmats))
        newest = self.session.run_frames(windows.features)[:, -1]
        return DecodedPoses(poses_to_rotmats(rest, newest), windows.frames, windows.warm_up, windows.reset)

    def end(self, track_ids) -> None:
        """The tracks ended: their windows are forgotten (a track id is never reused)."""
        self.windows.end(track_ids)

    def clear(self) -> None:
        self.windows.clear()


def decode_causal(session: DecoderSession, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """A whole sequence's frame inputs (T, D + 3 + 131) -> (T, 131): frame t from the window ending at t, as the
    stream decodes it (warm-up windows padded with the first frame), in batches."""
    windows = sliding_windows(frames, session.window, np.arange(len(frames)) - session.window + 1)
    return _run_batched(session, windows, batch_size)[:, -1]


def decode_offline(session: DecoderSession, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """A whole sequence's frame inputs (T, D + 3 + 131) -> (T, 131): frame t from the window centred on it (the
    paper's non-causal decoding; near the ends the window is shifted inside the sequence, or padded when
    shorter)."""
    window, count = session.window, len(frames)
    starts = np.clip(np.arange(count) - window // 2, 0, max(0, count - window))
    if count < window:
        starts = np.full(count, count - window)
    decoded = _run_batched(session, sliding_windows(frames, window, starts), batch_size)
    return decoded[np.arange(count), np.arange(count) - starts]


def decode_tracks_offline(session: DecoderSession, body_model: BodyModel, track_ids, features: np.ndarray,
                          crop_rays: np.ndarray, rotmats: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """A recorded stream decoded offline (a recording has the future, so each frame gets the window centred on
    it, the paper's mode): N person-frames in stream order, track_ids (N,), the encoder's features (N, D), the
    crops' rays (N, 3), rotations (N, 24, 3, 3) and betas (N, 10) -> rotations (N, 24, 3, 3). Each track's rows, in their order,
    are decoded as one sequence (decode_offline); a track of fewer than W frames keeps the encoder's rotations,
    as the stream does until a window is full."""
    track_ids = np.asarray(track_ids, np.int64).reshape(-1)
    rotmats = np.asarray(rotmats, np.float64)
    count = len(track_ids)
    if (np.shape(features) != (count, session.config.feature_size) or np.shape(crop_rays) != (count, CROP_RAY_SIZE)
            or rotmats.shape != (count, NUM_JOINTS, 3, 3) or np.shape(betas) != (count, NUM_BETAS)):
        raise InputError(f"{count} person-frames need features ({count}, {session.config.feature_size}), crop rays "
                         f"({count}, {CROP_RAY_SIZE}), rotmats ({count}, {NUM_JOINTS}, 3, 3) and betas ({count}, "
                         f"{NUM_BETAS}), got {np.shape(features)}, {np.shape(crop_rays)}, {rotmats.shape} and "
                         f"{np.shape(betas)}")
    decoded = rotmats.copy()
    for track in np.unique(track_ids):
        rows = np.flatnonzero(track_ids == track)
        if len(rows) < session.window:
            continue
        rest = body_rest_points(body_model, np.asarray(betas, np.float64)[rows])
        frames = frame_inputs(rest, np.asarray(features)[rows], np.asarray(crop_rays)[rows], rotmats[rows])
        decoded[rows] = poses_to_rotmats(rest, decode_offline(session, frames))
    return decoded


def sliding_windows(frames: np.ndarray, window: int, starts: np.ndarray) -> np.ndarray:
    """(N, window, F) windows of per-frame rows (T, F) starting at `starts` (N,); indices before 0 read frame 0
    (a causal window ending at frame t starts at t - window + 1)."""
    indices = np.maximum(starts[:, None] + np.arange(window)[None], 0)
    return np.asarray(frames, np.float32)[indices]


def _run_batched(session: DecoderSession, windows: np.ndarray, batch_size: int) -> np.ndarray:
    if len(windows) == 0:
        return np.zeros((0, session.window, POSE_SIZE), np.float32)
    return np.concatenate([session.run_frames(windows[start:start + batch_size])
                           for start in range(0, len(windows), batch_size)])

"""A camera stream through the model, on numpy arrays: the one place that knows the order of the steps.

    stream = StreamPipeline(bundle)                 # one bundle, one RuntimeConfig for every session
    result = stream.process(image, mask, K, stamp)  # StreamResult: bodies of this frame, with track ids

Per frame (DESIGN.md, "One frame, start to end"):
1. the per-frame stage (fasthmr_model.pipeline.FramePipeline): crops (one person per instance id), the
   encoder session (batch = persons), the body model's joints and the translation from the crop box and K;
2. track ids by box overlap (fasthmr_model.tracking); a track unseen for `max_gap` seconds, or time
   jumping back, ends the track and its decoder window (one setting for both);
3. the bundle's temporal decoder, when it has one: each track's feature joins its ring buffer, and a track
   whose window is full gets the decoder's pose for its newest frame (shape and translation stay the
   encoder's); the body model poses those bodies again;
4. the confidence of each body, its velocity (fasthmr_model.velocity: a robust fit over the track's pelvis
   positions of the last `velocity_window` seconds), and mesh vertices when asked.

The ROS node, `fasthmr replay` and the node bench all run this class; fasthmr_ros only turns messages into
arrays and results into messages. Not thread-safe: one thread calls process(). Run-time module: numpy and
onnxruntime only.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fasthmr_model.body.rotations import matrix_to_axis_angle
from fasthmr_model.bundle import Bundle
from fasthmr_model.data.crop import PreprocessConfig, crop_visible_fraction
from fasthmr_model.data.lens import CameraModel
from fasthmr_model.decoder.runtime import StreamingDecoder
from fasthmr_model.errors import FastHMRError, InputError
from fasthmr_model.pipeline import FramePipeline, FrameResult
from fasthmr_model.runtime import RuntimeConfig
from fasthmr_model.tracking import Tracker
from fasthmr_model.velocity import TrackVelocities

# Values of StreamResult.pose_source (the same as fasthmr_msgs/SmplBody's constants).
POSE_PER_FRAME = 0  # the encoder's pose: no decoder in the bundle, or the track's window is not full yet
POSE_TEMPORAL = 1  # the temporal decoder's pose for the newest frame of the track's window


@dataclass(frozen=True)
class StreamConfig:
    """How persons are followed from frame to frame (the ROS parameters `tracking.*`).

    Args:
        min_iou: smallest box overlap (intersection over union) that continues a track, in (0, 1].
        max_gap: seconds a track may go unseen before it ends; its decoder window ends with it, so a person
            seen again after a longer gap starts over (a new track id, a new window).
        velocity_window: seconds of a track's pelvis positions that its velocity is fitted over, in (0, 10]. A
            second spans about two walking steps, over which the pelvis's sway and the swing of its depth estimate
            with the stride average out; the fit lags a changing speed by about half the window.
    """

    min_iou: float = 0.3
    max_gap: float = 0.5
    velocity_window: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.min_iou <= 1.0:
            raise FastHMRError(f"min_iou must be in (0, 1], got {self.min_iou}")
        if not 0.0 <= self.max_gap <= 60.0:
            raise FastHMRError(f"max_gap must be in [0, 60] s, got {self.max_gap}")
        if not 0.0 < self.velocity_window <= 10.0:
            raise FastHMRError(f"velocity_window must be in (0, 10] s, got {self.velocity_window}")


@dataclass(kw_only=True)
class StreamResult(FrameResult):
    """The persons of one frame of a stream: FrameResult's fields (rotmats, axis_angle and joints hold the
    pose that is published: the decoder's where pose_source is POSE_TEMPORAL), and:

    track_ids (B,) int64, stable across frames while a person is tracked;
    pose_source (B,) uint8: POSE_PER_FRAME or POSE_TEMPORAL;
    confidence (B,) float in [0, 1]: the share of the encoder's input window (the central 256x192 of the
        square crop) that lies inside the image. 1 for a person fully in view, less for one cut by the
        image edge. It is a visibility measure: the encoder gives no confidence of its own.
    velocity (B, 3) m/s in the camera frame: the pelvis joint's velocity, a robust fit over the track's
        positions of the last velocity_window seconds (fasthmr_model.velocity), so that one outlying frame
        does not move it; zero where velocity_valid is False;
    velocity_valid (B,) bool: False for a track too new to have a velocity (fewer than MIN_SAMPLES frames);
    time_jumped_back: the stamp was older than the previous frame's; every track ended and started over;
    ended_tracks: ids of the tracks that ended at this frame (unseen for max_gap, or time jumped back);
    encoder_rotmats (B, 24, 3, 3): the encoder's own rotations (rotmats where pose_source is POSE_PER_FRAME;
        what offline decoding of a recording reads, fasthmr replay --offline).
    """

    track_ids: np.ndarray
    pose_source: np.ndarray
    confidence: np.ndarray
    velocity: np.ndarray
    velocity_valid: np.ndarray
    time_jumped_back: bool
    ended_tracks: list[int]
    encoder_rotmats: np.ndarray


class StreamPipeline:
    """A bundle's model over a stream of frames. See the module docstring.

    Args:
        bundle: a loaded Bundle, a bundle folder, or None for the bundle shipped in the package.
        runtime: provider and threads of every ONNX Runtime session (the encoder's and the decoder's).
        preprocess: how persons are cropped.
        stream: track matching and the gap after which a track and its decoder window restart.
        body_model_path: a SMPL-format body model file replacing the bundle's.
        temporal: use the bundle's decoder when it has one (False: per-frame poses only).
    """

    def __init__(self, bundle: Bundle | str | Path | None = None, *, runtime: RuntimeConfig = RuntimeConfig(),
                 preprocess: PreprocessConfig = PreprocessConfig(), stream: StreamConfig = StreamConfig(),
                 body_model_path: str | Path | None = None, temporal: bool = True) -> None:
        self.frames = FramePipeline(bundle, runtime, preprocess, body_model_path)
        self.tracker = Tracker(stream)
        self.velocities = TrackVelocities()
        self.decoder = (StreamingDecoder(self.bundle, self.body_model, runtime)
                        if temporal and self.bundle.has_decoder else None)

    @property
    def bundle(self) -> Bundle:
        return self.frames.bundle

    @property
    def body_model(self):
        return self.frames.body_model

    @property
    def provider(self) -> str:
        """The ONNX Runtime provider the encoder's session obtained."""
        return self.frames.provider

    @property
    def device(self) -> str:
        """Where the encoder runs: the GPU's name, or `cpu`."""
        return self.frames.device

    def runtime_summary(self) -> str:
        """One line for a log: where each session runs, in which precision, and why auto left faster providers
        out."""
        encoder = self.frames.encoder.opened
        line = f"encoder on {encoder.device} ({encoder.provider}, {encoder.precision})"
        if self.decoder is not None:
            line += f", temporal decoder on {self.decoder.session.provider}"
        if encoder.skipped:
            line += "; auto left out " + "; ".join(f"{name}: {why}" for name, why in encoder.skipped.items())
        return line

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.frames.preprocess

    @preprocess.setter
    def preprocess(self, config: PreprocessConfig) -> None:
        self.frames.preprocess = config

    @property
    def stream_config(self) -> StreamConfig:
        return self.tracker.config

    @stream_config.setter
    def stream_config(self, config: StreamConfig) -> None:
        self.tracker.config = config  # takes effect at the next frame

    def process(self, image: np.ndarray, mask: np.ndarray, intrinsics: np.ndarray | CameraModel, stamp: float,
                with_vertices: bool = False) -> StreamResult:
        """One frame of the stream: image (H, W, 3) uint8 RGB, mask (H, W) integer instance ids (0 = background,
        k = person k), intrinsics K (3, 3) or a CameraModel with lens distortion (FramePipeline.process), stamp in
        seconds (the camera's clock) -> StreamResult, with vertices (B, V, 3) when with_vertices (else None).

        Raises InputError for bad arrays or K (the stream's state is then left as it was).
        """
        stamp = float(stamp)
        if not np.isfinite(stamp):
            raise InputError(f"stamp must be a finite time in seconds, got {stamp}")
        frame = self.frames.process(image, mask, intrinsics, with_vertices=False)
        start = time.perf_counter()
        tracks = self.tracker.update(stamp, frame.boxes)
        pose_source = np.full(len(frame.ids), POSE_PER_FRAME, np.uint8)
        rotmats, joints = frame.rotmats, frame.joints
        if self.decoder is not None:
            self.decoder.end(tracks.ended)
            if len(frame.ids):
                decoded = self.decoder.step(tracks.track_ids, frame.feature, frame.crop_rays, frame.rotmats,
                                            frame.betas)
                temporal = ~decoded.warm_up
                if temporal.any():
                    rotmats = frame.rotmats.copy()
                    rotmats[temporal] = decoded.rotmats[temporal]
                    joints = self.body_model.forward(frame.betas, rotmats, frame.translation, with_vertices=False)[1]
                    pose_source[temporal] = POSE_TEMPORAL
        timings = dict(frame.timings_ms, decoder=_ms_since(start))  # with the tracker the windows key on
        start = time.perf_counter()
        self.velocities.end(tracks.ended)
        velocities = self.velocities.update(stamp, tracks.track_ids, joints[:, 0], self.stream_config.velocity_window)
        timings["velocity"] = _ms_since(start)
        published = {name: getattr(frame, name) for name in _FRAME_FIELDS}
        published.update(rotmats=rotmats, joints=joints, timings_ms=timings)
        if rotmats is not frame.rotmats:
            published["axis_angle"] = matrix_to_axis_angle(rotmats)
        if with_vertices:
            start = time.perf_counter()
            published["vertices"] = self.body_model.forward(frame.betas, rotmats, frame.translation)[0]
            timings["body_model"] += _ms_since(start)
        return StreamResult(
            **published, track_ids=tracks.track_ids, pose_source=pose_source,
            confidence=crop_visible_fraction(frame.crop_boxes, image.shape[1], image.shape[0]),
            velocity=velocities.velocity, velocity_valid=velocities.valid,
            time_jumped_back=tracks.time_jumped_back, ended_tracks=list(tracks.ended), encoder_rotmats=frame.rotmats)

    def vertices(self, result: FrameResult, rows: np.ndarray) -> np.ndarray:
        """Mesh vertices (M, V, 3), camera frame, of the bodies `rows` (M,) of a result, as published."""
        rows = np.asarray(rows, np.intp)
        return self.body_model.forward(result.betas[rows], result.rotmats[rows], result.translation[rows])[0]

    def reset(self) -> None:
        """Ends every track (a new stream: the next frame starts with new track ids and empty windows)."""
        self.tracker.reset()
        self.velocities.reset()
        if self.decoder is not None:
            self.decoder.clear()

    def warm_up(self) -> None:
        """One small synthetic frame through the per-frame stage with a mesh, so that the first camera frame does
        not pay for first-call allocations. The stream's tracks are not touched (the decoder's session was
        warmed up when it was built)."""
        image = np.zeros((96, 64, 3), np.uint8)
        mask = np.zeros((96, 64), np.uint8)
        mask[16:80, 20:44] = 1
        self.frames.process(image, mask, np.array([[50.0, 0, 32], [0, 50.0, 48], [0, 0, 1]]), with_vertices=True)


_FRAME_FIELDS = tuple(field.name for field in dataclasses.fields(FrameResult))


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0

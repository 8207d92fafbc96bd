"""One paired frame through the node: messages -> arrays -> FramePipeline -> track ids -> output messages.

The node runs this on its inference thread; `python -m fasthmr_ros.bench` runs the same code without DDS
to measure the node's overhead. No ROS entities here: it takes messages and returns messages.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from fasthmr_msgs.msg import SmplBody, SmplBodyArray
from geometry_msgs.msg import PoseArray
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from fasthmr_model.data.crop import validate_intrinsics
from fasthmr_model.body.rotations import matrix_to_axis_angle
from fasthmr_model.decoder.runtime import StreamingDecoder, has_decoder
from fasthmr_model.errors import InputError
from fasthmr_model.pipeline import FramePipeline
from fasthmr_model.tracking import Tracker, TrackerConfig
from fasthmr_ros.image_conversion import image_to_rgb, mask_to_ids
from fasthmr_ros.marker_cdr import serialize_marker_array
from fasthmr_ros.outputs import MarkerBuilder, MarkerConfig, bodies_message, delete_all_marker, people_message

MASK_MODES = ("instances", "binary")


@dataclass(frozen=True)
class FrameOptions:
    """Args:
        mask_mode: "instances" (0 = background, k = person k) or "binary" (every non-zero pixel belongs to
            one person: for a segmenter that does not separate people, with one person in view).
        max_image_pixels: larger images (and masks) are rejected before they are read.
    """

    mask_mode: str = "instances"
    max_image_pixels: int = 4096 * 4096

    def __post_init__(self) -> None:
        if self.mask_mode not in MASK_MODES:
            raise InputError(f"mask_mode must be one of {MASK_MODES}, got {self.mask_mode!r}")
        if self.max_image_pixels < 1:
            raise InputError(f"max_image_pixels must be >= 1, got {self.max_image_pixels}")


class FrameRejected(InputError):
    """A frame that cannot be processed; `reason` names the cause for the diagnostics counters
    (bad_image, bad_mask, mask_size_mismatch, bad_frame)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FrameOutputs(NamedTuple):
    """What to publish for one frame: bodies, people, and markers (serialised MarkerArray, or None when
    there is nothing to draw or no one asked); timings_ms: stage -> milliseconds."""

    bodies: SmplBodyArray
    people: PoseArray
    markers: bytes | None
    timings_ms: dict[str, float]


def stamp_seconds(header: Header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def stamp_nanoseconds(header: Header) -> int:
    """The stamp as an exact integer (a key that matches messages of the same frame)."""
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def frame_intrinsics(camera_info: CameraInfo | None, image: Image) -> np.ndarray:
    """K (3, 3) of the CameraInfo in force for `image`; raises FrameRejected (reason no_camera_info,
    bad_camera_info or camera_info_size_mismatch) when there is none, its K is unusable, or it describes
    images of another size (a width and height of 0 mean "not stated")."""
    if camera_info is None:
        raise FrameRejected("no_camera_info", "no CameraInfo yet")
    intrinsics = np.array(camera_info.k, dtype=np.float64).reshape(3, 3)
    try:
        validate_intrinsics(intrinsics)
    except InputError as error:
        raise FrameRejected("bad_camera_info", str(error)) from None
    if (camera_info.width, camera_info.height) not in ((0, 0), (image.width, image.height)):
        raise FrameRejected("camera_info_size_mismatch", f"the CameraInfo is for {camera_info.width}x"
                            f"{camera_info.height} images, the image is {image.width}x{image.height}")
    return intrinsics


def whole_image_mask(height: int, width: int) -> np.ndarray:
    """The mask of a frame whose segmentation never arrived: the whole image is one person (instance 1).
    Its crop is the full frame, and only the tokens outside the image count as background."""
    return np.ones((height, width), np.uint8)


class FrameProcessor:
    """Holds the model pipeline, the tracker and what the markers currently show.

    Not thread-safe: one thread calls process() (the node's inference thread).
    """

    def __init__(self, pipeline: FramePipeline, tracker_config: TrackerConfig = TrackerConfig(),
                 marker_config: MarkerConfig = MarkerConfig(), options: FrameOptions = FrameOptions()) -> None:
        self.pipeline = pipeline
        self.tracker = Tracker(tracker_config)
        self.markers = MarkerBuilder(pipeline.body_model.faces, pipeline.body_model.parents, marker_config)
        self.options = options
        self.body_model_name = pipeline.body_model.arrays.model_name
        # The bundle's temporal decoder, when it has one: it replaces the pose of every track with a full window.
        self.decoder = StreamingDecoder(pipeline.bundle, pipeline.body_model) if has_decoder(pipeline.bundle) else None
        self._shown_tracks: set[int] = set()  # tracks whose markers RViz shows now
        self._shown_header: Header | None = None  # the header they were drawn with
        self._mesh_stamps: dict[int, float] = {}  # shown track -> stamp of its last mesh

    def set_tracker_config(self, config: TrackerConfig) -> None:
        self.tracker.config = config

    def _mesh_rows(self, track_ids: np.ndarray, stamp: float, redraw: bool) -> np.ndarray:
        """Indices into track_ids of the tracks whose mesh this frame draws (at mesh_rate per track): all of
        them when the display is redrawn, else the due track that waited longest (never drawn first) and any
        whose mesh is two periods old. One mesh per frame spreads the tracks' meshes over frames: a frame that
        skinned and serialised three meshes cost a millisecond more than one that drew none."""
        rate = self.markers.config.mesh_rate
        if rate <= 0.0 or not len(track_ids):
            return np.zeros(0, np.intp)
        if redraw:
            return np.arange(len(track_ids))
        # Waiting time per track; a track never drawn, or drawn "after" this frame (time ran backwards), waits
        # longest of all.
        lasts = [self._mesh_stamps.get(track) for track in track_ids.tolist()]
        waited = np.array([np.inf if last is None or stamp < last else stamp - last for last in lasts])
        due = np.flatnonzero(waited >= 1.0 / rate)
        if not len(due):
            return due
        longest = due[np.argmax(waited[due])]
        stale = due[np.isfinite(waited[due]) & (waited[due] >= 2.0 / rate)]
        return np.union1d([longest], stale).astype(np.intp)

    def process(self, image_message: Image, mask_message: Image | None, intrinsics: np.ndarray,
                markers_wanted: bool) -> FrameOutputs:
        """Runs one frame. mask_message None: no segmentation paired with the image (whole_image_mask).
        markers_wanted: someone subscribes to the markers (else no marker and no mesh is built).

        Raises FrameRejected for a malformed image, mask or K; the tracker and the markers are then left as
        they were.
        """
        header = image_message.header
        stamp = stamp_seconds(header)
        start = time.perf_counter()
        try:
            image = image_to_rgb(image_message, self.options.max_image_pixels)
        except InputError as error:
            raise FrameRejected("bad_image", f"image: {error}") from None
        if mask_message is None:
            mask = whole_image_mask(*image.shape[:2])
        else:
            try:
                mask = mask_to_ids(mask_message, self.options.max_image_pixels)
            except InputError as error:
                raise FrameRejected("bad_mask", f"segmentation: {error}") from None
            if mask.shape != image.shape[:2]:
                raise FrameRejected("mask_size_mismatch", f"the segmentation is {mask.shape[1]}x{mask.shape[0]} but "
                                    f"the image is {image.shape[1]}x{image.shape[0]}; they must have the same size")
            if self.options.mask_mode == "binary":
                mask = (mask != 0).view(np.uint8)
        timings = {"convert": (time.perf_counter() - start) * 1000.0}

        try:
            result = self.pipeline.process(image, mask, intrinsics, with_vertices=False)
        except InputError as error:
            raise FrameRejected("bad_frame", str(error)) from None
        timings.update(result.timings_ms)

        start = time.perf_counter()
        tracks = self.tracker.update(stamp, result.boxes)
        result, pose_source = self._temporal(result, tracks.track_ids, stamp)
        decoded = time.perf_counter()
        timings["decoder"] = (decoded - start) * 1000.0  # with the tracker, which the decoder's windows key on
        start = decoded
        bodies = bodies_message(header, self.body_model_name, result, tracks.track_ids, pose_source,
                                (image.shape[1], image.shape[0]))
        people = people_message(header, result)
        markers = None
        if markers_wanted:
            current = set(tracks.track_ids.tolist())
            vanished = bool(self._shown_tracks - current)
            # DELETEALL also removes the meshes of the tracks still in view: they are all drawn again.
            rows = self._mesh_rows(tracks.track_ids, stamp, redraw=vanished)
            vertices = self.pipeline.body_model.forward(result.betas[rows], result.rotmats[rows],
                                                        result.translation[rows])[0] if len(rows) else None
            if current or vanished:
                markers = self.markers.build(header, tracks.track_ids, result.joints, tracks.track_ids[rows],
                                             vertices, delete_all_first=vanished)
            self._shown_tracks, self._shown_header = current, header
            self._mesh_stamps = {track: self._mesh_stamps[track] for track in current if track in self._mesh_stamps}
            self._mesh_stamps.update((int(track), stamp) for track in tracks.track_ids[rows])
        timings["outputs"] = (time.perf_counter() - start) * 1000.0
        return FrameOutputs(bodies, people, markers, timings)

    def _temporal(self, result, track_ids: np.ndarray, stamp: float):
        """The result with the decoder's pose for the tracks whose window is full (shape and camera stay the
        encoder's, so the translation does too), and each body's pose_source (B,)."""
        pose_source = np.full(len(result.ids), SmplBody.POSE_PER_FRAME, np.uint8)
        if self.decoder is None or not len(result.ids):
            return result, pose_source
        decoded = self.decoder.step(track_ids, result.feature, result.rotmats, result.betas, stamp)
        temporal = ~decoded.warm_up
        if not temporal.any():
            return result, pose_source
        rotmats = result.rotmats.copy()
        rotmats[temporal] = decoded.rotmats[temporal]
        _, joints = self.pipeline.body_model.forward(result.betas, rotmats, result.translation, with_vertices=False)
        pose_source[temporal] = SmplBody.POSE_TEMPORAL
        return dataclasses.replace(result, rotmats=rotmats, axis_angle=matrix_to_axis_angle(rotmats),
                                   joints=joints), pose_source

    def clear_markers(self) -> bytes | None:
        """A serialised DELETEALL (in the frame the markers were drawn in) when markers are shown, else None.
        For deactivation and shutdown: markers of a stopped node would go stale."""
        if not self._shown_tracks:
            return None
        self._shown_tracks = set()
        return serialize_marker_array([delete_all_marker(self._shown_header)])

    def warm_up(self) -> None:
        """One small synthetic frame through the pipeline with a mesh, so that the first camera frame does
        not pay for first-call allocations."""
        image = np.zeros((96, 64, 3), np.uint8)
        mask = np.zeros((96, 64), np.uint8)
        mask[16:80, 20:44] = 1
        self.pipeline.process(image, mask, np.array([[50.0, 0, 32], [0, 50.0, 48], [0, 0, 1]]), with_vertices=True)

"""One frame through the node: messages -> arrays -> StreamPipeline.process -> output messages and markers.

The node runs this on its inference thread; `fasthmr replay` and `python -m fasthmr_ros.bench` run the same
code without DDS. No ROS entities and no model logic here: the library's StreamPipeline does every step of
the model (tracks, the temporal decoder, confidence), this module converts and decides what to draw.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
from fasthmr_msgs.msg import SmplBodyArray
from geometry_msgs.msg import PoseArray
from people_msgs.msg import People
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from fasthmr_model.body.skeleton import KinematicTree
from fasthmr_model.data.lens import CameraModel
from fasthmr_model.errors import InputError
from fasthmr_model.stream import StreamPipeline, StreamResult
from fasthmr_ros.image_conversion import image_to_rgb, mask_to_ids
from fasthmr_ros.inputs import Frame, InputOptions, camera_model
from fasthmr_ros.marker_cdr import serialize_marker_array
from fasthmr_ros.outputs import MarkerBuilder, MarkerConfig, bodies_message, delete_all_marker, people_message
from fasthmr_ros.stamps import stamp_seconds
from fasthmr_ros.standard_outputs import (Rep155Outputs, StandardOutputsConfig, body_quaternions, people_msgs_message,
                                          rep155_messages, tf_message)


class FrameRejected(InputError):
    """A frame that cannot be processed; `reason` names the cause for the diagnostics counters
    (no_camera_info, bad_camera_info, camera_info_size_mismatch, bad_image, bad_mask, mask_size_mismatch,
    bad_frame)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FrameOutputs(NamedTuple):
    """What to publish for one frame: bodies, people (PoseArray), markers (serialised MarkerArray, or None when
    there is nothing to draw or no one asked), tf (the body frames: a serialised TFMessage, None without bodies),
    people_msgs (People for navigation), rep155 (the REP-155 body messages, or None when turned off); result:
    the library's StreamResult; timings_ms: stage -> milliseconds."""

    bodies: SmplBodyArray
    people: PoseArray
    markers: bytes | None
    tf: bytes | None
    people_msgs: People
    rep155: Rep155Outputs | None
    result: StreamResult
    timings_ms: dict[str, float]


def frame_camera(camera_info: CameraInfo | None, rectified: bool = False) -> CameraModel:
    """fasthmr_ros.inputs.camera_model of the CameraInfo in force for a frame; raises FrameRejected (reason
    no_camera_info or bad_camera_info) when there is none or it is unusable."""
    if camera_info is None:
        raise FrameRejected("no_camera_info", "no CameraInfo yet")
    try:
        return camera_model(camera_info, rectified)
    except InputError as error:
        raise FrameRejected("bad_camera_info", str(error)) from None


def check_camera_info_size(camera_info: CameraInfo, width: int, height: int) -> None:
    """Raises FrameRejected (camera_info_size_mismatch) when the CameraInfo describes images of another size
    than width x height (a width and height of 0 mean "not stated")."""
    if (camera_info.width, camera_info.height) not in ((0, 0), (width, height)):
        raise FrameRejected("camera_info_size_mismatch", f"the CameraInfo is for {camera_info.width}x"
                            f"{camera_info.height} images, the image is {width}x{height}")


def whole_image_mask(height: int, width: int) -> np.ndarray:
    """The mask of a frame whose segmentation never arrived: the whole image is one person (instance 1).
    Its crop is the full frame, and only the tokens outside the image count as background."""
    return np.ones((height, width), np.uint8)


class FrameProcessor:
    """Holds the library's stream and what the markers currently show.

    Not thread-safe: one thread calls process() (the node's inference thread).
    """

    def __init__(self, stream: StreamPipeline, marker_config: MarkerConfig = MarkerConfig(),
                 options: InputOptions = InputOptions(),
                 standard_outputs: StandardOutputsConfig = StandardOutputsConfig()) -> None:
        self.stream = stream
        self.markers = MarkerBuilder(stream.body_model.faces, stream.body_model.parents, marker_config)
        self.options = options
        self.standard_outputs = standard_outputs
        self._tree = KinematicTree(stream.body_model.parents)  # per-joint TF frames
        self.body_model_name = stream.body_model.arrays.model_name
        self._shown_tracks: set[int] = set()  # tracks whose markers RViz shows now
        self._shown_header: Header | None = None  # the header they were drawn with
        self._mesh_stamps: dict[int, float] = {}  # shown track -> stamp of its last mesh

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

    def process(self, frame: Frame, markers_wanted: bool) -> FrameOutputs:
        """Runs one frame. frame.mask None: no segmentation paired with the image (whole_image_mask).
        markers_wanted: someone subscribes to the markers (else no marker and no mesh is built).

        Raises FrameRejected for a malformed image, mask or CameraInfo; the stream and the markers are then
        left as they were.
        """
        header = frame.image.header
        start = time.perf_counter()
        camera = frame_camera(frame.camera_info, self.options.image_rectified)
        image, mask = self._arrays(frame)
        check_camera_info_size(frame.camera_info, image.shape[1], image.shape[0])
        timings = {"convert": (time.perf_counter() - start) * 1000.0}
        try:
            result = self.stream.process(image, mask, camera, stamp_seconds(header))
        except InputError as error:
            raise FrameRejected("bad_frame", str(error)) from None
        timings.update(result.timings_ms)

        start = time.perf_counter()
        bodies = bodies_message(header, self.body_model_name, result)
        quaternions = body_quaternions(result)
        people = people_message(header, result, quaternions)
        markers = self._markers(header, result) if markers_wanted else None
        tf = tf_message(header, result, quaternions, self._tree if self.standard_outputs.joint_frames else None,
                        self.standard_outputs.rep155)
        people_msgs = people_msgs_message(header, result)
        rep155 = (rep155_messages(header, result, camera, image.shape[1], image.shape[0])
                  if self.standard_outputs.rep155 else None)
        timings["outputs"] = (time.perf_counter() - start) * 1000.0
        return FrameOutputs(bodies, people, markers, tf, people_msgs, rep155, result, timings)

    def _arrays(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """The frame's image (H, W, 3) uint8 RGB and instance mask (H, W) as the options say."""
        try:
            image = image_to_rgb(frame.image, self.options.max_image_pixels)
        except InputError as error:
            raise FrameRejected("bad_image", f"image: {error}") from None
        if frame.mask is None:
            return image, whole_image_mask(*image.shape[:2])
        try:
            mask = mask_to_ids(frame.mask, self.options.max_image_pixels)
        except InputError as error:
            raise FrameRejected("bad_mask", f"segmentation: {error}") from None
        if mask.shape != image.shape[:2]:
            raise FrameRejected("mask_size_mismatch", f"the segmentation is {mask.shape[1]}x{mask.shape[0]} but "
                                f"the image is {image.shape[1]}x{image.shape[0]}; they must have the same size")
        if self.options.mask_mode == "binary":
            mask = (mask != 0).view(np.uint8)
        return image, mask

    def _markers(self, header: Header, result: StreamResult) -> bytes | None:
        """The serialised MarkerArray of a frame (None when nothing is shown or changed): every track's skeleton,
        the meshes that are due, and a DELETEALL first when a track vanished."""
        stamp = stamp_seconds(header)
        track_ids = result.track_ids
        current = set(track_ids.tolist())
        vanished = bool(self._shown_tracks - current)
        # DELETEALL also removes the meshes of the tracks still in view: they are all drawn again.
        rows = self._mesh_rows(track_ids, stamp, redraw=vanished)
        markers = None
        if current or vanished:
            vertices = self.stream.vertices(result, rows) if len(rows) else None
            markers = self.markers.build(header, track_ids, result.joints, track_ids[rows], vertices,
                                         delete_all_first=vanished)
        self._shown_tracks, self._shown_header = current, header
        self._mesh_stamps = {track: self._mesh_stamps[track] for track in current if track in self._mesh_stamps}
        self._mesh_stamps.update((int(track), stamp) for track in track_ids[rows])
        return markers

    def clear_markers(self) -> bytes | None:
        """A serialised DELETEALL (in the frame the markers were drawn in) when markers are shown, else None.
        For deactivation and shutdown: markers of a stopped node would go stale."""
        if not self._shown_tracks:
            return None
        self._shown_tracks = set()
        return serialize_marker_array([delete_all_marker(self._shown_header)])

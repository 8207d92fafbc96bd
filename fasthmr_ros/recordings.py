"""Writing input bags: camera frames (rgb8 image, mono8 instance mask, CameraInfo; or JPEG/PNG CompressedImage on
`<topic>/compressed`) with ground truth.

Two sources: the synthetic world's clips (the demo bag) and the public 3DPW / EMDB sequences
(`fasthmr convert 3dpw|emdb`). Topics are the node's defaults (config/fasthmr.yaml) and the ground-truth
topic of fasthmr_ros.bags; every message of a frame carries the frame's stamp, and the bag's receive time
is that stamp, as a camera driver's recording would have it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np
from fasthmr_msgs.msg import SmplBody
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.rotations import matrix_to_axis_angle
from fasthmr_model.body.skeleton import NUM_BETAS, NUM_JOINTS
from fasthmr_model.errors import InputError
from fasthmr_ros.bags import BODIES_TYPE, CAMERA_INFO_TYPE, COMPRESSED_IMAGE_TYPE, IMAGE_TYPE, BagTopics, BagWriter
from fasthmr_ros.image_conversion import array_to_compressed, array_to_image
from fasthmr_ros.inputs import COMPRESSED_SUFFIX
from fasthmr_ros.outputs import smpl_body_array
from fasthmr_ros.stamps import stamp_from_nanoseconds

FRAME_ID = "camera_optical_frame"


class TruePerson(NamedTuple):
    """Ground truth of one person: track_id; instance_id (its value in the frame's mask); betas (10,);
    rotmats (24, 3, 3) with the global orientation in the camera frame; translation (3,) the body model's
    transl in the camera frame."""

    track_id: int
    instance_id: int
    betas: np.ndarray
    rotmats: np.ndarray
    translation: np.ndarray


class RecordedFrame(NamedTuple):
    """stamp_ns (the headers'); image (H, W, 3) uint8 RGB; mask (H, W) uint8 instance ids or None;
    intrinsics (3, 3); people: TruePerson; received_ns: the bag's receive time (None: the stamp)."""

    stamp_ns: int
    image: np.ndarray
    mask: np.ndarray | None
    intrinsics: np.ndarray
    people: tuple
    received_ns: int | None = None


def header_at(stamp_ns: int, frame_id: str = FRAME_ID) -> Header:
    return Header(frame_id=frame_id, stamp=stamp_from_nanoseconds(stamp_ns))


def camera_info_message(header: Header, intrinsics: np.ndarray, width: int, height: int) -> CameraInfo:
    """A CameraInfo of an undistorted pinhole camera with K = intrinsics."""
    message = CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob")
    message.k = [float(v) for v in np.asarray(intrinsics, np.float64).reshape(-1)]
    message.d = [0.0] * 5
    message.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    projection = np.zeros((3, 4))
    projection[:, :3] = intrinsics
    message.p = [float(v) for v in projection.reshape(-1)]
    return message


def _boxes(mask: np.ndarray | None, instance_ids: list, joints_2d: np.ndarray, width: int, height: int) -> np.ndarray:
    """(P, 4) pixel-edge boxes: of each instance's mask pixels, else of its projected joints (P, 24, 2)."""
    boxes = np.zeros((len(instance_ids), 4))
    for index, instance in enumerate(instance_ids):
        rows, columns = np.nonzero(mask == instance) if mask is not None else ((), ())
        if len(rows):
            boxes[index] = columns.min() - 0.5, rows.min() - 0.5, columns.max() + 0.5, rows.max() + 0.5
        else:
            u, v = joints_2d[index, :, 0], joints_2d[index, :, 1]
            boxes[index] = (np.clip(u.min(), -0.5, width - 0.5), np.clip(v.min(), -0.5, height - 0.5),
                            np.clip(u.max(), -0.5, width - 0.5), np.clip(v.max(), -0.5, height - 0.5))
    return boxes


def _image_record(topic: str, array: np.ndarray, encoding: str, codec: str | None, header: Header,
                  received: int, quality: int = 95) -> tuple[str, str, int, object]:
    """BagWriter.write's arguments for an image or mask: raw in `encoding` on the topic, or compressed with
    `codec` on `<topic>/compressed`."""
    if codec is None:
        message, msgtype = array_to_image(array, encoding), IMAGE_TYPE
    else:
        message, msgtype = array_to_compressed(array, codec, quality), COMPRESSED_IMAGE_TYPE
        topic += COMPRESSED_SUFFIX
    message.header = header
    return topic, msgtype, received, message


def write_recording(path: str | Path, frames: Iterable[RecordedFrame], body_model: BodyModel, topics: BagTopics,
                    storage: str = "mcap", image_codec: str | None = None, mask_codec: str | None = None,
                    image_quality: int = 95) -> int:
    """Writes the frames into a new bag at `path`; returns the number of frames written.

    image_codec / mask_codec: None writes raw images (rgb8) and masks (mono8) on the topics; "jpeg" or "png"
    writes CompressedImage on image_transport's `<topic>/compressed` instead (array_to_compressed; JPEG at
    image_quality), as a recording of a camera's compressed transport would hold them.
    """
    count = 0
    name = body_model.arrays.model_name
    with BagWriter(path, storage) as writer:
        for frame in frames:
            height, width = frame.image.shape[:2]
            header = header_at(frame.stamp_ns)
            received = frame.stamp_ns if frame.received_ns is None else frame.received_ns
            writer.write(topics.camera_info, CAMERA_INFO_TYPE, received,
                         camera_info_message(header, frame.intrinsics, width, height))
            writer.write(*_image_record(topics.image, np.ascontiguousarray(frame.image), "rgb8", image_codec, header,
                                        received, image_quality))
            if frame.mask is not None:
                writer.write(*_image_record(topics.mask, np.ascontiguousarray(frame.mask, dtype=np.uint8), "mono8",
                                            mask_codec, header, received))
            people = frame.people
            if people:
                betas = np.stack([person.betas for person in people])
                rotmats = np.stack([person.rotmats for person in people])
                translation = np.stack([person.translation for person in people])
                _, joints = body_model.forward(betas, rotmats, translation, with_vertices=False)
                with np.errstate(divide="ignore", invalid="ignore"):
                    projected = joints @ np.asarray(frame.intrinsics).T
                    joints_2d = projected[..., :2] / projected[..., 2:]
                boxes = _boxes(frame.mask, [person.instance_id for person in people], np.nan_to_num(joints_2d),
                               width, height)
                truth = smpl_body_array(header, name, np.array([person.track_id for person in people]), boxes, betas,
                                        matrix_to_axis_angle(rotmats), translation, joints, np.ones(len(people)),
                                        SmplBody.POSE_PER_FRAME)
            else:
                truth = smpl_body_array(header, name, np.zeros(0), np.zeros((0, 4)), np.zeros((0, NUM_BETAS)),
                                        np.zeros((0, NUM_JOINTS, 3)), np.zeros((0, 3)), np.zeros((0, NUM_JOINTS, 3)),
                                        np.zeros(0),
                                        SmplBody.POSE_PER_FRAME)
            writer.write(topics.ground_truth, BODIES_TYPE, received, truth)
            count += 1
    if not count:
        raise InputError(f"no frames to write into {path}")
    return count


def synthetic_clip_frames(seed, people: int, frames: int, body_model: BodyModel, start_ns: int = 0,
                          fps: float = 30.0, width: int = 640, height: int = 480) -> Iterable[RecordedFrame]:
    """A synthetic clip (fasthmr_model.data.clips) of width x height images as RecordedFrames, track ids =
    instance ids."""
    from fasthmr_model.data.clips import render_clip

    for index, rendered in enumerate(render_clip(seed, people, frames, body_model, width, height, fps)):
        truths = tuple(TruePerson(person.instance_id, person.instance_id, person.betas, person.rotmats,
                                  person.translation)
                       for person in rendered.people if person.visible_pixels > 0)
        yield RecordedFrame(start_ns + int(round(index * 1e9 / fps)), rendered.image, rendered.instance_mask,
                            rendered.camera.intrinsics, truths)


def dataset_frames(sequence, body_model: BodyModel, masks: str | Path | None = None) -> Iterable[RecordedFrame]:
    """A 3DPW / EMDB DatasetSequence (fasthmr_model.data.datasets) as RecordedFrames: the JPEG images, the
    masks (PNG instance masks named like the images in `masks`, else rendered from the ground-truth meshes,
    instance k = the frame's k-th person) and the ground truth."""
    from PIL import Image as PilImage

    from fasthmr_model.data.render import instance_mask

    for frame in sequence.frames:
        if not frame.image_path.is_file():
            raise InputError(f"the image {frame.image_path} of {sequence.name} does not exist; pass the sequence's "
                             "image folder with --images")
        with PilImage.open(frame.image_path) as picture:
            image = np.asarray(picture.convert("RGB"))
        height, width = image.shape[:2]
        people = tuple(TruePerson(person.track_id, index + 1, person.betas, person.rotmats, person.translation)
                       for index, person in enumerate(frame.people))
        if masks is not None:
            mask_path = Path(masks) / (frame.image_path.stem + ".png")
            with PilImage.open(mask_path) as picture:
                mask = np.asarray(picture)
        elif people:
            vertices, _ = body_model.forward(np.stack([p.betas for p in people]), np.stack([p.rotmats for p in people]),
                                             np.stack([p.translation for p in people]))
            mask = instance_mask(vertices, body_model.faces, sequence.intrinsics, width, height)
        else:
            mask = np.zeros((height, width), np.uint8)
        yield RecordedFrame(int(round(frame.index * 1e9 / sequence.fps)), image, mask, sequence.intrinsics, people)

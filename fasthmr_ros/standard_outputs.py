"""The node's outputs in the messages other ROS packages read: TF body frames (tf2_msgs/TFMessage on /tf),
people for navigation (people_msgs/People on /people, nav2's social layers), and the REP-155 body topics
(hri_msgs: /humans/bodies/tracked, /humans/bodies/<id>/roi and /skeleton2d), all under the input image's header.

Names: a track's TF frame is body_<track id> and its person's name the track id; its REP-155 id is b<track id>
(a ROS name token cannot start with a digit), whose frame body_b<track id> TF carries as well.

The geometry comes from the library (fasthmr_model.body_frames); this module only fills messages. TF and the
per-body REP-155 messages are written as CDR bytes from numpy (fasthmr_ros.marker_cdr's writer; rclpy publishes
bytes as they are) instead of a Python message object per transform and per keypoint, which were most of the
cost of building and serialising them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from hri_msgs.msg import IdsList
from people_msgs.msg import People, Person
from std_msgs.msg import Header

from fasthmr_model.body.rotations import matrix_to_quaternion
from fasthmr_model.body.skeleton import JOINT_NAMES, KinematicTree
from fasthmr_model.body_frames import joint_frames, normalised_image_points, rep103_rotations, skeleton_keypoints
from fasthmr_model.data.lens import CameraModel
from fasthmr_model.errors import InputError
from fasthmr_model.stream import StreamResult
from fasthmr_ros.marker_cdr import CdrWriter

# REP-155's topics for the bodies it tracks.
TRACKED_BODIES_TOPIC = "/humans/bodies/tracked"


def body_frame_id(track_id: int) -> str:
    """The TF frame of a tracked body (REP-155's name for it: body_<id>)."""
    return f"body_{int(track_id)}"


def joint_frame_id(track_id: int, joint: str) -> str:
    return f"{body_frame_id(track_id)}_{joint}"


def rep155_id(track_id: int) -> str:
    """A track's REP-155 body id: "b<track id>". The id names topics (/humans/bodies/<id>/roi), and a ROS name
    token cannot start with a digit, so the bare track id cannot be one."""
    return f"b{int(track_id)}"


def body_topics(track_id: int) -> tuple[str, str]:
    """REP-155's per-body topics of a track: (roi, skeleton2d)."""
    prefix = f"/humans/bodies/{rep155_id(track_id)}"
    return f"{prefix}/roi", f"{prefix}/skeleton2d"


@dataclass(frozen=True)
class StandardOutputsConfig:
    """The ROS parameters `outputs.*`.

    Args:
        joint_frames: also put every joint in TF, as body_<id>_<joint> (SMPL's joint names), children of body_<id>.
        rep155: publish the REP-155 body topics (/humans/bodies/...).
    """

    joint_frames: bool = False
    rep155: bool = True

    def __post_init__(self) -> None:
        for name in ("joint_frames", "rep155"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")


class Rep155Outputs(NamedTuple):
    """tracked: the REP-155 ids of the bodies in view; bodies: track id -> the CDR bytes of its
    (hri_msgs/NormalizedRegionOfInterest2D, hri_msgs/Skeleton2D)."""

    tracked: IdsList
    bodies: dict[int, tuple[bytes, bytes]]


_IDENTITY = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])  # translation, quaternion (x, y, z, w)


def body_quaternions(result: StreamResult) -> np.ndarray:
    """(B, 4) quaternions (x, y, z, w) of the bodies' REP-103 frames in the camera frame (TF and ~/people)."""
    return matrix_to_quaternion(rep103_rotations(result.rotmats[:, 0]))


def tf_message(header: Header, result: StreamResult, quaternions: np.ndarray, tree: KinematicTree | None,
               rep155: bool) -> bytes | None:
    """The CDR bytes of a tf2_msgs/TFMessage (None without bodies): body_<track id> per body, child of the image's
    frame, at the pelvis joint, REP-103 axes (x facing, y left, z up; quaternions (B, 4) from body_quaternions).
    With rep155, REP-155's frame of each body too (body_<REP-155 id>, the same frame: an identity child of
    body_<id>). With a KinematicTree, every joint's frame too (body_<id>_<joint>, child of body_<id>)."""
    track_ids = result.track_ids.tolist()
    if not track_ids:
        return None
    poses = np.concatenate([result.joints[:, 0], quaternions], axis=1)
    transforms = [(header.frame_id, body_frame_id(track), pose) for track, pose in zip(track_ids, poses)]
    if rep155:
        transforms += [(body_frame_id(track), f"body_{rep155_id(track)}", _IDENTITY) for track in track_ids]
    if tree is not None:
        rotations, offsets = joint_frames(result.rotmats, result.joints, tree)
        joint_poses = np.concatenate([offsets[:, 1:], matrix_to_quaternion(rotations[:, 1:])], axis=2)
        transforms += [(body_frame_id(track), joint_frame_id(track, name), pose)
                       for track, poses_of_body in zip(track_ids, joint_poses)
                       for name, pose in zip(JOINT_NAMES[1:], poses_of_body)]
    writer = CdrWriter()
    writer.count(len(transforms))
    for parent, child, pose in transforms:
        writer.pack("iI", header.stamp.sec, header.stamp.nanosec, alignment=4)
        writer.string(parent)
        writer.string(child)
        writer.align(8)
        writer.raw(np.ascontiguousarray(pose, "<f8").tobytes())  # Vector3 translation, Quaternion rotation
    return writer.getvalue()


def people_msgs_message(header: Header, result: StreamResult) -> People:
    """people_msgs/People: per body, name = the track id, position = the pelvis joint, velocity = its velocity (m/s;
    zero while the track is too new to have one), reliability = the body's confidence."""
    message = People(header=header)
    for track, position, velocity, confidence in zip(result.track_ids.tolist(), result.joints[:, 0].tolist(),
                                                     result.velocity.tolist(), result.confidence.tolist()):
        person = Person(name=str(track), reliability=float(confidence))
        person.position.x, person.position.y, person.position.z = position
        person.velocity.x, person.velocity.y, person.velocity.z = velocity
        message.people.append(person)
    return message


def _header_and_floats(header_bytes: bytes, values: np.ndarray) -> bytes:
    """CDR of a message that is a std_msgs/Header followed by float32 fields (or a fixed array of structs of
    float32 fields): the header's bytes, padding to 4, the values."""
    return header_bytes + bytes(-(len(header_bytes) - 4) % 4) + np.ascontiguousarray(values, "<f4").tobytes()


def rep155_messages(header: Header, result: StreamResult, camera: CameraModel, width: int,
                    height: int) -> Rep155Outputs:
    """IdsList of the bodies in view, and each body's normalised box (roi: xmin, ymin, xmax, ymax, c) and 2D
    skeleton (Skeleton2D's 18 keypoints (x, y, c) projected from the joints through the camera and its lens; c = the body's confidence, 0 for
    keypoints SMPL lacks or outside the image), as CDR bytes."""
    track_ids = result.track_ids.tolist()
    keypoints, keypoint_confidence = skeleton_keypoints(result.joints, camera, width, height, result.confidence)
    corners = normalised_image_points(result.boxes.reshape(-1, 2, 2), width, height).reshape(-1, 4).clip(0.0, 1.0)
    rois = np.concatenate([corners, result.confidence[:, None]], axis=1)  # (B, 5)
    skeletons = np.concatenate([keypoints, keypoint_confidence[..., None]], axis=2)  # (B, 18, 3)
    writer = CdrWriter()
    writer.header(header)
    header_bytes = writer.getvalue()
    bodies = {track: (_header_and_floats(header_bytes, rois[row]), _header_and_floats(header_bytes, skeletons[row]))
              for row, track in enumerate(track_ids)}
    return Rep155Outputs(IdsList(header=header, ids=[rep155_id(track) for track in track_ids]), bodies)

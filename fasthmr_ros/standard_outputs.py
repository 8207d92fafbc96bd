"""The node's outputs in the messages other ROS packages read: TF body frames (tf2_msgs/TFMessage on /tf),
people for navigation (people_msgs/People on /people, nav2's social layers), and the REP-155 body topics
(hri_msgs: /humans/bodies/tracked, /humans/bodies/<id>/roi and /skeleton2d), all under the input image's header.

Names: a track's TF frame is body_<track id> and its person's name the track id; its REP-155 id is b<track id>
(a ROS name token cannot start with a digit), whose frame body_b<track id> TF carries as well.

The geometry comes from the library (fasthmr_model.body_frames); this module only fills messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from geometry_msgs.msg import TransformStamped
from hri_msgs.msg import IdsList, NormalizedPointOfInterest2D, NormalizedRegionOfInterest2D, Skeleton2D
from people_msgs.msg import People, Person
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from fasthmr_model.body.rotations import matrix_to_quaternion
from fasthmr_model.body.skeleton import JOINT_NAMES, KinematicTree
from fasthmr_model.body_frames import joint_frames, normalised_image_points, rep103_rotations, skeleton_keypoints
from fasthmr_model.errors import InputError
from fasthmr_model.stream import StreamResult

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
    """tracked: the REP-155 ids of the bodies in view; bodies: track id -> (roi, skeleton2d) of each."""

    tracked: IdsList
    bodies: dict[int, tuple[NormalizedRegionOfInterest2D, Skeleton2D]]


def _transform(header: Header, child: str, translation, quaternion) -> TransformStamped:
    transform = TransformStamped(header=header, child_frame_id=child)
    transform.transform.translation.x, transform.transform.translation.y, transform.transform.translation.z = \
        translation
    rotation = transform.transform.rotation
    rotation.x, rotation.y, rotation.z, rotation.w = quaternion
    return transform


def tf_message(header: Header, result: StreamResult, tree: KinematicTree | None, rep155: bool) -> TFMessage:
    """body_<track id> per body: child of the image's frame, at the pelvis joint, REP-103 axes (x facing, y left,
    z up). With a KinematicTree, every joint's frame too (body_<id>_<joint>, child of body_<id>). With rep155,
    REP-155's frame of the body too (body_<REP-155 id>, the same frame: an identity child of body_<id>)."""
    positions = result.joints[:, 0].tolist()
    quaternions = matrix_to_quaternion(rep103_rotations(result.rotmats[:, 0])).tolist()
    track_ids = result.track_ids.tolist()
    transforms = [_transform(header, body_frame_id(track), position, quaternion)
                  for track, position, quaternion in zip(track_ids, positions, quaternions)]
    if rep155:
        transforms += [_transform(Header(stamp=header.stamp, frame_id=body_frame_id(track)),
                                  f"body_{rep155_id(track)}", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0))
                       for track in track_ids]
    if tree is not None and track_ids:
        rotations, offsets = joint_frames(result.rotmats, result.joints, tree)
        joint_quaternions = matrix_to_quaternion(rotations[:, 1:]).tolist()
        for track, joint_offsets, joint_rotations in zip(track_ids, offsets[:, 1:].tolist(), joint_quaternions):
            body_header = Header(stamp=header.stamp, frame_id=body_frame_id(track))
            transforms += [_transform(body_header, joint_frame_id(track, name), offset, quaternion)
                           for name, offset, quaternion in zip(JOINT_NAMES[1:], joint_offsets, joint_rotations)]
    return TFMessage(transforms=transforms)


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


def rep155_messages(header: Header, result: StreamResult, intrinsics: np.ndarray, width: int,
                    height: int) -> Rep155Outputs:
    """IdsList of the bodies in view, and each body's normalised box (roi) and 2D skeleton (Skeleton2D's 18
    keypoints projected from the joints; c = the body's confidence, 0 for keypoints SMPL lacks or outside the
    image)."""
    track_ids = result.track_ids.tolist()
    keypoints, keypoint_confidence = skeleton_keypoints(result.joints, intrinsics, width, height, result.confidence)
    corners = normalised_image_points(result.boxes.reshape(-1, 2, 2), width, height).reshape(-1, 4).clip(0.0, 1.0)
    bodies = {}
    for row, track in enumerate(track_ids):
        xmin, ymin, xmax, ymax = corners[row].tolist()
        roi = NormalizedRegionOfInterest2D(header=header, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax,
                                           c=float(result.confidence[row]))
        skeleton = Skeleton2D(header=header, skeleton=[
            NormalizedPointOfInterest2D(x=x, y=y, c=c)
            for (x, y), c in zip(keypoints[row].tolist(), keypoint_confidence[row].tolist())])
        bodies[track] = (roi, skeleton)
    return Rep155Outputs(IdsList(header=header, ids=[rep155_id(track) for track in track_ids]), bodies)

"""The node's output messages from one frame's results: SMPL bodies, people poses for navigation, and
RViz markers (skeletons every frame, meshes when asked), all under the input image's header.

Kilted's generated message classes do not check the length of fixed-size arrays (a wrong length is
padded or cut when serialised), so every fixed-size field is checked here before it is filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration
from fasthmr_msgs.msg import SmplBody, SmplBodyArray
from geometry_msgs.msg import Pose, PoseArray
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from fasthmr_model.body.skeleton import NUM_BETAS, NUM_JOINTS
from fasthmr_model.errors import InputError
from fasthmr_model.pipeline import FrameResult
from fasthmr_model.stream import StreamResult
from fasthmr_ros.marker_cdr import serialize_marker_array

SKELETON_NAMESPACE = "skeleton"
MESH_NAMESPACE = "mesh"
# Marker ids are int32; track ids count up from 1 and wrap here after two billion tracks.
_MARKER_ID_LIMIT = 2**31
# Tableau's ten categorical colours: neighbouring track ids get distinct colours.
TRACK_COLOURS = np.array([
    (0.12, 0.47, 0.71), (1.00, 0.50, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16), (0.58, 0.40, 0.74),
    (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.50, 0.50, 0.50), (0.74, 0.74, 0.13), (0.09, 0.75, 0.81),
])


class OutputShapeError(RuntimeError):
    """A result array does not have the size its message field needs (a bug, not bad input)."""


def _fixed(values: np.ndarray, size: int, field: str) -> np.ndarray:
    """values flattened to float32 with exactly `size` entries, for a fixed-size message field."""
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    if flat.size != size:
        raise OutputShapeError(f"{field} needs {size} values, the frame result has {flat.size}")
    return flat


def smpl_body_array(header: Header, body_model_name: str, track_ids: np.ndarray, boxes: np.ndarray,
                    betas: np.ndarray, axis_angle: np.ndarray, translation: np.ndarray, joints: np.ndarray,
                    confidence: np.ndarray, pose_source, velocity: np.ndarray | None = None,
                    velocity_valid: np.ndarray | None = None) -> SmplBodyArray:
    """SmplBodyArray of B bodies: track_ids (B,); boxes (B, 4) pixel edges (x0, y0, x1, y1); betas (B, 10);
    axis_angle (B, 24, 3); translation (B, 3); joints (B, 24, 3); confidence (B,); pose_source: one value for
    all bodies or (B,); velocity (B, 3) m/s and velocity_valid (B,), or None (zero, not valid).
    Both the node's results and ground truth written into bags go through here."""
    message = SmplBodyArray(header=header, body_model=body_model_name)
    pose_source = np.broadcast_to(np.asarray(pose_source), (len(track_ids),))
    for index in range(len(track_ids)):
        body = SmplBody()
        body.track_id = int(track_ids[index])
        body.confidence = float(confidence[index])
        x0, y0, x1, y1 = boxes[index]  # pixel edges: pixel u spans [u - 0.5, u + 0.5]
        body.box.x_offset, body.box.y_offset = int(round(x0 + 0.5)), int(round(y0 + 0.5))
        body.box.width, body.box.height = int(round(x1 - x0)), int(round(y1 - y0))
        body.betas = _fixed(betas[index], NUM_BETAS, "betas")
        body.pose = _fixed(axis_angle[index], 3 * NUM_JOINTS, "pose")
        body.joints = _fixed(joints[index], 3 * NUM_JOINTS, "joints")
        body.translation.x, body.translation.y, body.translation.z = (float(v) for v in translation[index])
        body.pose_source = int(pose_source[index])
        if velocity is not None:
            body.velocity.x, body.velocity.y, body.velocity.z = (float(v) for v in velocity[index])
            body.velocity_valid = bool(velocity_valid[index])
        message.bodies.append(body)
    return message


def bodies_message(header: Header, body_model_name: str, result: StreamResult) -> SmplBodyArray:
    """SmplBodyArray of a stream result (track ids, the published pose and its source, the confidence, the
    velocity)."""
    return smpl_body_array(header, body_model_name, result.track_ids, result.boxes, result.betas, result.axis_angle,
                           result.translation, result.joints, result.confidence, result.pose_source,
                           result.velocity, result.velocity_valid)


def people_message(header: Header, result: FrameResult, quaternions: np.ndarray) -> PoseArray:
    """PoseArray of each person's body frame for navigation, in the camera optical frame: the pelvis joint's
    position, and REP-103 body axes (x facing forward, y to the person's left, z up) as the TF frames body_<id>:
    quaternions (B, 4) from fasthmr_ros.standard_outputs.body_quaternions."""
    message = PoseArray(header=header)
    for position, quaternion in zip(result.joints[:, 0].tolist(), quaternions.tolist()):
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = position
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = quaternion
        message.poses.append(pose)
    return message


@dataclass(frozen=True)
class MarkerConfig:
    """Args:
        mesh_rate: meshes per second per track (by image stamps) in the markers; 0 = never. Skeletons come
            every frame. Each frame builds at most one due mesh (the track that waited longest) and the
            meshes of tracks that waited two periods, so the tracks' meshes come on different frames.
        line_width: skeleton line width (m).
        mesh_alpha: mesh opacity in [0, 1].
        lifetime: seconds a skeleton stays in RViz unless a newer one replaces it (0 = until deleted), so that a
            node that is killed leaves no ghosts; a mesh lives one mesh period (1 / mesh_rate) longer.
    """

    mesh_rate: float = 2.0
    line_width: float = 0.02
    mesh_alpha: float = 0.8
    lifetime: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.mesh_rate <= 1000.0:
            raise InputError(f"mesh_rate must be in [0, 1000] Hz, got {self.mesh_rate}")
        if not 0.0 < self.line_width <= 1.0:
            raise InputError(f"line_width must be in (0, 1] m, got {self.line_width}")
        if not 0.0 <= self.mesh_alpha <= 1.0:
            raise InputError(f"mesh_alpha must be in [0, 1], got {self.mesh_alpha}")
        if not 0.0 <= self.lifetime <= 60.0:
            raise InputError(f"lifetime must be in [0, 60] s, got {self.lifetime}")

    def marker_lifetime(self, namespace: str) -> float:
        """Seconds a marker of the namespace lives (0 = until deleted)."""
        if self.lifetime == 0.0 or namespace != MESH_NAMESPACE or self.mesh_rate == 0.0:
            return self.lifetime
        return self.lifetime + 1.0 / self.mesh_rate


class MarkerBuilder:
    """RViz markers of one body model: a LINE_LIST skeleton (namespace "skeleton") and a TRIANGLE_LIST mesh
    (namespace "mesh") per track, with the track id as the marker id in both. Geometry is gathered with
    numpy and serialised without per-point Python objects (fasthmr_ros.marker_cdr).

    faces (F, 3) and parents (24,) come from the body model.
    """

    def __init__(self, faces: np.ndarray, parents: np.ndarray, config: MarkerConfig = MarkerConfig()) -> None:
        self.faces = np.asarray(faces, dtype=np.int64)
        parents = np.asarray(parents)
        # Bone k runs from joint bone_joints[k, 0] to its parent bone_joints[k, 1]; the root has no bone.
        children = np.flatnonzero(parents >= 0)
        self.bone_joints = np.stack([children, parents[children]], axis=1)
        self.config = config

    def _marker(self, header: Header, namespace: str, track_id: int, marker_type: int, alpha: float) -> Marker:
        marker = Marker(header=header, ns=namespace, id=int(track_id) % _MARKER_ID_LIMIT, type=marker_type,
                        action=Marker.ADD)
        marker.pose.orientation.w = 1.0
        if marker_type == Marker.LINE_LIST:
            marker.scale.x = self.config.line_width
        else:
            marker.scale.x = marker.scale.y = marker.scale.z = 1.0
        marker.color.r, marker.color.g, marker.color.b = (float(c) for c in TRACK_COLOURS[track_id % len(TRACK_COLOURS)])
        marker.color.a = alpha
        nanoseconds = int(round(self.config.marker_lifetime(namespace) * 1e9))
        marker.lifetime = Duration(sec=nanoseconds // 10**9, nanosec=nanoseconds % 10**9)
        return marker

    def build(self, header: Header, track_ids: np.ndarray, joints: np.ndarray, mesh_track_ids: np.ndarray,
              mesh_vertices: np.ndarray | None, delete_all_first: bool) -> bytes:
        """A serialised MarkerArray: optionally a DELETEALL, then every track's skeleton, then the meshes of
        the tracks mesh_track_ids (M,) (M may be 0). track_ids (B,), joints (B, 24, 3), mesh_vertices
        (M, V, 3) or None when M is 0; camera frame, m."""
        markers, points = [], []
        if delete_all_first:
            markers.append(delete_all_marker(header))
            points.append(None)
        bones = joints[:, self.bone_joints]  # (B, bones, 2, 3): consecutive point pairs form the lines
        for index, track_id in enumerate(track_ids):
            markers.append(self._marker(header, SKELETON_NAMESPACE, track_id, Marker.LINE_LIST, 1.0))
            points.append(bones[index].reshape(-1, 3))
        if len(mesh_track_ids):
            triangles = mesh_vertices[:, self.faces]  # (M, F, 3 corners, 3)
            for index, track_id in enumerate(mesh_track_ids):
                markers.append(self._marker(header, MESH_NAMESPACE, track_id, Marker.TRIANGLE_LIST,
                                            self.config.mesh_alpha))
                points.append(triangles[index].reshape(-1, 3))
        return serialize_marker_array(markers, points)


def delete_all_marker(header: Header) -> Marker:
    """A marker that removes every marker of the display (RViz: DELETEALL)."""
    return Marker(header=header, action=Marker.DELETEALL)

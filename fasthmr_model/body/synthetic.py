"""The synthetic body: an SMPL-format body model generated deterministically by code.

It is NOT SMPL: it is a low-poly mannequin built here, stored with SMPL's keys and joint tree so that
everything that reads an SMPL file (our loader, smplx) reads it too. Its name in files and metadata is
"fasthmr-synthetic-body-v1".

How it is made:
- Eight closed tubes (torso, neck + head, two arms with mitten hands, two legs, two feet), each a
  smooth curve through a few nodes with an elliptical cross-section and ellipsoidal end caps, in one
  mesh. T-pose, y up, the body faces +z, left at +x, metres, about 1.74 m tall.
- Each of SMPL's 24 joints is the centre of one ring of its tube, so the joint regressor (24, V) is the
  mean of that ring's vertices: non-negative, rows summing to 1, exact at rest and for every shape.
- Skinning weights follow the position along each tube: a vertex belongs to the joint that rotates its
  bone segment, blended with a smoothstep across each joint.
- Ten shape blend shapes, each one standard deviation of one body proportion (stature, girth, limb
  lengths, shoulder and hip width, belly, limb girth, head size), so betas ~ N(0, 1) give plausible
  bodies. Pose correctives are zero.
"""

import dataclasses
import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from fasthmr_model.body.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_BETAS, NUM_JOINTS, NUM_POSE_BASIS, PARENTS

MODEL_NAME = "fasthmr-synthetic-body-v1"

# Tube rings are spaced about this far apart along the body (metres, at the mean shape).
_STATION_SPACING = 0.042
# Rings in each ellipsoidal end cap, between the tube's last ring and the pole.
_CAP_RINGS = 2
# Skinning weights blend over +-this arc length around a joint (metres), or over this fraction of
# the shorter neighbouring bone if that is less (below one half, so two blends never overlap).
_BLEND_HALF_WIDTH = 0.08
_BLEND_FRACTION_OF_BONE = 0.4
# Zip timestamps are pinned so that the same arrays always give the same file bytes.
_ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


@dataclasses.dataclass(frozen=True)
class _Proportions:
    """Body proportions of one shape: scale factors (1 = mean body) and the belly's extra depth."""

    stature: float = 1.0
    torso_girth: float = 1.0
    leg_length: float = 1.0
    torso_length: float = 1.0
    arm_length: float = 1.0
    shoulder_width: float = 1.0
    hip_width: float = 1.0
    belly: float = 0.0
    limb_girth: float = 1.0
    head_size: float = 1.0


@dataclasses.dataclass(frozen=True)
class ShapeComponent:
    """One shape blend shape: beta = +1 changes proportion `name` by `step` from the mean body."""

    name: str
    step: float
    meaning: str


# In beta order. One unit of a beta is one (rough) standard deviation of adult bodies.
SHAPE_COMPONENTS = (
    ShapeComponent("stature", 0.045, "overall size, about 7.5 cm of height per unit"),
    ShapeComponent("torso_girth", 0.10, "width and depth of chest, waist and hips (+10% per unit)"),
    ShapeComponent("leg_length", 0.05, "thigh and shin length (+5% per unit)"),
    ShapeComponent("torso_length", 0.05, "pelvis-to-neck length (+5% per unit)"),
    ShapeComponent("arm_length", 0.05, "upper arm, forearm and hand length (+5% per unit)"),
    ShapeComponent("shoulder_width", 0.07, "collar and shoulder spread (+7% per unit)"),
    ShapeComponent("hip_width", 0.08, "hip joint spread and pelvis width (+8% per unit)"),
    ShapeComponent("belly", 0.02, "forward bulge of the abdomen (+2 cm per unit)"),
    ShapeComponent("limb_girth", 0.10, "thickness of arms and legs (+10% per unit)"),
    ShapeComponent("head_size", 0.05, "head size (+5% per unit)"),
)
assert len(SHAPE_COMPONENTS) == NUM_BETAS

# Rest joints of the mean body, left side and midline (the right side mirrors x). Shaped like
# SMPL's T-pose joints: pelvis 0.23 m below the origin, soles near y = -1.20, crown near y = 0.54.
_MEAN_JOINTS = {
    "pelvis": (0.0, -0.23, 0.0),
    "spine1": (0.0, -0.11, -0.01),
    "spine2": (0.0, 0.02, -0.005),
    "spine3": (0.0, 0.08, 0.01),
    "neck": (0.0, 0.29, -0.015),
    "head": (0.0, 0.36, 0.03),
    "left_hip": (0.08, -0.32, 0.0),
    "left_knee": (0.10, -0.70, 0.005),
    "left_ankle": (0.11, -1.11, -0.035),
    "left_foot": (0.125, -1.175, 0.095),
    "left_collar": (0.075, 0.20, -0.005),
    "left_shoulder": (0.18, 0.225, -0.015),
    "left_elbow": (0.435, 0.215, -0.03),
    "left_wrist": (0.685, 0.215, -0.02),
    "left_hand": (0.77, 0.205, -0.02),
}


def _mirrored_name(name):
    """The joint on the other side of the body ('left_hip' <-> 'right_hip'; midline unchanged)."""
    if name.startswith("left_"):
        return "right_" + name[len("left_"):]
    if name.startswith("right_"):
        return "left_" + name[len("right_"):]
    return name


def _mean_joint_table():
    """(24, 3) rest joints of the mean body, in JOINT_NAMES order."""
    joints = np.zeros((NUM_JOINTS, 3))
    for name, position in _MEAN_JOINTS.items():
        joints[JOINT_INDEX[name]] = position
        mirrored = np.array(position) * (-1.0, 1.0, 1.0)
        joints[JOINT_INDEX[_mirrored_name(name)]] = mirrored
    return joints


def _rest_joints(proportions):
    """(24, 3) rest joints for the given proportions.

    Each joint's offset from its parent is scaled by the proportions of the bone it ends, then the
    whole body is scaled by stature about the origin.
    """
    mean = _mean_joint_table()
    offset_scale = np.ones((NUM_JOINTS, 3))
    for side in ("left", "right"):
        offset_scale[JOINT_INDEX[f"{side}_hip"], 0] = proportions.hip_width
        for joint in ("knee", "ankle"):
            offset_scale[JOINT_INDEX[f"{side}_{joint}"]] = proportions.leg_length
        for joint in ("collar", "shoulder"):
            offset_scale[JOINT_INDEX[f"{side}_{joint}"], 0] = proportions.shoulder_width
        for joint in ("elbow", "wrist", "hand"):
            offset_scale[JOINT_INDEX[f"{side}_{joint}"]] = proportions.arm_length
    for joint in ("spine1", "spine2", "spine3", "neck"):
        offset_scale[JOINT_INDEX[joint]] = proportions.torso_length

    joints = np.zeros_like(mean)
    joints[0] = mean[0]
    for joint in range(1, NUM_JOINTS):
        parent = PARENTS[joint]
        joints[joint] = joints[parent] + offset_scale[joint] * (mean[joint] - mean[parent])
    return joints * proportions.stature


@dataclasses.dataclass(frozen=True)
class _Node:
    """A point a tube passes through: its centre (3,), its cross-section's half-extents along the
    section axes (u, v), and the joint whose ring it is (None for shaping nodes)."""

    centre: np.ndarray
    radii: tuple
    joint: int | None = None


@dataclasses.dataclass(frozen=True)
class _Tube:
    """A closed tube through `nodes`. The section's u axis is `reference_axis` made perpendicular to
    the tube; `first_owner` is the joint that moves the tube before its first joint node; the caps
    reach `start_cap` / `end_cap` metres beyond the end nodes."""

    name: str
    nodes: tuple
    reference_axis: tuple
    ring_size: int
    first_owner: int
    start_cap: float
    end_cap: float


def _mirror_tube(tube):
    """The right-side twin of a left-side tube."""
    nodes = tuple(
        _Node(
            centre=node.centre * (-1.0, 1.0, 1.0),
            radii=node.radii,
            joint=None if node.joint is None else JOINT_INDEX[_mirrored_name(JOINT_NAMES[node.joint])],
        )
        for node in tube.nodes
    )
    return dataclasses.replace(
        tube,
        name=_mirrored_name(tube.name),
        nodes=nodes,
        first_owner=JOINT_INDEX[_mirrored_name(JOINT_NAMES[tube.first_owner])],
    )


def _tubes(proportions):
    """The eight tubes of the body for the given proportions, in a fixed order.

    The numbers below are the mannequin's design, in metres of the mean body: node offsets from
    joints, and section radii (half-extents along u, v) before the girth and stature factors.
    """
    joints = _rest_joints(proportions)
    scale = proportions.stature

    def at(name):
        return joints[JOINT_INDEX[name]]

    def lerp(start, end, fraction):
        return at(start) + fraction * (at(end) - at(start))

    def node(centre, radii, joint=None, girth=1.0):
        return _Node(
            centre=np.asarray(centre, dtype=np.float64),
            radii=(radii[0] * girth * scale, radii[1] * girth * scale),
            joint=None if joint is None else JOINT_INDEX[joint],
        )

    torso_girth = proportions.torso_girth
    limb = proportions.limb_girth
    hips = proportions.hip_width
    shoulders = proportions.shoulder_width
    head = proportions.head_size
    x_axis, y_axis = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)

    # The belly pushes the front of the abdomen forward and leaves the back where it is.
    belly = proportions.belly
    abdomen = 0.5 * (at("spine1") + at("spine2")) + np.array((0.0, 0.0, 0.5 * belly)) * scale
    torso = _Tube(
        name="torso",
        nodes=(
            node(at("pelvis") + np.array((0.0, -0.105, 0.0)) * scale, (0.13 * hips, 0.09), girth=torso_girth),
            node(at("pelvis"), (0.165 * hips, 0.105), "pelvis", girth=torso_girth),
            node(at("spine1"), (0.14, 0.095), "spine1", girth=torso_girth),
            node(abdomen, (0.142, 0.098 + 0.5 * belly), girth=torso_girth),
            node(at("spine2"), (0.145, 0.10), "spine2", girth=torso_girth),
            node(at("spine3"), (0.155, 0.11), "spine3", girth=torso_girth),
            node(at("spine3") + np.array((0.0, 0.12, -0.015)) * scale, (0.165 * shoulders, 0.095), girth=torso_girth),
            node(at("neck") + np.array((0.0, -0.02, 0.0)) * scale, (0.09 * shoulders, 0.06), girth=torso_girth),
        ),
        reference_axis=x_axis,
        ring_size=24,
        first_owner=JOINT_INDEX["pelvis"],
        start_cap=0.07 * scale,
        end_cap=0.03 * scale,
    )

    def above_head(offset):
        return at("head") + np.asarray(offset) * head * scale

    neck_and_head = _Tube(
        name="neck_and_head",
        nodes=(
            node(at("neck") + np.array((0.0, -0.07, 0.0)) * scale, (0.055, 0.055)),
            node(at("neck"), (0.055, 0.058), "neck"),
            node(at("head"), (0.058, 0.062), "head"),
            node(above_head((0.0, 0.05, 0.015)), (0.072, 0.085), girth=head),
            node(above_head((0.0, 0.11, 0.0)), (0.08, 0.095), girth=head),
            node(above_head((0.0, 0.145, -0.01)), (0.06, 0.075), girth=head),
        ),
        reference_axis=x_axis,
        ring_size=16,
        first_owner=JOINT_INDEX["spine3"],
        start_cap=0.03 * scale,
        end_cap=0.03 * head * scale,
    )

    left_leg = _Tube(
        name="left_leg",
        nodes=(
            node(at("left_hip") + np.array((-0.01, 0.12, 0.0)) * scale, (0.068, 0.08), girth=limb),
            node(at("left_hip"), (0.075, 0.088), "left_hip", girth=limb),
            node(lerp("left_hip", "left_knee", 0.45), (0.066, 0.072), girth=limb),
            node(at("left_knee"), (0.05, 0.053), "left_knee", girth=limb),
            node(lerp("left_knee", "left_ankle", 0.3) + np.array((0.0, 0.0, -0.01)) * scale, (0.052, 0.058),
                 girth=limb),
            node(at("left_ankle"), (0.034, 0.038), "left_ankle", girth=limb),
            node(at("left_ankle") + np.array((0.0, -0.035, 0.0)) * scale, (0.032, 0.036), girth=limb),
        ),
        reference_axis=x_axis,
        ring_size=16,
        first_owner=JOINT_INDEX["pelvis"],
        start_cap=0.03 * scale,
        end_cap=0.02 * scale,
    )

    ankle = at("left_ankle")
    left_foot = _Tube(
        name="left_foot",
        nodes=(
            node(ankle + np.array((0.0, -0.05, -0.055)) * scale, (0.033, 0.035)),
            node(ankle + np.array((0.005, -0.055, 0.04)) * scale, (0.042, 0.035)),
            node(at("left_foot"), (0.045, 0.022), "left_foot"),
            node(at("left_foot") + np.array((0.005, -0.005, 0.07)) * scale, (0.038, 0.016)),
        ),
        reference_axis=x_axis,
        ring_size=12,
        first_owner=JOINT_INDEX["left_ankle"],
        start_cap=0.025 * scale,
        end_cap=0.02 * scale,
    )

    # Arm sections: u is vertical (thickness), v is front-back (width of wrist and palm).
    left_arm = _Tube(
        name="left_arm",
        nodes=(
            node(at("left_collar") + np.array((-0.04, -0.005, 0.0)) * scale, (0.05, 0.05), girth=limb),
            node(at("left_collar"), (0.055, 0.055), "left_collar", girth=limb),
            node(at("left_shoulder"), (0.058, 0.055), "left_shoulder", girth=limb),
            node(lerp("left_shoulder", "left_elbow", 0.45), (0.045, 0.047), girth=limb),
            node(at("left_elbow"), (0.036, 0.038), "left_elbow", girth=limb),
            node(lerp("left_elbow", "left_wrist", 0.3), (0.038, 0.042), girth=limb),
            node(at("left_wrist"), (0.02, 0.029), "left_wrist"),
            node(lerp("left_wrist", "left_hand", 0.5), (0.016, 0.042)),
            node(at("left_hand"), (0.013, 0.043), "left_hand"),
            node(at("left_hand") + np.array((0.05, -0.005, 0.0)) * proportions.arm_length * scale, (0.011, 0.038)),
            node(at("left_hand") + np.array((0.09, -0.01, 0.0)) * proportions.arm_length * scale, (0.009, 0.03)),
        ),
        reference_axis=y_axis,
        ring_size=14,
        first_owner=JOINT_INDEX["spine3"],
        start_cap=0.03 * scale,
        end_cap=0.015 * scale,
    )

    return (
        torso,
        neck_and_head,
        left_arm,
        _mirror_tube(left_arm),
        left_leg,
        _mirror_tube(left_leg),
        left_foot,
        _mirror_tube(left_foot),
    )


def _catmull_rom(points, segment, fraction):
    """Point and derivative of the uniform Catmull-Rom curve through `points` (N, D) on segment
    `segment` (from point i to i+1) at `fraction` in [0, 1]. The ends are extended linearly."""
    count = len(points)

    def point(index):
        if index < 0:
            return 2.0 * points[0] - points[1]
        if index >= count:
            return 2.0 * points[-1] - points[-2]
        return points[index]

    p0, p1, p2, p3 = (point(segment + k) for k in (-1, 0, 1, 2))
    t = fraction
    linear, quadratic, cubic = p2 - p0, 2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3, 3.0 * p1 - p0 - 3.0 * p2 + p3
    value = 0.5 * (2.0 * p1 + linear * t + quadratic * t**2 + cubic * t**3)
    derivative = 0.5 * (linear + 2.0 * quadratic * t + 3.0 * cubic * t**2)
    return value, derivative


def _stations_per_segment(tube):
    """Number of rings from each node up to (not including) the next, from the node spacing."""
    centres = np.array([node.centre for node in tube.nodes])
    lengths = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    return tuple(max(1, int(round(length / _STATION_SPACING))) for length in lengths)


@dataclasses.dataclass(frozen=True)
class _TubeSurface:
    """One tessellated tube. rings (R, n, 3) run from the start cap to the end cap; poles (2, 3) close
    them; ring_arc (R,) is each ring's arc position along the node polyline (negative in the start
    cap); joint_rings maps a joint to the index of the ring centred on it."""

    rings: np.ndarray
    poles: np.ndarray
    ring_arc: np.ndarray
    pole_arc: tuple
    joint_rings: dict


def _tessellate(tube, stations_per_segment):
    """Rings of a tube: a Catmull-Rom curve through the nodes, elliptical sections, ellipsoidal caps."""
    centres = np.array([node.centre for node in tube.nodes])
    radii = np.array([node.radii for node in tube.nodes])
    chord_lengths = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    node_arc = np.concatenate([[0.0], np.cumsum(chord_lengths)])

    station_centres, station_tangents, station_radii, station_arc = [], [], [], []
    joint_rings = {}
    for segment, count in enumerate(stations_per_segment):
        for step in range(count):
            fraction = step / count
            centre, tangent = _catmull_rom(centres, segment, fraction)
            section, _ = _catmull_rom(radii, segment, fraction)
            if step == 0 and tube.nodes[segment].joint is not None:
                joint_rings[tube.nodes[segment].joint] = len(station_centres)
            station_centres.append(centre)
            station_tangents.append(tangent)
            station_radii.append(section)
            station_arc.append(node_arc[segment] + fraction * chord_lengths[segment])
    last = len(tube.nodes) - 1
    centre, tangent = _catmull_rom(centres, last - 1, 1.0)
    station_centres.append(centre)
    station_tangents.append(tangent)
    station_radii.append(radii[last])
    station_arc.append(node_arc[last])

    station_centres = np.array(station_centres)
    tangents = np.array(station_tangents)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    station_radii = np.array(station_radii)
    station_arc = np.array(station_arc)

    # Ellipsoidal caps: rings shrink as cos(theta) while moving sin(theta) * cap beyond the end.
    cap_angles = np.arange(1, _CAP_RINGS + 1) * (0.5 * np.pi / (_CAP_RINGS + 1))

    def cap(station, direction, length, angles):
        """(centre, tangent, radii, arc) of cap sections beyond `station`, in the order of `angles`."""
        return [
            (
                station_centres[station] + direction * length * np.sin(angle) * tangents[station],
                tangents[station],
                station_radii[station] * np.cos(angle),
                station_arc[station] + direction * length * np.sin(angle),
            )
            for angle in angles
        ]

    body = list(zip(station_centres, tangents, station_radii, station_arc))
    sections = cap(0, -1.0, tube.start_cap, cap_angles[::-1]) + body + cap(-1, 1.0, tube.end_cap, cap_angles)

    angles = 2.0 * np.pi * np.arange(tube.ring_size) / tube.ring_size
    reference = np.asarray(tube.reference_axis, dtype=np.float64)
    rings, ring_arc = [], []
    for centre, tangent, (radius_u, radius_v), arc in sections:
        # (u, v, tangent) is right-handed, so rings wind counter-clockwise about the tangent and the
        # faces built in _tube_faces point outwards.
        axis_u = reference - np.dot(reference, tangent) * tangent
        axis_u /= np.linalg.norm(axis_u)
        axis_v = np.cross(tangent, axis_u)
        rings.append(centre + radius_u * np.cos(angles)[:, None] * axis_u + radius_v * np.sin(angles)[:, None] * axis_v)
        ring_arc.append(arc)

    poles = np.array([
        station_centres[0] - tangents[0] * tube.start_cap,
        station_centres[-1] + tangents[-1] * tube.end_cap,
    ])
    joint_rings = {joint: ring + _CAP_RINGS for joint, ring in joint_rings.items()}
    return _TubeSurface(
        rings=np.array(rings),
        poles=poles,
        ring_arc=np.array(ring_arc),
        pole_arc=(-tube.start_cap, station_arc[-1] + tube.end_cap),
        joint_rings=joint_rings,
    )


def _tube_faces(ring_count, ring_size, first_vertex):
    """(F, 3) outward triangles of a tube laid out as [start pole, rings..., end pole]."""
    start_pole = first_vertex
    end_pole = first_vertex + 1 + ring_count * ring_size

    def ring_vertex(ring, k):
        return first_vertex + 1 + ring * ring_size + (k % ring_size)

    faces = []
    for k in range(ring_size):
        faces.append((start_pole, ring_vertex(0, k + 1), ring_vertex(0, k)))
    for ring in range(ring_count - 1):
        for k in range(ring_size):
            a, b = ring_vertex(ring, k), ring_vertex(ring, k + 1)
            c, d = ring_vertex(ring + 1, k + 1), ring_vertex(ring + 1, k)
            faces.append((a, b, c))
            faces.append((a, c, d))
    for k in range(ring_size):
        faces.append((ring_vertex(ring_count - 1, k), ring_vertex(ring_count - 1, k + 1), end_pole))
    return faces


def _smoothstep(values):
    """0 below 0, 1 above 1, 3x^2 - 2x^3 between: continuous slope at both ends."""
    values = np.clip(values, 0.0, 1.0)
    return values * values * (3.0 - 2.0 * values)


def _tube_weights(tube, arc):
    """(len(arc), 24) skinning weights of points at arc positions `arc` along a tube.

    Before the first joint node the tube follows `first_owner`; past each joint node it follows
    that joint, blended by a smoothstep over +-_BLEND_HALF_WIDTH around the node, narrowed on
    short bones so that the blends of neighbouring joints never overlap.
    """
    centres = np.array([node.centre for node in tube.nodes])
    node_arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(centres, axis=0), axis=1))])
    joint_arcs = [node_arc[index] for index, node in enumerate(tube.nodes) if node.joint is not None]
    weights = np.zeros((len(arc), NUM_JOINTS))
    weights[:, tube.first_owner] = 1.0
    for index, node in enumerate(tube.nodes):
        if node.joint is None:
            continue
        bone_lengths = [abs(node_arc[index] - other) for other in joint_arcs if other != node_arc[index]]
        half_width = min([_BLEND_HALF_WIDTH] + [_BLEND_FRACTION_OF_BONE * length for length in bone_lengths])
        switch = _smoothstep((arc - node_arc[index] + half_width) / (2.0 * half_width))
        weights *= (1.0 - switch)[:, None]
        weights[:, node.joint] += switch
    return weights


def _surfaces(proportions, stations):
    """Tessellated tubes for `proportions` with the ring layout `stations` (one tuple per tube)."""
    return [_tessellate(tube, counts) for tube, counts in zip(_tubes(proportions), stations)]


def _vertices(surfaces):
    """(V, 3) vertices of all tubes, each laid out as [start pole, rings..., end pole]."""
    blocks = []
    for surface in surfaces:
        blocks.extend([surface.poles[:1], surface.rings.reshape(-1, 3), surface.poles[1:]])
    return np.concatenate(blocks, axis=0)


def build_synthetic_body():
    """The synthetic body's arrays, under SMPL's key names.

    Returns a dict of numpy arrays: v_template (V, 3) float64, f (F, 3) int64, J_regressor (24, V)
    float64, weights (V, 24) float64, shapedirs (V, 3, 10) float64, posedirs (V, 3, 207) float64
    (zero), kintree_table (2, 24) int64 (row 0 parents with -1 at the root, row 1 joint ids), and
    model_name, a 0-d string array "fasthmr-synthetic-body-v1". Deterministic: no randomness.
    """
    mean = _Proportions()
    tubes = _tubes(mean)
    stations = [_stations_per_segment(tube) for tube in tubes]
    surfaces = _surfaces(mean, stations)
    v_template = _vertices(surfaces)
    vertex_count = len(v_template)

    faces, weights = [], []
    regressor = np.zeros((NUM_JOINTS, vertex_count))
    first_vertex = 0
    for tube, surface in zip(tubes, surfaces):
        ring_count, ring_size = surface.rings.shape[:2]
        faces.extend(_tube_faces(ring_count, ring_size, first_vertex))
        vertex_arc = np.concatenate(
            [[surface.pole_arc[0]], np.repeat(surface.ring_arc, ring_size), [surface.pole_arc[1]]]
        )
        weights.append(_tube_weights(tube, vertex_arc))
        for joint, ring in surface.joint_rings.items():
            ring_start = first_vertex + 1 + ring * ring_size
            regressor[joint, ring_start:ring_start + ring_size] = 1.0 / ring_size
        first_vertex += 2 + ring_count * ring_size

    shapedirs = np.zeros((vertex_count, 3, NUM_BETAS))
    for beta, component in enumerate(SHAPE_COMPONENTS):
        stepped = dataclasses.replace(mean, **{component.name: getattr(mean, component.name) + component.step})
        shapedirs[:, :, beta] = _vertices(_surfaces(stepped, stations)) - v_template

    kintree_table = np.array([PARENTS, range(NUM_JOINTS)], dtype=np.int64)
    return {
        "v_template": v_template,
        "f": np.array(faces, dtype=np.int64),
        "J_regressor": regressor,
        "weights": np.concatenate(weights, axis=0),
        "shapedirs": shapedirs,
        "posedirs": np.zeros((vertex_count, 3, NUM_POSE_BASIS)),
        "kintree_table": kintree_table,
        "model_name": np.array(MODEL_NAME),
    }


def write_npz_atomically(path, arrays):
    """Writes `arrays` (dict name -> array) to the .npz file `path`, byte-reproducibly and atomically.

    np.savez stamps each member with the current time; here every member gets a fixed timestamp, so
    equal arrays give equal bytes. The file is written beside `path` and moved over it at the end,
    so a reader never sees a half-written file. Returns the path as a pathlib.Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream, zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in sorted(arrays):
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asarray(arrays[name]), allow_pickle=False)
                member = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIMESTAMP)
                member.compress_type = zipfile.ZIP_DEFLATED
                member.external_attr = 0o644 << 16
                archive.writestr(member, buffer.getvalue())
        # mkstemp makes the file private (0600); a model file is ordinary readable data.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


def write_synthetic_body(path):
    """Builds the synthetic body and writes it to the .npz file `path` (atomically, same bytes on
    every run). Returns the path as a pathlib.Path."""
    return write_npz_atomically(path, build_synthetic_body())

"""The synthetic world's renderer: posed bodies and boxes rasterised in numpy into an RGB image, an exact
instance mask and per-person ground truth in the camera frame.

The rasteriser is a z-buffer over triangles, vectorised per batch of triangles of similar screen size:
each batch is a dense (triangles, rows, columns) grid over the triangles' bounding boxes, tested with
edge functions at pixel centres (pixel (u, v) has its centre at (u, v)); the nearest surface per pixel
wins by one scatter-max of a key that packs inverse depth and face index, so the result does not depend
on drawing order. Shading is deferred to the visible pixels: Gouraud (per-vertex Lambert, interpolated
perspective-correctly) or flat, with a directional light and an ambient term; clothing colours and
stripes come from per-vertex attributes. Backgrounds (gradients, value-noise textures, a room with a
tiled floor and a wall) and 2D clutter are painted behind everything; boxes (crates, poles, counters)
are real geometry and occlude people exactly. The camera frame is ROS's optical frame (x right, y down,
z forward); the world is y-up with the floor at y = 0 (fasthmr_model.data.camera).

`python -m fasthmr_model.data.render --bench` prints the rendering throughput.
Run-time module: numpy only.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fasthmr_model.body import BodyModel, write_synthetic_body
from fasthmr_model.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from fasthmr_model.body.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_BETAS, NUM_JOINTS
from fasthmr_model.data.camera import (
    Camera, CameraConfig, PlacementConfig, camera_heading, crop_camera, place_people, sample_camera,
)
from fasthmr_model.data.crop import crop_box_for
from fasthmr_model.errors import FastHMRError, InputError

# Triangles with a vertex closer to the camera than this (m) are not drawn (no near-plane clipping):
# the scene samplers keep every surface much farther away.
NEAR_PLANE = 0.05
# A joint counts as visible when no surface at its pixel is nearer than its depth minus this (m): a
# joint lies inside its limb or torso, up to about half a broad torso's depth behind the surface that
# shows it.
JOINT_DEPTH_TOLERANCE = 0.2
# Pixel centres exactly on an edge shared by two triangles must not be dropped by rounding in both:
# a barycentric weight down to minus this still counts as inside (the depth test picks one of the two).
_EDGE_TOLERANCE = 1e-9
# The z-buffer keeps max(key) per pixel, key = (inverse depth's float64 bits, low bits cleared) | (face
# bits). Positive doubles order like their bit patterns; keeping 52 - 24 = 28 mantissa bits resolves
# depths to 4e-9 relative (30 nm at 8 m), and equal depths fall to the lower face index.
_FACE_BITS = 24
_FACE_LIMIT = 1 << _FACE_BITS
# Largest (triangles x rows x columns) grid evaluated at once; bounds the rasteriser's memory (~100 MB).
_MAX_GRID_ELEMENTS = 1 << 20

# Per-vertex shading attributes: Lambert intensity, base colour, alternate colour, two stripe phases.
# A pixel takes the alternate colour where exactly one of the phases is in the first half of its period.
_INTENSITY = 0
_BASE = slice(1, 4)
_ALTERNATE = slice(4, 7)
_PHASE_A = 7
_PHASE_B = 8
_ATTRIBUTE_COUNT = 9


# ---------------------------------------------------------------------------------------------------
# Rasteriser


@dataclass(frozen=True)
class Fragments:
    """The nearest surface at each of the P covered pixels.

    pixel (P,) int64: flat pixel index v * width + u, ascending; face (P,) int64: index into the faces
    given to rasterize; barycentric (P, 3) float64: perspective-correct weights of the face's three
    vertices at the pixel centre; depth (P,) float64: camera-frame z of the surface there (m).
    """

    pixel: np.ndarray
    face: np.ndarray
    barycentric: np.ndarray
    depth: np.ndarray


def _grid_sizes(limit):
    """Bounding-box sizes triangles are grouped by: powers of two up to >= limit. A dense grid wastes
    less than 2x per axis; finer classes cost more in per-batch overhead than they save (measured on
    256x256 crops: 3.9 ms per body with powers of two, 4.8 ms with steps of 1.5x)."""
    return 2 ** np.arange(int(np.ceil(np.log2(max(limit, 2)))) + 1)


class _ScreenTriangles(NamedTuple):
    """T drawable triangles as planes over the screen (functions a u + b v + c of the pixel (u, v)).

    face (T,): index into the faces given to rasterize; weight_u, weight_v, weight_1 (T, 3): the planes
    of the three screen-space barycentric weights; inverse_depth (T, 3): 1 / z at the corners; depth_u,
    depth_v, depth_1 (T,): the plane of 1 / z; x_low, x_high, y_low, y_high (T,) int64: the pixels of
    the bounding box, inclusive, inside the image.
    """

    face: np.ndarray
    weight_u: np.ndarray
    weight_v: np.ndarray
    weight_1: np.ndarray
    inverse_depth: np.ndarray
    depth_u: np.ndarray
    depth_v: np.ndarray
    depth_1: np.ndarray
    x_low: np.ndarray
    x_high: np.ndarray
    y_low: np.ndarray
    y_high: np.ndarray


def _screen_triangles(vertices, faces, intrinsics, width, height, cull_back_faces):
    """The faces that can cover a pixel centre, projected and set up as screen planes."""
    corners = vertices[faces]  # (F, 3, 3)
    depth = corners[:, :, 2]
    drawable = np.all(depth > NEAR_PLANE, axis=1)
    if cull_back_faces:
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        drawable &= np.einsum("fk,fk->f", normals, corners[:, 0]) < 0.0
    face = np.flatnonzero(drawable)
    corners, depth = corners[face], depth[face]
    projected = corners @ np.asarray(intrinsics, dtype=np.float64).T
    x = projected[:, :, 0] / projected[:, :, 2]
    y = projected[:, :, 1] / projected[:, :, 2]

    # Edge function of the edge opposite corner i (from corner i+1 to i+2), which is zero on that edge
    # and equals twice the signed area at corner i.
    x_from, x_to = np.roll(x, -1, axis=1), np.roll(x, -2, axis=1)
    y_from, y_to = np.roll(y, -1, axis=1), np.roll(y, -2, axis=1)
    edge_u, edge_v = y_from - y_to, x_to - x_from
    edge_1 = (y_to - y_from) * x_from - (x_to - x_from) * y_from
    doubled_area = edge_u[:, 0] * x[:, 0] + edge_v[:, 0] * y[:, 0] + edge_1[:, 0]
    x_low = np.ceil(np.clip(x.min(axis=1), -1.0, width)).astype(np.int64).clip(0, None)
    x_high = np.floor(np.clip(x.max(axis=1), -1.0, width)).astype(np.int64).clip(None, width - 1)
    y_low = np.ceil(np.clip(y.min(axis=1), -1.0, height)).astype(np.int64).clip(0, None)
    y_high = np.floor(np.clip(y.max(axis=1), -1.0, height)).astype(np.int64).clip(None, height - 1)
    # Degenerate (zero-area) faces and faces whose box holds no pixel centre cover nothing.
    kept = np.flatnonzero((np.abs(doubled_area) > 1e-12) & (x_low <= x_high) & (y_low <= y_high))
    area = doubled_area[kept, None]
    weight_u, weight_v, weight_1 = edge_u[kept] / area, edge_v[kept] / area, edge_1[kept] / area
    inverse_depth = 1.0 / depth[kept]
    # 1/z is affine over the screen, so it is a plane too: sum_i weight_i / z_i.
    return _ScreenTriangles(
        face=face[kept], weight_u=weight_u, weight_v=weight_v, weight_1=weight_1, inverse_depth=inverse_depth,
        depth_u=np.sum(weight_u * inverse_depth, axis=1),
        depth_v=np.sum(weight_v * inverse_depth, axis=1),
        depth_1=np.sum(weight_1 * inverse_depth, axis=1),
        x_low=x_low[kept], x_high=x_high[kept], y_low=y_low[kept], y_high=y_high[kept],
    )


def _per_triangle(values, chosen):
    """values[chosen] shaped (n, 1, 1), to broadcast over a (triangles, rows, columns) grid."""
    return values[chosen, None, None]


def _nearest_keys(triangles, width, height):
    """(H * W,) int64 z-buffer: per pixel the largest key (inverse depth bits | _FACE_LIMIT - 1 - t) of
    the triangles t covering its centre, 0 where none does.

    Triangles are grouped by the power-of-two size class of their bounding box; each batch of a group is
    tested on a dense (triangles, rows, columns) grid of pixel centres with plain broadcasting.
    """
    sizes = _grid_sizes(max(width, height))
    columns_class = np.searchsorted(sizes, triangles.x_high - triangles.x_low + 1)
    rows_class = np.searchsorted(sizes, triangles.y_high - triangles.y_low + 1)
    group_of = columns_class * len(sizes) + rows_class
    order = np.argsort(group_of, kind="stable")
    group_starts = np.flatnonzero(np.diff(group_of[order], prepend=-1))
    group_ends = np.append(group_starts[1:], len(order))

    keys = np.zeros(width * height, dtype=np.int64)
    for start, end in zip(group_starts, group_ends):
        members = order[start:end]
        grid_columns = int(sizes[columns_class[members[0]]])
        grid_rows = int(sizes[rows_class[members[0]]])
        batch = max(1, _MAX_GRID_ELEMENTS // (grid_columns * grid_rows))
        for batch_start in range(0, len(members), batch):
            chosen = members[batch_start:batch_start + batch]
            u = (_per_triangle(triangles.x_low, chosen) + np.arange(grid_columns)[None, None, :]).astype(np.float64)
            v = (_per_triangle(triangles.y_low, chosen) + np.arange(grid_rows)[None, :, None]).astype(np.float64)
            inside = (u <= _per_triangle(triangles.x_high, chosen)) & (v <= _per_triangle(triangles.y_high, chosen))
            for corner in range(3):
                weight = (_per_triangle(triangles.weight_u[:, corner], chosen) * u
                          + _per_triangle(triangles.weight_v[:, corner], chosen) * v
                          + _per_triangle(triangles.weight_1[:, corner], chosen))
                inside &= weight >= -_EDGE_TOLERANCE
            inverse_depth = (_per_triangle(triangles.depth_u, chosen) * u + _per_triangle(triangles.depth_v, chosen) * v
                             + _per_triangle(triangles.depth_1, chosen))
            pixel = (v * width + u).astype(np.int64)
            triangle_bits = np.broadcast_to((_FACE_LIMIT - 1 - chosen)[:, None, None], inside.shape)
            depth_bits = inverse_depth[inside].view(np.int64) >> _FACE_BITS << _FACE_BITS
            np.maximum.at(keys, pixel[inside], depth_bits | triangle_bits[inside])
    return keys


def rasterize(vertices, faces, intrinsics, width, height, cull_back_faces=True):
    """Z-buffer rasterisation of triangles given in the camera frame, sampled at pixel centres.

    Args:
        vertices: (V, 3) camera-frame points (m).
        faces: (F, 3) vertex indices. With cull_back_faces, a face is drawn only when its vertices run
            counter-clockwise seen from the camera (outward faces of a closed mesh wound as SMPL's are),
            which halves the work and cannot change the nearest surface of closed meshes.
        intrinsics: (3, 3) K; width, height: image size.

    Returns Fragments. Faces with a vertex nearer than NEAR_PLANE are skipped.
    Raises InputError for malformed arrays or 2**24 or more faces.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise InputError(f"rasterize needs vertices (V, 3) and faces (F, 3), got {vertices.shape} and {faces.shape}")
    if len(faces) >= _FACE_LIMIT:
        raise InputError(f"rasterize draws at most {_FACE_LIMIT - 1} faces at once, got {len(faces)}")
    triangles = _screen_triangles(vertices, faces, intrinsics, width, height, cull_back_faces)
    keys = _nearest_keys(triangles, width, height)

    covered = np.flatnonzero(keys)
    triangle = (_FACE_LIMIT - 1) - (keys[covered] & (_FACE_LIMIT - 1))
    u = (covered % width).astype(np.float64)[:, None]
    v = (covered // width).astype(np.float64)[:, None]
    screen_weights = triangles.weight_u[triangle] * u + triangles.weight_v[triangle] * v + triangles.weight_1[triangle]
    # Perspective-correct weights: screen weights divided by depth, renormalised (they sum to 1 / z).
    weighted = screen_weights * triangles.inverse_depth[triangle]
    inverse_depth = weighted.sum(axis=1)
    return Fragments(
        pixel=covered,
        face=triangles.face[triangle],
        barycentric=weighted / inverse_depth[:, None],
        depth=1.0 / inverse_depth,
    )


# ---------------------------------------------------------------------------------------------------
# Appearance


@dataclass(frozen=True)
class Appearance:
    """Colours (linear RGB in [0, 1]) and clothing of one person.

    hair is None for a bare head. shirt_alternate / trousers_alternate equal shirt / trousers for plain
    cloth; otherwise the cloth shows `pattern` ("horizontal" stripes, "vertical" stripes or "checks")
    with period pattern_period (m, on the body's rest surface).
    """

    skin: tuple
    hair: tuple | None
    shirt: tuple
    shirt_alternate: tuple
    trousers: tuple
    trousers_alternate: tuple
    shoes: tuple
    short_sleeves: bool
    shorts: bool
    pattern: str
    pattern_period: float


_PATTERNS = ("horizontal", "vertical", "checks")
_LIGHT_SKIN = np.array([0.96, 0.80, 0.69])
_DARK_SKIN = np.array([0.30, 0.19, 0.13])
# Black, brown, blond, grey, red.
_HAIR_COLOURS = np.array(
    [[0.05, 0.04, 0.04], [0.25, 0.15, 0.08], [0.75, 0.62, 0.38], [0.60, 0.60, 0.60], [0.50, 0.20, 0.10]])


def _hsv_to_rgb(hue, saturation, value):
    """One HSV colour (each in [0, 1]) -> RGB (3,)."""
    channel_hue = (hue * 6.0 + np.array([5.0, 3.0, 1.0])) % 6.0
    return value - value * saturation * np.clip(np.minimum(channel_hue, 4.0 - channel_hue), 0.0, 1.0)


def _random_colour(rng, value_range=(0.12, 0.95)):
    """A random cloth or object colour as a tuple of three floats."""
    colour = _hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.9), rng.uniform(*value_range))
    return tuple(float(channel) for channel in colour)


def sample_appearance(rng):
    """A random person's look: skin tone, hair, shirt/trousers/shoes colours, sleeves, patterns."""
    rng = np.random.default_rng(rng)
    skin = _LIGHT_SKIN + rng.random() * (_DARK_SKIN - _LIGHT_SKIN) + rng.uniform(-0.03, 0.03, 3)
    hair = None
    if rng.random() < 0.85:
        hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.8, 1.2)
    shirt = _random_colour(rng)
    trousers = _random_colour(rng, (0.08, 0.7))
    shirt_alternate = _random_colour(rng) if rng.random() < 0.5 else shirt
    trousers_alternate = _random_colour(rng, (0.08, 0.7)) if rng.random() < 0.2 else trousers
    return Appearance(
        skin=tuple(float(channel) for channel in np.clip(skin, 0.0, 1.0)),
        hair=None if hair is None else tuple(float(channel) for channel in np.clip(hair, 0.0, 1.0)),
        shirt=shirt,
        shirt_alternate=shirt_alternate,
        trousers=trousers,
        trousers_alternate=trousers_alternate,
        shoes=_random_colour(rng, (0.03, 0.5)),
        short_sleeves=bool(rng.random() < 0.4),
        shorts=bool(rng.random() < 0.25),
        pattern=_PATTERNS[rng.integers(len(_PATTERNS))],
        pattern_period=float(rng.uniform(0.04, 0.15)),
    )


# Which garment covers the body part each joint moves (the joint with the largest skinning weight).
_GARMENT_OF_JOINT_NAME = {
    "pelvis": "trousers", "left_hip": "trousers", "right_hip": "trousers",
    "left_knee": "lower_leg", "right_knee": "lower_leg",
    "left_ankle": "shoes", "right_ankle": "shoes", "left_foot": "shoes", "right_foot": "shoes",
    "spine1": "shirt", "spine2": "shirt", "spine3": "shirt",
    "left_collar": "shirt", "right_collar": "shirt", "left_shoulder": "shirt", "right_shoulder": "shirt",
    "left_elbow": "forearm", "right_elbow": "forearm",
    "neck": "skin", "head": "head",
    "left_wrist": "skin", "right_wrist": "skin", "left_hand": "skin", "right_hand": "skin",
}
_GARMENT_OF_JOINT = np.array([_GARMENT_OF_JOINT_NAME[name] for name in JOINT_NAMES])
# Hair covers the head above this height over the head joint, and the back of the head (behind the
# head joint) above the second height (m, at rest).
_HAIR_LINE = 0.05
_HAIR_LINE_BACK = -0.03


def _vertex_garments(body_model):
    """(V,) garment name of each vertex of the body model at rest, and (V, 3) rest positions."""
    arrays = body_model.arrays
    garments = _GARMENT_OF_JOINT[np.argmax(arrays.weights, axis=1)]
    rest = arrays.v_template
    head = arrays.J_regressor[JOINT_INDEX["head"]] @ rest
    above = rest[:, 1] - head[1]
    hair = (garments == "head") & ((above > _HAIR_LINE) | ((above > _HAIR_LINE_BACK) & (rest[:, 2] < head[2])))
    garments[hair] = "hair"
    return garments, rest


def _person_colours(garments, rest, appearance):
    """(V, 3) base colour, (V, 3) alternate colour and (V, 2) stripe phases of one person's vertices."""
    covered_arm = appearance.skin if appearance.short_sleeves else appearance.shirt
    covered_arm_alternate = appearance.skin if appearance.short_sleeves else appearance.shirt_alternate
    covered_leg = appearance.skin if appearance.shorts else appearance.trousers
    covered_leg_alternate = appearance.skin if appearance.shorts else appearance.trousers_alternate
    hair = appearance.skin if appearance.hair is None else appearance.hair
    palette = {
        "skin": (appearance.skin, appearance.skin), "head": (appearance.skin, appearance.skin), "hair": (hair, hair),
        "shirt": (appearance.shirt, appearance.shirt_alternate), "forearm": (covered_arm, covered_arm_alternate),
        "trousers": (appearance.trousers, appearance.trousers_alternate),
        "lower_leg": (covered_leg, covered_leg_alternate), "shoes": (appearance.shoes, appearance.shoes),
    }
    base = np.empty((len(garments), 3))
    alternate = np.empty((len(garments), 3))
    for garment, (colour, alternate_colour) in palette.items():
        selected = garments == garment
        base[selected] = colour
        alternate[selected] = alternate_colour
    # One phase field over the whole body (not per garment), so that phases interpolate smoothly across
    # garment borders; plain cloth hides it by having alternate == base.
    phases = np.zeros((len(garments), 2))
    if appearance.pattern in ("horizontal", "checks"):
        phases[:, 0] = rest[:, 1] / appearance.pattern_period
    if appearance.pattern in ("vertical", "checks"):
        phases[:, 1] = rest[:, 0] / appearance.pattern_period
    return base, alternate, phases


def _lambert(normals, light, ambient):
    """Intensity ambient + (1 - ambient) max(0, n . l) for (..., 3) normals of any length."""
    length = np.linalg.norm(normals, axis=-1)
    cosine = np.einsum("...k,k->...", normals, light) / np.maximum(length, 1e-12)
    return ambient + (1.0 - ambient) * np.maximum(cosine, 0.0)


def _vertex_normals(vertices, faces):
    """(V, 3) area-weighted sums of the normals of the faces around each vertex (not normalised)."""
    corners = vertices[faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    flat_index = faces.reshape(-1)
    normals = np.empty_like(vertices)
    for axis in range(3):
        normals[:, axis] = np.bincount(flat_index, weights=np.repeat(face_normals[:, axis], 3), minlength=len(vertices))
    return normals, face_normals


# ---------------------------------------------------------------------------------------------------
# Scenes


@dataclass(frozen=True)
class PosedBody:
    """A body to put in a scene: betas (10,) and rotmats (24, 3, 3), the root rotation relative to an
    upright body facing +z (sample_scene adds a heading and stands the body on the floor)."""

    betas: np.ndarray
    rotmats: np.ndarray


@dataclass(frozen=True)
class ScenePerson:
    """A person in the world: betas (10,), rotmats (24, 3, 3) with the world-frame global orientation,
    translation (3,) world (the body model's transl), and the look."""

    betas: np.ndarray
    rotmats: np.ndarray
    translation: np.ndarray
    appearance: Appearance


@dataclass(frozen=True)
class SceneBox:
    """A box standing in the world (a crate, pole, counter): centre (3,) world, half_size (3,) along its
    own x, y, z, yaw about world y (radians), colour and stripe colour (equal for plain), stripe period (m)."""

    centre: np.ndarray
    half_size: np.ndarray
    yaw: float
    colour: tuple
    stripe_colour: tuple
    stripe_period: float


@dataclass(frozen=True)
class RenderStyle:
    """Everything about a frame's look that is not geometry.

    Args:
        background: "gradient", "texture" or "room" (a tiled floor and walls seen by the camera).
        background_seed: seed of the background's and the 2D clutter's random content.
        clutter_shapes: rectangles and ellipses painted on the background.
        light_direction: (3,) unit vector towards the light, world frame.
        light_colour: (3,) tint multiplying the whole image.
        ambient: ambient share of the light in [0, 1].
        smooth_shading: Gouraud shading if True, flat (per face) if False.
        exposure: overall brightness factor.
        blur_sigma: Gaussian blur of the image (pixels, 0 = sharp).
        noise_sigma: standard deviation of the sensor noise (8-bit levels, 0 = none).
        noise_seed: seed of the sensor noise.
    """

    background: str = "gradient"
    background_seed: int = 0
    clutter_shapes: int = 0
    light_direction: tuple = (0.3, 0.8, 0.52)
    light_colour: tuple = (1.0, 1.0, 1.0)
    ambient: float = 0.4
    smooth_shading: bool = True
    exposure: float = 1.0
    blur_sigma: float = 0.0
    noise_sigma: float = 0.0
    noise_seed: int = 0


@dataclass(frozen=True)
class Scene:
    """A camera, the people (instance k + 1 is people[k]), the boxes and the style of one frame."""

    camera: Camera
    people: tuple
    boxes: tuple
    style: RenderStyle


@dataclass(frozen=True)
class WorldConfig:
    """How often the scene samplers add objects and degrade the image.

    Args:
        occluder_probability: chance of a box placed between the camera and one person.
        max_background_boxes: other boxes anywhere in view (0..this).
        max_clutter_shapes: 2D shapes painted on the background (0..this).
        flat_shading_probability: chance of flat instead of Gouraud shading.
        blur_probability, blur_sigma_range: chance and strength (pixels) of a Gaussian blur.
        noise_sigma_range: sensor noise strength (8-bit levels).
    """

    occluder_probability: float = 0.35
    max_background_boxes: int = 3
    max_clutter_shapes: int = 6
    flat_shading_probability: float = 0.25
    blur_probability: float = 0.4
    blur_sigma_range: tuple = (0.4, 1.4)
    noise_sigma_range: tuple = (0.0, 6.0)


_BACKGROUNDS = ("gradient", "texture", "room")
# Box kinds: ranges of half sizes (x, y, z) in metres.
_BOX_KINDS = (
    ((0.15, 0.15, 0.15), (0.45, 0.45, 0.45)),  # crate
    ((0.04, 0.6, 0.04), (0.12, 1.3, 0.12)),  # pole
    ((0.4, 0.25, 0.2), (1.0, 0.55, 0.4)),  # counter / low wall
)
_BOX_CLEARANCE = 0.1  # free space between a box and a person's footprint (m)
_BOX_CAMERA_CLEARANCE = 0.3  # free space between a box and the camera (m), far beyond NEAR_PLANE


def _sample_boxes(rng, camera, people_positions, people_radii, config):
    """Boxes in view: maybe one between the camera and a person, and a few anywhere; a box that would
    touch a person, another box or the camera is dropped."""
    camera_xz = camera.position[[0, 2]]
    heading = camera_heading(camera)
    half_fov = np.arctan(0.5 * camera.width / camera.intrinsics[0, 0])
    candidates = []
    if len(people_positions) and rng.random() < config.occluder_probability:
        target = people_positions[rng.integers(len(people_positions))]
        towards = target - camera_xz
        sideways = np.array([-towards[1], towards[0]]) / np.linalg.norm(towards)
        candidates.append(camera_xz + rng.uniform(0.35, 0.8) * towards + rng.uniform(-0.6, 0.6) * sideways)
    for _ in range(rng.integers(0, config.max_background_boxes + 1)):
        direction = heading + rng.uniform(-1.1, 1.1) * half_fov
        candidates.append(camera_xz + rng.uniform(1.5, 12.0) * np.array([np.sin(direction), np.cos(direction)]))

    boxes, box_radii, box_positions = [], [], []
    for position in candidates:
        low, high = _BOX_KINDS[rng.integers(len(_BOX_KINDS))]
        half_size = rng.uniform(low, high)
        yaw = float(rng.uniform(0.0, np.pi))
        colour = _random_colour(rng)
        stripe_colour = _random_colour(rng) if rng.random() < 0.3 else colour
        stripe_period = float(rng.uniform(0.05, 0.3))
        radius = float(np.hypot(half_size[0], half_size[2]))
        clear_of_camera = np.linalg.norm(position - camera_xz) >= radius + _BOX_CAMERA_CLEARANCE
        clear_of_people = np.all(
            np.linalg.norm(people_positions - position, axis=1) >= np.asarray(people_radii) + radius + _BOX_CLEARANCE)
        clear_of_boxes = all(np.linalg.norm(other - position) >= other_radius + radius
                             for other, other_radius in zip(box_positions, box_radii))
        if clear_of_camera and clear_of_people and clear_of_boxes:
            centre = np.array([position[0], half_size[1], position[1]])
            boxes.append(SceneBox(centre, half_size, yaw, colour, stripe_colour, stripe_period))
            box_radii.append(radius)
            box_positions.append(position)
    return tuple(boxes)


def _sample_style(rng, config):
    """A random RenderStyle."""
    elevation = rng.uniform(np.radians(25.0), np.radians(80.0))
    azimuth = rng.uniform(-np.pi, np.pi)
    light_direction = (np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth))
    warmth = rng.uniform(-0.12, 0.12)
    blurred = rng.random() < config.blur_probability
    return RenderStyle(
        background=_BACKGROUNDS[rng.integers(len(_BACKGROUNDS))],
        background_seed=int(rng.integers(2**31)),
        clutter_shapes=int(rng.integers(0, config.max_clutter_shapes + 1)),
        light_direction=tuple(float(value) for value in light_direction),
        light_colour=(1.0 + warmth, 1.0, 1.0 - warmth),
        ambient=float(rng.uniform(0.25, 0.6)),
        smooth_shading=bool(rng.random() >= config.flat_shading_probability),
        exposure=float(rng.uniform(0.75, 1.25)),
        blur_sigma=float(rng.uniform(*config.blur_sigma_range)) if blurred else 0.0,
        noise_sigma=float(rng.uniform(*config.noise_sigma_range)),
        noise_seed=int(rng.integers(2**31)),
    )


def sample_scene(seed, body_model, bodies, width, height, camera_config=CameraConfig(),
                 placement_config=PlacementConfig(), world_config=WorldConfig()):
    """A random scene with the given bodies: a robot camera, each body turned to a random heading and
    stood on the floor (lowest vertex at y = 0) at a free spot in front of the camera, random looks,
    boxes and style. The same seed and bodies give the same scene.

    Args:
        seed: int seed (or a numpy Generator).
        body_model: fasthmr_model.body.BodyModel.
        bodies: sequence of PosedBody (person k + 1 of the instance mask is bodies[k]).
        width, height: image size.
    Raises InputError when the people cannot be placed (see place_people).
    """
    rng = np.random.default_rng(seed)
    camera = sample_camera(rng, width, height, camera_config)
    count = len(bodies)
    headings = rng.uniform(-np.pi, np.pi, size=count)
    positions = np.zeros((0, 2))
    radii = np.zeros(0)
    people = []
    if count:
        betas = np.stack([np.asarray(body.betas, dtype=np.float64) for body in bodies])
        rotmats = np.stack([np.asarray(body.rotmats, dtype=np.float64) for body in bodies])
        turns = axis_angle_to_matrix(np.stack([np.zeros(count), headings, np.zeros(count)], axis=1))
        rotmats[:, 0] = turns @ rotmats[:, 0]
        vertices, joints = body_model.forward(betas, rotmats)
        pelvis_xz = joints[:, 0, [0, 2]]
        radii = np.linalg.norm(vertices[:, :, [0, 2]] - pelvis_xz[:, None, :], axis=2).max(axis=1)
        positions = place_people(rng, camera, radii, placement_config)
        floor_offset = -vertices[:, :, 1].min(axis=1)
        translations = np.stack(
            [positions[:, 0] - pelvis_xz[:, 0], floor_offset, positions[:, 1] - pelvis_xz[:, 1]], axis=1)
        people = [ScenePerson(betas[k], rotmats[k], translations[k], sample_appearance(rng)) for k in range(count)]
    boxes = _sample_boxes(rng, camera, positions, radii, world_config)
    return Scene(camera, tuple(people), boxes, _sample_style(rng, world_config))


def person_crop_box(scene, body_model, person_index, box_scale=1.0):
    """HMR2.0's square crop (centre x, centre y, side) around a person's projected mesh: the tight box of
    the projected vertices, expanded to 3:4 and scaled as fasthmr_model.data.crop does for mask boxes.
    With fasthmr_model.data.camera.crop_camera it gives the camera that renders that crop directly."""
    person = scene.people[person_index]
    vertices, _ = body_model.forward(person.betas[None], person.rotmats[None], person.translation[None])
    pixels = scene.camera.project(scene.camera.world_to_camera(vertices[0]))
    # crop.py's boxes are pixel edges: the pixels u in [a, b] span [a - 0.5, b + 0.5].
    box = np.concatenate([pixels.min(axis=0) - 0.5, pixels.max(axis=0) + 0.5])
    return crop_box_for(box, box_scale)


# ---------------------------------------------------------------------------------------------------
# Boxes as meshes


def _unit_box():
    """A cube [-1, 1]^3 as 24 vertices (4 per side, for flat shading), 12 outward triangles and (24, 3)
    outward side normals."""
    vertices, faces, normals = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            normal = np.zeros(3)
            normal[axis] = sign
            first, second = [other for other in range(3) if other != axis]
            start = len(vertices)
            for a, b in ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)):
                corner = normal.copy()
                corner[first], corner[second] = a, b
                vertices.append(corner)
                normals.append(normal)
            quad = [(start, start + 1, start + 2), (start, start + 2, start + 3)]
            corner_0, corner_1, corner_2 = (np.array(vertices[index]) for index in quad[0])
            if np.dot(np.cross(corner_1 - corner_0, corner_2 - corner_0), normal) < 0.0:
                quad = [(a, c, b) for a, b, c in quad]
            faces.extend(quad)
    return np.array(vertices), np.array(faces, dtype=np.int64), np.array(normals)


_UNIT_BOX_VERTICES, _UNIT_BOX_FACES, _UNIT_BOX_NORMALS = _unit_box()


def _box_mesh(box, camera, light, ambient):
    """One box's camera-frame vertices (24, 3), faces (12, 3) and shading attributes (24, 9)."""
    turn = axis_angle_to_matrix(np.array([0.0, box.yaw, 0.0]))
    world = (_UNIT_BOX_VERTICES * box.half_size) @ turn.T + box.centre
    normals = _UNIT_BOX_NORMALS @ turn.T @ camera.rotation.T
    attributes = np.zeros((len(world), _ATTRIBUTE_COUNT))
    attributes[:, _INTENSITY] = _lambert(normals, light, ambient)
    attributes[:, _BASE] = box.colour
    attributes[:, _ALTERNATE] = box.stripe_colour
    attributes[:, _PHASE_A] = world[:, 1] / box.stripe_period
    return camera.world_to_camera(world), _UNIT_BOX_FACES, attributes


# ---------------------------------------------------------------------------------------------------
# Backgrounds and image effects
#
# Images here are planar float32 (3, H, W) in linear [0, 1]: numpy's broadcasting over a trailing axis
# of 3 runs an inner loop of length 3 and is several times slower than over rows of W.


def _lattice_interpolation(count, cell):
    """Indices (count,) and smoothstep fractions (count,) float32 of `count` pixels over lattice cells of
    `cell` pixels."""
    position = (np.arange(count) + 0.5) / cell
    index = np.floor(position).astype(np.intp)
    fraction = position - index
    return index, (fraction * fraction * (3.0 - 2.0 * fraction)).astype(np.float32)


def _value_noise(rng, height, width, cell, octaves=3):
    """(H, W) float32 in [0, 1]: smoothly interpolated random lattice values, octaves of half the cell
    size and half the amplitude added up."""
    total = np.zeros((height, width), dtype=np.float32)
    amplitude, amplitude_sum = 1.0, 0.0
    for _ in range(octaves):
        cell = max(cell, 2.0)
        lattice = rng.random((int(height / cell) + 2, int(width / cell) + 2), dtype=np.float32)
        rows, row_fraction = _lattice_interpolation(height, cell)
        columns, column_fraction = _lattice_interpolation(width, cell)
        along_rows = lattice[rows] + (lattice[rows + 1] - lattice[rows]) * row_fraction[:, None]
        left, right = along_rows[:, columns], along_rows[:, columns + 1]
        total += amplitude * (left + (right - left) * column_fraction)
        amplitude_sum += amplitude
        amplitude *= 0.5
        cell *= 0.5
    return total / amplitude_sum


def _blend(first, second, amount):
    """(3, H, W) float32: first + amount (second - first) for colours (3,) and amounts (H, W)."""
    first = np.asarray(first, dtype=np.float32)[:, None, None]
    second = np.asarray(second, dtype=np.float32)[:, None, None]
    return first + amount.astype(np.float32) * (second - first)


def _pixel_grid(height, width):
    """Row (H, 1) and column (1, W) float32 coordinates."""
    return np.arange(height, dtype=np.float32)[:, None], np.arange(width, dtype=np.float32)[None, :]


def _paint_gradient(rng, height, width):
    """A linear gradient between two colours in a random direction, with faint noise."""
    angle = rng.uniform(0.0, 2.0 * np.pi)
    rows, columns = _pixel_grid(height, width)
    along = np.float32(np.cos(angle)) * columns + np.float32(np.sin(angle)) * rows
    along = (along - along.min()) / max(float(along.max() - along.min()), 1.0)
    noise = _value_noise(rng, height, width, cell=max(height, width) / rng.uniform(2.0, 8.0))
    return _blend(_random_colour(rng), _random_colour(rng), np.clip(along + 0.15 * (noise - 0.5), 0.0, 1.0))


def _paint_texture(rng, height, width):
    """A procedural texture: blotchy value noise, or noise-warped bands (like wood or marble)."""
    noise = _value_noise(rng, height, width, cell=rng.uniform(6.0, 60.0), octaves=4)
    if rng.random() < 0.5:
        amount = np.clip((noise - 0.5) * rng.uniform(1.5, 3.0) + 0.5, 0.0, 1.0)
    else:
        angle = rng.uniform(0.0, np.pi)
        rows, columns = _pixel_grid(height, width)
        period = rng.uniform(8.0, 60.0)
        bands = (np.float32(np.cos(angle) / period) * columns + np.float32(np.sin(angle) / period) * rows)
        amount = 0.5 + 0.5 * np.sin(np.float32(2.0 * np.pi) * bands + np.float32(rng.uniform(2.0, 8.0)) * noise)
    return _blend(_random_colour(rng), _random_colour(rng), amount)


def _parity(values):
    """(floor(values) mod 2) as float32 0 or 1 (faster than the float % operator)."""
    halves = values * 0.5
    return 2.0 * (halves - np.floor(halves))


def _paint_room(rng, camera, light_direction, ambient):
    """What the camera sees of a room around it: a tiled floor (y = 0) up to a circular wall, the wall
    with vertical panels up to a ceiling. Textures and lighting are cheap approximations; the floor is
    lit by the world-frame unit light_direction (3,)."""
    height, width = camera.height, camera.width
    wall_radius = rng.uniform(9.0, 16.0)
    ceiling = rng.uniform(2.6, 4.0)
    tile = rng.uniform(0.3, 1.2)
    floor_colours = (_random_colour(rng, (0.2, 0.8)), _random_colour(rng, (0.2, 0.8)))
    wall_colour = np.asarray(_random_colour(rng, (0.4, 0.95)), dtype=np.float32)[:, None, None]
    panel = rng.uniform(0.5, 3.0)
    ceiling_colour = np.asarray(_random_colour(rng, (0.6, 0.95)), dtype=np.float32)[:, None, None]
    noise = _value_noise(rng, height, width, cell=rng.uniform(8.0, 40.0))

    # World direction of each pixel's ray (not normalised): R^T K^-1 (u, v, 1), float32 is plenty here.
    to_ray = (camera.rotation.T @ np.linalg.inv(camera.intrinsics)).astype(np.float32)
    rows, columns = _pixel_grid(height, width)
    ray_x, ray_y, ray_z = (to_ray[axis, 0] * columns + to_ray[axis, 1] * rows + to_ray[axis, 2] for axis in range(3))
    centre = camera.position.astype(np.float32)
    across = np.maximum(np.hypot(ray_x, ray_z), np.float32(1e-9))
    downwards = ray_y < -1e-9
    along_floor = np.where(downwards, centre[1] / np.where(downwards, -ray_y, np.float32(1.0)), np.float32(0.0))
    floor = downwards & (along_floor * across < wall_radius)
    wall_height = centre[1] + np.float32(wall_radius) / across * ray_y

    checker = _parity(np.floor((centre[0] + along_floor * ray_x) / np.float32(tile))
                      + np.floor((centre[2] + along_floor * ray_z) / np.float32(tile)))
    # Far tiles are smaller than a pixel: fade the checker to its mean there instead of aliasing.
    ray_length_sq = ray_x * ray_x + ray_y * ray_y + ray_z * ray_z
    metres_per_pixel = along_floor * along_floor * ray_length_sq / np.float32(camera.intrinsics[0, 0] * centre[1])
    contrast = np.clip(1.5 - 2.0 * metres_per_pixel / np.float32(tile), 0.0, 1.0)
    floor_light = ambient + (1.0 - ambient) * max(float(light_direction[1]), 0.0)
    floor_image = _blend(floor_colours[0], floor_colours[1], 0.5 + contrast * (checker - 0.5))
    floor_image *= np.float32(floor_light) * (0.85 + 0.3 * noise)

    panels = _parity(np.arctan2(ray_x, ray_z) * np.float32(wall_radius / panel))
    wall_shade = (0.75 + 0.08 * panels + 0.2 * noise) * (1.0 - 0.05 * np.clip(wall_height, 0.0, ceiling))
    image = np.where(wall_height > ceiling, ceiling_colour * (0.9 + 0.1 * noise), wall_colour * wall_shade)
    return np.where(floor, floor_image, image).astype(np.float32)


def _paint_clutter(rng, image, count):
    """Paints `count` random rectangles and ellipses (flat colour with a light gradient) into `image`
    (3, H, W)."""
    height, width = image.shape[1:]
    for _ in range(count):
        centre_x, centre_y = rng.uniform(0, width), rng.uniform(0, height)
        half_x, half_y = rng.uniform(0.02, 0.25, 2) * min(height, width)
        colour = np.asarray(_random_colour(rng), dtype=np.float32)[:, None, None]
        opacity = rng.uniform(0.6, 1.0)
        is_ellipse = rng.random() < 0.5
        row_low = int(max(0, np.ceil(centre_y - half_y)))
        row_high = int(min(height - 1, np.floor(centre_y + half_y)))
        column_low = int(max(0, np.ceil(centre_x - half_x)))
        column_high = int(min(width - 1, np.floor(centre_x + half_x)))
        if row_low > row_high or column_low > column_high:
            continue
        offset_y = (np.arange(row_low, row_high + 1, dtype=np.float32)[:, None] - centre_y) / half_y
        offset_x = (np.arange(column_low, column_high + 1, dtype=np.float32)[None, :] - centre_x) / half_x
        region = image[:, row_low:row_high + 1, column_low:column_high + 1]
        shaded = colour * (1.0 - 0.15 * offset_y)
        painted = region + np.float32(opacity) * (shaded - region)
        if is_ellipse:
            painted = np.where(offset_x**2 + offset_y**2 <= 1.0, painted, region)
        region[...] = painted


def _gaussian_blur(image, sigma):
    """(3, H, W) float32 blurred by a separable Gaussian of `sigma` pixels (edges repeated)."""
    radius = int(np.ceil(3.0 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    for axis in (1, 2):
        padding = [(0, 0)] * 3
        padding[axis] = (radius, radius)
        padded = np.pad(image, padding, mode="edge")
        size = image.shape[axis]

        def shifted(offset, padded=padded, axis=axis, size=size):
            window = [slice(None)] * 3
            window[axis] = slice(offset, offset + size)
            return padded[tuple(window)]

        blurred = taps[0] * shifted(0)
        for offset in range(1, 2 * radius + 1):
            blurred += taps[offset] * shifted(offset)
        image = blurred
    return image


def _paint_background(scene):
    """(3, H, W) float32 background of the scene (its kind, then clutter), from style.background_seed."""
    style = scene.style
    rng = np.random.default_rng(style.background_seed)
    height, width = scene.camera.height, scene.camera.width
    if style.background == "gradient":
        image = _paint_gradient(rng, height, width)
    elif style.background == "texture":
        image = _paint_texture(rng, height, width)
    elif style.background == "room":
        light_direction = np.asarray(style.light_direction, dtype=np.float64)
        image = _paint_room(rng, scene.camera, light_direction / np.linalg.norm(light_direction), style.ambient)
    else:
        raise InputError(f"unknown background {style.background!r}: use one of {', '.join(_BACKGROUNDS)}")
    _paint_clutter(rng, image, style.clutter_shapes)
    return image


# ---------------------------------------------------------------------------------------------------
# Rendering and ground truth


@dataclass(frozen=True)
class PersonTruth:
    """Ground truth of one person of a rendered frame, camera frame (x right, y down, z forward).

    instance_id: the person's value in the instance mask.
    betas (10,); rotmats (24, 3, 3): SMPL-format pose, the global orientation in the camera frame;
    translation (3,): the body model's transl that, with these rotmats and betas, gives the camera-frame
    mesh and joints; joints_3d (24, 3) m; joints_2d (24, 2) pixels (projections of joints_3d with K);
    joint_visible (24,) bool: in the image and not hidden by a nearer surface (JOINT_DEPTH_TOLERANCE);
    visible_pixels: the person's pixel count in the instance mask.
    """

    instance_id: int
    betas: np.ndarray
    rotmats: np.ndarray
    translation: np.ndarray
    joints_3d: np.ndarray
    joints_2d: np.ndarray
    joint_visible: np.ndarray
    visible_pixels: int

    @property
    def axis_angle(self):
        """(24, 3) the pose as axis-angle vectors."""
        return matrix_to_axis_angle(self.rotmats)


@dataclass(frozen=True)
class RenderedFrame:
    """image (H, W, 3) uint8 RGB; instance_mask (H, W) uint8 (0 background and boxes, k = person k);
    depth (H, W) float32 camera-frame z of the nearest surface (inf where none); the camera; people:
    tuple of PersonTruth in instance order."""

    image: np.ndarray
    instance_mask: np.ndarray
    depth: np.ndarray
    camera: Camera
    people: tuple


def _joint_visibility(joints_2d, joints_z, depth_image):
    """(J,) bool: the joint projects into the image, lies in front of the camera, and no surface at its
    pixel is nearer than its depth minus JOINT_DEPTH_TOLERANCE."""
    height, width = depth_image.shape
    with np.errstate(invalid="ignore"):
        columns = np.round(joints_2d[:, 0])
        rows = np.round(joints_2d[:, 1])
        in_image = (joints_z > NEAR_PLANE) & (columns >= 0) & (columns < width) & (rows >= 0) & (rows < height)
    surface = np.full(len(joints_z), np.inf)
    surface[in_image] = depth_image[rows[in_image].astype(np.intp), columns[in_image].astype(np.intp)]
    return in_image & (surface >= joints_z - JOINT_DEPTH_TOLERANCE)


class _SceneMesh(NamedTuple):
    """Everything drawable in one camera-frame mesh: vertices (N, 3), faces (F, 3), per-vertex shading
    attributes (N, 9), flat-shading intensity per face (F,), and the instance id per face (F,) uint8
    (person k -> k, boxes -> 0)."""

    vertices: np.ndarray
    faces: np.ndarray
    attributes: np.ndarray
    face_intensity: np.ndarray
    face_owner: np.ndarray


def _scene_mesh(scene, body_model, camera_vertices, light):
    """The people (camera_vertices (N_people, V, 3)) and the boxes of a scene as one _SceneMesh, lit by
    the camera-frame unit `light` (3,)."""
    ambient = scene.style.ambient
    # (vertices, faces, attributes, face intensity, owner); the empty first part keeps the
    # concatenations below valid for a scene with nothing in it.
    parts = [(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), np.zeros((0, _ATTRIBUTE_COUNT)), np.zeros(0), 0)]
    if scene.people:
        faces = np.asarray(body_model.faces, dtype=np.int64)
        garments, rest = _vertex_garments(body_model)
        for index, person in enumerate(scene.people):
            vertex_normals, face_normals = _vertex_normals(camera_vertices[index], faces)
            base, alternate, phases = _person_colours(garments, rest, person.appearance)
            intensity = _lambert(vertex_normals, light, ambient)[:, None]
            attributes = np.concatenate([intensity, base, alternate, phases], axis=1)
            parts.append((camera_vertices[index], faces, attributes, _lambert(face_normals, light, ambient), index + 1))
    for box in scene.boxes:
        vertices, faces, attributes = _box_mesh(box, scene.camera, light, ambient)
        parts.append((vertices, faces, attributes, attributes[faces[:, 0], _INTENSITY], 0))

    offsets = np.cumsum([0] + [len(part[0]) for part in parts])
    return _SceneMesh(
        vertices=np.concatenate([part[0] for part in parts]),
        faces=np.concatenate([part[1] + offset for part, offset in zip(parts, offsets)]),
        attributes=np.concatenate([part[2] for part in parts]),
        face_intensity=np.concatenate([part[3] for part in parts]),
        face_owner=np.concatenate([np.full(len(part[1]), part[4], dtype=np.uint8) for part in parts]),
    )


def _shade(mesh, fragments, smooth_shading):
    """(3, P) linear RGB of the visible surface at each fragment: albedo (base or stripe colour) times
    the Lambert intensity, interpolated per pixel (Gouraud) or per face (flat)."""
    corner_attributes = mesh.attributes[mesh.faces[fragments.face]]  # (P, 3, 9)
    pixel_attributes = np.einsum("pk,pkc->cp", fragments.barycentric, corner_attributes)  # (9, P)
    if smooth_shading:
        intensity = pixel_attributes[_INTENSITY]
    else:
        intensity = mesh.face_intensity[fragments.face]
    phase_a, phase_b = pixel_attributes[_PHASE_A], pixel_attributes[_PHASE_B]
    stripes = ((phase_a - np.floor(phase_a)) < 0.5) ^ ((phase_b - np.floor(phase_b)) < 0.5)
    return np.where(stripes, pixel_attributes[_ALTERNATE], pixel_attributes[_BASE]) * intensity


def _finish_image(image, style):
    """Planar linear (3, H, W) float32 -> (H, W, 3) uint8: exposure and light tint, blur, sensor noise."""
    tint = style.exposure * 255.0 * np.asarray(style.light_colour, dtype=np.float32)
    image = image * tint[:, None, None]
    if style.blur_sigma > 0.0:
        image = _gaussian_blur(image, style.blur_sigma)
    if style.noise_sigma > 0.0:
        # Triangular noise (the sum of two uniforms, standard deviation sqrt(1/6)) looks like Gaussian
        # sensor noise and costs a third of numpy's normal sampler.
        noise_rng = np.random.default_rng(style.noise_seed)
        scale = np.float32(style.noise_sigma * np.sqrt(6.0))
        first, second = (noise_rng.random(image.shape, dtype=np.float32) for _ in range(2))
        image += scale * (first + second - 1.0)
    return np.ascontiguousarray(np.clip(image + 0.5, 0.0, 255.0).astype(np.uint8).transpose(1, 2, 0))


def _person_truth(instance_id, person, world_pelvis, camera_joints, camera, depth, visible_pixels):
    """PersonTruth of one person from its world-frame parameters, world pelvis (3,), camera-frame joints
    (24, 3), and the frame's depth image."""
    # The body model turns everything about the rest pelvis: x -> R (x - pelvis_rest) + pelvis_rest + transl.
    # Moving the world into the camera frame keeps that form with R_cam = R_cw R and transl_cam below.
    pelvis_rest = world_pelvis - person.translation
    camera_rotmats = np.array(person.rotmats, dtype=np.float64)
    camera_rotmats[0] = camera.rotation @ camera_rotmats[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        joints_2d = camera.project(camera_joints)
    return PersonTruth(
        instance_id=instance_id,
        betas=np.array(person.betas, dtype=np.float64),
        rotmats=camera_rotmats,
        translation=camera_joints[0] - pelvis_rest,
        joints_3d=camera_joints,
        joints_2d=joints_2d,
        joint_visible=_joint_visibility(joints_2d, camera_joints[:, 2], depth),
        visible_pixels=int(visible_pixels),
    )


def paint_background(scene):
    """The scene's background (3, H, W) float32 as render_scene paints it (it depends on the camera and the
    style's background only, not on the people): frames of a still camera can paint it once."""
    return _paint_background(scene)


def render_scene(scene, body_model, background=None):
    """Renders a scene.

    Args:
        scene: a Scene (from sample_scene or built by hand; at most 255 people).
        body_model: the BodyModel the people's parameters belong to.
        background: paint_background(scene), when already painted (a still camera's sequence; it is about
            half of a frame's cost), else None. It is not modified.
    Returns a RenderedFrame. Deterministic: the same scene gives the same bytes.
    """
    camera, style, people = scene.camera, scene.style, scene.people
    width, height = camera.width, camera.height
    if len(people) > 255:
        raise InputError(f"the instance mask holds at most 255 people, the scene has {len(people)}")
    light = camera.rotation @ np.asarray(style.light_direction, dtype=np.float64)
    light /= np.linalg.norm(light)

    world_joints = camera_vertices = camera_joints = np.zeros((0, NUM_JOINTS, 3))
    if people:
        world_vertices, world_joints = body_model.forward(
            np.stack([person.betas for person in people]),
            np.stack([person.rotmats for person in people]),
            np.stack([person.translation for person in people]),
        )
        camera_vertices = camera.world_to_camera(world_vertices)
        camera_joints = camera.world_to_camera(world_joints)
    mesh = _scene_mesh(scene, body_model, camera_vertices, light)
    fragments = rasterize(mesh.vertices, mesh.faces, camera.intrinsics, width, height)

    if background is None:
        image = _paint_background(scene).reshape(3, -1)
    elif background.shape != (3, height, width):
        raise InputError(f"the background must be (3, {height}, {width}) for this camera, got {background.shape}")
    else:
        image = np.array(background, dtype=np.float32).reshape(3, -1)
    image[:, fragments.pixel] = _shade(mesh, fragments, style.smooth_shading)
    instance_mask = np.zeros(width * height, dtype=np.uint8)
    instance_mask[fragments.pixel] = mesh.face_owner[fragments.face]
    instance_mask = instance_mask.reshape(height, width)
    depth = np.full(width * height, np.inf, dtype=np.float32)
    depth[fragments.pixel] = fragments.depth
    depth = depth.reshape(height, width)

    pixel_counts = np.bincount(instance_mask.reshape(-1), minlength=len(people) + 1)
    truths = tuple(
        _person_truth(index + 1, person, world_joints[index, 0], camera_joints[index], camera, depth,
                      pixel_counts[index + 1])
        for index, person in enumerate(people)
    )
    return RenderedFrame(_finish_image(image.reshape(3, height, width), style), instance_mask, depth, camera, truths)


def instance_mask(camera_vertices, faces, intrinsics, width, height):
    """The instance mask of posed meshes alone (no scene): (P, V, 3) camera-frame vertices of P people
    sharing `faces` (F, 3) -> (height, width) uint8, 0 = background, k = person k, with exact occlusion
    between them. Used where a dataset gives meshes but no segmentation."""
    camera_vertices = np.asarray(camera_vertices, dtype=np.float64)
    count = len(camera_vertices)
    if count > 255:
        raise InputError(f"the instance mask holds at most 255 people, got {count}")
    mask = np.zeros(width * height, dtype=np.uint8)
    if count:
        faces = np.asarray(faces, dtype=np.int64)
        vertex_count = camera_vertices.shape[1]
        all_faces = np.concatenate([faces + person * vertex_count for person in range(count)])
        fragments = rasterize(camera_vertices.reshape(-1, 3), all_faces, intrinsics, width, height)
        mask[fragments.pixel] = fragments.face // len(faces) + 1
    return mask.reshape(height, width)


# ---------------------------------------------------------------------------------------------------
# Benchmark


def _bench_bodies(rng, count):
    """Random but limited bodies for the benchmark: betas within +-2, joint rotations ~0.25 rad."""
    bodies = []
    for _ in range(count):
        axis_angle = np.concatenate([np.zeros((1, 3)), rng.normal(0.0, 0.25, (NUM_JOINTS - 1, 3))])
        betas = np.clip(rng.normal(0.0, 1.0, NUM_BETAS), -2.0, 2.0)
        bodies.append(PosedBody(betas, axis_angle_to_matrix(axis_angle)))
    return bodies


def _frames_per_second(render_one, frames, warmup=3):
    """Frames per second of render_one(i) over `frames` calls, after `warmup` discarded calls."""
    for index in range(warmup):
        render_one(index)
    start = time.perf_counter()
    for index in range(frames):
        render_one(warmup + index)
    return frames / (time.perf_counter() - start)


def run_benchmark(body_model, frames=40):
    """Frames per second of sample_scene + render_scene: (640x480 with 1-3 people, 256x256 crop of one)."""

    def full_frame(seed):
        rng = np.random.default_rng(seed)
        scene = sample_scene(rng, body_model, _bench_bodies(rng, int(rng.integers(1, 4))), 640, 480)
        return render_scene(scene, body_model)

    def crop(seed):
        rng = np.random.default_rng(seed)
        scene = sample_scene(rng, body_model, _bench_bodies(rng, 1), 640, 480)
        box = person_crop_box(scene, body_model, 0)
        return render_scene(dataclasses.replace(scene, camera=crop_camera(scene.camera, box, 256)), body_model)

    # A still camera's sequence (one person, frames differing in their sensor noise), the background painted
    # for every frame or once (as decoder.sequences renders them).
    rng = np.random.default_rng(0)
    still = sample_scene(rng, body_model, _bench_bodies(rng, 1), 640, 480)
    background = paint_background(still)

    def still_frame(seed, painted=None):
        return render_scene(dataclasses.replace(still, style=dataclasses.replace(still.style, noise_seed=seed)),
                            body_model, painted)

    return (_frames_per_second(full_frame, frames), _frames_per_second(crop, frames),
            _frames_per_second(still_frame, frames), _frames_per_second(lambda seed: still_frame(seed, background), frames))


def main(argv=None):
    """Command line: `python -m fasthmr_model.data.render --bench [--frames N] [--body PATH]`."""
    parser = argparse.ArgumentParser(prog="python -m fasthmr_model.data.render", description=__doc__.splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="print the rendering throughput (frames/s)")
    parser.add_argument("--frames", type=int, default=40, help="timed frames per measurement (default 40)")
    parser.add_argument("--body", type=Path, help="body model file (default: the synthetic body, built on the fly)")
    args = parser.parse_args(argv)
    if not args.bench:
        parser.error("nothing to do: pass --bench")
    if args.frames < 1:
        parser.error(f"--frames must be at least 1, got {args.frames}")

    with tempfile.TemporaryDirectory() as folder:
        try:
            body_model = BodyModel.from_file(args.body or write_synthetic_body(Path(folder) / "synthetic_body.npz"))
        except FastHMRError as error:
            parser.exit(2, f"error: {error}\n")
    full_rate, crop_rate, still_rate, still_once_rate = run_benchmark(body_model, args.frames)
    print(f"640x480, 1-3 people: {full_rate:.1f} frames/s ({1000.0 / full_rate:.1f} ms/frame)")
    print(f"256x256 crop, 1 person: {crop_rate:.1f} frames/s ({1000.0 / crop_rate:.1f} ms/frame)")
    print(f"(sample_scene + render_scene, {args.frames} frames each after 3 warm-up frames, one process)")
    for label, rate in (("background painted per frame", still_rate), ("background painted once", still_once_rate)):
        print(f"640x480 still camera, 1 person, {label}: {rate:.1f} frames/s ({1000.0 / rate:.1f} ms/frame)")


if __name__ == "__main__":
    main()

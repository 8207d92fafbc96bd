"""Robot-like cameras for the synthetic world: intrinsics from a field of view, a camera pose like a
robot's head or mast camera, placement of people on the floor in front of it, and crop cameras.

World frame: the body model's (y up, metres), floor at y = 0. Camera frame: ROS's optical frame
(x right, y down, z forward). A camera maps world points x_w to camera points x_c = R x_w + t, and a
camera point to the pixel (u, v) = (K x_c)[:2] / z_c, where pixel (u, v) has its centre at (u, v).
Every sampler draws from a numpy Generator in a fixed order, so the same seed gives the same scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fasthmr_model.errors import InputError


@dataclass(frozen=True)
class Camera:
    """A pinhole camera placed in the world.

    Args:
        intrinsics: (3, 3) K.
        width, height: image size in pixels.
        rotation: (3, 3) R, world -> camera.
        translation: (3,) t, world -> camera (x_c = R x_w + t).
    """

    intrinsics: np.ndarray
    width: int
    height: int
    rotation: np.ndarray
    translation: np.ndarray

    @property
    def position(self):
        """(3,) the camera centre in the world: -R^T t."""
        return -self.rotation.T @ self.translation

    def world_to_camera(self, points):
        """World points (..., 3) -> camera-frame points (..., 3)."""
        return np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation

    def project(self, points_camera):
        """Camera-frame points (..., 3) with z > 0 -> pixel coordinates (..., 2)."""
        projected = np.asarray(points_camera, dtype=np.float64) @ self.intrinsics.T
        return projected[..., :2] / projected[..., 2:3]


@dataclass(frozen=True)
class CameraConfig:
    """Ranges of the sampled robot camera.

    Args:
        height_range: camera height above the floor (m).
        pitch_limit_deg: the optical axis tilts up or down by at most this much (a level-looking robot).
        roll_limit_deg: small roll of a camera mount that is not perfectly level.
        horizontal_fov_range_deg: horizontal field of view (55 deg is a narrow webcam, 90 deg a wide one).
    """

    height_range: tuple = (0.5, 1.8)
    pitch_limit_deg: float = 15.0
    roll_limit_deg: float = 3.0
    horizontal_fov_range_deg: tuple = (55.0, 90.0)


@dataclass(frozen=True)
class PlacementConfig:
    """How people are set on the floor in front of the camera.

    Args:
        distance_range: horizontal distance from the camera to a person's pelvis (m).
        min_gap: free space kept between two people's footprints (m), so bodies never interpenetrate.
        camera_clearance: free space kept between the camera and any footprint (m).
        out_of_frame_probability: chance that a person stands at the left or right image border, partly
            outside the frame (people close to the camera are also cut at the top or bottom).
        max_attempts: random positions tried per person before giving up.
    """

    distance_range: tuple = (1.0, 8.0)
    min_gap: float = 0.1
    camera_clearance: float = 0.2
    out_of_frame_probability: float = 0.2
    max_attempts: int = 200


def intrinsics_from_fov(horizontal_fov_deg, width, height):
    """(3, 3) K of a camera with square pixels, the given horizontal field of view (degrees, between
    the outer edges of the outermost pixels) and the principal point at the image centre."""
    if not 0.0 < horizontal_fov_deg < 180.0:
        raise InputError(f"horizontal_fov_deg must be in (0, 180), got {horizontal_fov_deg}")
    if width < 1 or height < 1:
        raise InputError(f"the image size must be positive, got {width}x{height}")
    focal = 0.5 * width / np.tan(0.5 * np.radians(horizontal_fov_deg))
    # Pixel u has its centre at u, so the image spans [-0.5, width - 0.5] and its centre is (width - 1) / 2.
    return np.array([[focal, 0.0, 0.5 * (width - 1)], [0.0, focal, 0.5 * (height - 1)], [0.0, 0.0, 1.0]])


def _rotation_x(angle):
    cos, sin = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])


def _rotation_y(angle):
    cos, sin = np.cos(angle), np.sin(angle)
    return np.array([[cos, 0.0, sin], [0.0, 1.0, 0.0], [-sin, 0.0, cos]])


def _rotation_z(angle):
    cos, sin = np.cos(angle), np.sin(angle)
    return np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])


# Columns: the camera's x (right), y (down) and z (forward) axes in the world when yaw, pitch and roll
# are zero: looking along world +z, level, upright (right is world -x because world y is up).
_LEVEL_CAMERA_AXES = np.array([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])


def camera_rotation(yaw, pitch, roll):
    """(3, 3) world -> camera rotation R of a camera with the given angles (radians).

    yaw: heading about world y; 0 looks along world +z, positive turns the view towards world +x.
    pitch: positive tilts the optical axis down (the horizon moves up in the image).
    roll: rotation about the optical axis.
    """
    camera_to_world = _rotation_y(yaw) @ _LEVEL_CAMERA_AXES @ _rotation_x(-pitch) @ _rotation_z(roll)
    return camera_to_world.T


def camera_pose(position, yaw, pitch, roll):
    """(R, t) world -> camera of a camera at world `position` (3,) with the given angles."""
    rotation = camera_rotation(yaw, pitch, roll)
    return rotation, -rotation @ np.asarray(position, dtype=np.float64)


def sample_camera(rng, width, height, config=CameraConfig()):
    """A random robot camera over the world origin (camera centre at x = z = 0).

    Args:
        rng: a numpy Generator (or an int seed).
        width, height: image size in pixels.
    Returns a Camera.
    """
    rng = np.random.default_rng(rng)
    fov = rng.uniform(*config.horizontal_fov_range_deg)
    camera_height = rng.uniform(*config.height_range)
    yaw = rng.uniform(-np.pi, np.pi)
    pitch = np.radians(rng.uniform(-config.pitch_limit_deg, config.pitch_limit_deg))
    roll = np.radians(rng.uniform(-config.roll_limit_deg, config.roll_limit_deg))
    rotation, translation = camera_pose((0.0, camera_height, 0.0), yaw, pitch, roll)
    return Camera(intrinsics_from_fov(fov, width, height), int(width), int(height), rotation, translation)


def camera_heading(camera):
    """The yaw (radians, as in camera_rotation) of the camera's optical axis projected on the floor."""
    forward = camera.rotation[2]  # row 2 of R = the camera's z axis in world coordinates
    return float(np.arctan2(forward[0], forward[2]))


def place_people(rng, camera, footprint_radii, config=PlacementConfig()):
    """Floor positions for N people in front of `camera`, none overlapping another's footprint.

    A person's footprint is the disc of radius footprint_radii[i] around their pelvis on the floor (the
    farthest any of their vertices reaches horizontally from it). Two people are at least
    r_i + r_j + min_gap apart, so their bodies cannot interpenetrate.

    Args:
        rng: a numpy Generator (or an int seed).
        camera: the Camera they stand in front of.
        footprint_radii: (N,) metres.
    Returns (N, 2) world (x, z) floor positions of the pelvises.
    Raises InputError when a person cannot be placed in max_attempts tries (too many or too wide people
    for the distance range).
    """
    rng = np.random.default_rng(rng)
    radii = np.asarray(footprint_radii, dtype=np.float64).reshape(-1)
    centre = camera.position[[0, 2]]
    heading = camera_heading(camera)
    # Bearing of the image's left/right edge from the optical axis (ignoring pitch and roll, which
    # change it by a few percent at most within the configured limits).
    half_fov = np.arctan(0.5 * camera.width / camera.intrinsics[0, 0])
    near, far = config.distance_range
    positions = np.empty((len(radii), 2))
    for person, radius in enumerate(radii):
        for _ in range(config.max_attempts):
            distance = rng.uniform(near, far)
            # The person's half-width as seen from the camera, as an angle.
            angular_radius = np.arcsin(min(1.0, radius / distance))
            if rng.random() < config.out_of_frame_probability:
                side = rng.choice((-1.0, 1.0))
                bearing = side * (half_fov + rng.uniform(-0.8, 0.5) * angular_radius)
            else:
                bearing = rng.uniform(-1.0, 1.0) * max(0.0, half_fov - angular_radius)
            direction = heading + bearing
            candidate = centre + distance * np.array([np.sin(direction), np.cos(direction)])
            if distance < radius + config.camera_clearance:
                continue
            gaps = np.linalg.norm(positions[:person] - candidate, axis=1) - radii[:person] - radius
            if np.all(gaps >= config.min_gap):
                positions[person] = candidate
                break
        else:
            raise InputError(
                f"could not place person {person} (footprint radius {radius:.2f} m) among {len(radii)} people in "
                f"{config.max_attempts} tries: place fewer people or widen PlacementConfig.distance_range"
            )
    return positions


def crop_camera(camera, crop_box, size):
    """The camera whose image is the square crop `crop_box` of `camera`'s image, resampled to size x size.

    crop_box: (centre x, centre y, side) in the original image's pixels (fasthmr_model.data.crop's
    convention: crop pixel i has its centre at original coordinate centre - side / 2 + (i + 0.5) * side / size).
    Rendering with the returned camera gives that crop directly, at full detail. Extrinsics are unchanged.
    """
    centre_x, centre_y, side = (float(value) for value in crop_box)
    if side <= 0 or size < 1:
        raise InputError(f"a crop needs a positive side and size, got side {side} and size {size}")
    step = side / size  # original pixels per crop pixel
    intrinsics = camera.intrinsics.copy()
    intrinsics[0, :2] /= step
    intrinsics[1, 1] /= step
    intrinsics[0, 2] = (camera.intrinsics[0, 2] - (centre_x - 0.5 * side)) / step - 0.5
    intrinsics[1, 2] = (camera.intrinsics[1, 2] - (centre_y - 0.5 * side)) / step - 0.5
    return Camera(intrinsics, int(size), int(size), camera.rotation, camera.translation)

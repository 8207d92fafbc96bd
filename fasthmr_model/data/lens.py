"""Lens distortion: the camera models of ROS's CameraInfo (plumb_bob, rational_polynomial, equidistant).

A CameraModel is K with a distortion model and its coefficients D, as CameraInfo states them (the library
stays ROS-free: fasthmr_ros fills it from the message). Distortion maps normalised undistorted coordinates
(x, y) = ((u - cx) / fx, (v - cy) / fy) of the ideal pinhole camera to distorted ones, with OpenCV's
formulas (the ones ROS's image_proc applies):

    plumb_bob            D = (k1, k2, p1, p2, k3)
    rational_polynomial  D = (k1, k2, p1, p2, k3, k4, k5, k6)
        x' = x q + 2 p1 x y + p2 (r^2 + 2 x^2),  y' = y q + p1 (r^2 + 2 y^2) + 2 p2 x y,
        q = (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 + k6 r^6),  r^2 = x^2 + y^2
    equidistant          D = (k1, k2, k3, k4)   (OpenCV's fisheye model)
        theta = atan(r),  theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8),
        (x', y') = (theta_d / r) (x, y)

The undistorted view keeps K (as OpenCV's undistort does by default). Undistortion (distorted -> ideal) has
no closed form; `undistort_pixels` solves it by Newton's method. Run-time module: numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fasthmr_model.errors import InputError

# Coefficient count of each distortion model (CameraInfo's D).
DISTORTION_COEFFICIENTS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
# Newton's method for undistortion: iterations, and the residual (normalised units, about 1e-6 px at f = 1000)
# under which a point counts as solved.
UNDISTORT_ITERATIONS = 20
UNDISTORT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class CameraModel:
    """A camera: K (3, 3) pinhole intrinsics, the distortion model's name and its coefficients D.

    distortion_model "" or coefficients all zero (or none) mean no distortion: `distorted` is then False
    and the library takes its pinhole path. Raises InputError for an unknown model with non-zero
    coefficients, a coefficient count the model does not have, or coefficients that are not finite.
    """

    intrinsics: np.ndarray
    distortion_model: str = ""
    coefficients: tuple[float, ...] = ()
    distorted: bool = field(init=False)

    def __post_init__(self) -> None:
        coefficients = tuple(float(value) for value in self.coefficients)
        object.__setattr__(self, "coefficients", coefficients)
        object.__setattr__(self, "intrinsics", np.asarray(self.intrinsics, np.float64).reshape(3, 3))
        if not all(math.isfinite(value) for value in coefficients):
            raise InputError(f"distortion coefficients must be finite, got {list(coefficients)}; check the "
                             "CameraInfo's D")
        distorted = any(coefficients)
        if distorted:
            expected = DISTORTION_COEFFICIENTS.get(self.distortion_model)
            if expected is None:
                raise InputError(f"distortion model {self.distortion_model!r} is not supported; use one of "
                                 f"{', '.join(DISTORTION_COEFFICIENTS)}, or publish rectified images (and set the "
                                 "parameter image_rectified)")
            if len(coefficients) != expected:
                raise InputError(f"the {self.distortion_model} model has {expected} coefficients, D has "
                                 f"{len(coefficients)}; check the CameraInfo's D")
        object.__setattr__(self, "distorted", distorted)

    def distort_normalised(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ideal normalised coordinates (any shape) -> distorted normalised coordinates (the same shape)."""
        d = self.coefficients
        if not self.distorted:
            return x, y
        if self.distortion_model == "equidistant":
            k1, k2, k3, k4 = d
            r = np.hypot(x, y)
            theta = np.arctan(r)
            theta2 = theta * theta
            theta_d = theta * (1 + theta2 * (k1 + theta2 * (k2 + theta2 * (k3 + theta2 * k4))))
            # theta_d / r tends to 1 + ... = 1 at the centre (theta / r -> 1).
            scale = np.divide(theta_d, r, out=np.ones_like(r), where=r > 1e-12)
            return x * scale, y * scale
        k1, k2, p1, p2, k3 = d[:5]
        k4, k5, k6 = d[5:] if len(d) == 8 else (0.0, 0.0, 0.0)
        r2 = x * x + y * y
        radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        xy = x * y
        return (x * radial + 2 * p1 * xy + p2 * (r2 + 2 * x * x),
                y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * xy)

    def normalise(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates -> normalised coordinates through K^-1 (skew included), in the coordinates' float
        type (K's entries as Python floats keep float32 grids float32)."""
        (fx, skew, cx), (_, fy, cy) = self.intrinsics[:2].tolist()
        y = (v - cy) / fy
        return (u - cx - skew * y) / fx, y

    def to_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised coordinates -> pixel coordinates through K."""
        (fx, skew, cx), (_, fy, cy) = self.intrinsics[:2].tolist()
        return fx * x + skew * y + cx, fy * y + cy

    def distort_pixels(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels of the undistorted view (same K) -> where they are in the distorted image."""
        return self.to_pixels(*self.distort_normalised(*self.normalise(u, v)))

    def undistort_pixels(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels of the distorted image -> pixels of the undistorted view (same K): the inverse of
        distort_pixels, by Newton's method (a numerical Jacobian per point, started at the distorted point).

        Raises InputError when a point does not converge (coefficients that fold the image over itself there).
        """
        if not self.distorted:
            return u, v
        target_x, target_y = self.normalise(np.asarray(u, np.float64), np.asarray(v, np.float64))
        x, y = target_x.copy(), target_y.copy()
        step = 1e-6
        for _ in range(UNDISTORT_ITERATIONS):
            fx_, fy_ = self.distort_normalised(x, y)
            error_x, error_y = fx_ - target_x, fy_ - target_y
            if np.all(np.hypot(error_x, error_y) < UNDISTORT_TOLERANCE):
                break
            # Jacobian d(distorted)/d(x, y) by central differences.
            xp, yp = self.distort_normalised(x + step, y)
            xm, ym = self.distort_normalised(x - step, y)
            a, c = (xp - xm) / (2 * step), (yp - ym) / (2 * step)
            xp, yp = self.distort_normalised(x, y + step)
            xm, ym = self.distort_normalised(x, y - step)
            b, d = (xp - xm) / (2 * step), (yp - ym) / (2 * step)
            determinant = a * d - b * c
            determinant = np.where(np.abs(determinant) < 1e-12, 1e-12, determinant)
            x = x - (d * error_x - b * error_y) / determinant
            y = y - (a * error_y - c * error_x) / determinant
        residual = np.hypot(*(np.subtract(a, b) for a, b in zip(self.distort_normalised(x, y), (target_x, target_y))))
        if not np.all(residual < 1e3 * UNDISTORT_TOLERANCE):
            raise InputError(f"the {self.distortion_model} model with D = {list(self.coefficients)} cannot be "
                             "inverted at some pixels (it folds the image there); check the CameraInfo's D")
        return self.to_pixels(x, y)


def sample_bilinear(source: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """source (h, w) or (h, w, C) sampled at pixel coordinates u, v (any shape S) -> S or S + (C,) float32;
    samples outside the source count as black (as the pinhole path's constant border)."""
    height, width = source.shape[:2]
    channels = source.shape[2] if source.ndim == 3 else 1
    # One black pixel before and two after on each axis: every tap of a clipped coordinate reads a real pixel or
    # black, with no mask per tap; gathering whole pixels (rows of `flat`) is the fast way to gather.
    padded = np.zeros((height + 3, width + 3, channels), source.dtype)
    padded[1:height + 1, 1:width + 1] = source.reshape(height, width, channels)
    flat = padded.reshape(-1, channels)
    column = np.clip(np.ravel(u) + 1.0, 0.0, width + 1.0)
    row = np.clip(np.ravel(v) + 1.0, 0.0, height + 1.0)
    left, top = column.astype(np.intp), row.astype(np.intp)
    across, down = (column - left).astype(np.float32), (row - top).astype(np.float32)
    first = top * (width + 3) + left
    lower_right = across * down
    out = np.take(flat, first, axis=0) * (1.0 - across - down + lower_right)[:, None]
    for offset, weight in ((1, across - lower_right), (width + 3, down - lower_right), (width + 4, lower_right)):
        out += np.take(flat, first + offset, axis=0) * weight[:, None]
    return out.reshape(np.shape(u) + source.shape[2:])


def sample_nearest(source: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """source (h, w) at the pixels nearest to u, v (any shape S) -> S of source's dtype, 0 outside the source
    (for instance ids, which must not be blended)."""
    height, width = source.shape
    rows, cols = np.rint(v).astype(np.intp), np.rint(u).astype(np.intp)
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    return np.where(inside, source[np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)], 0).astype(source.dtype)


def distorted_view(image: np.ndarray, mask: np.ndarray, camera: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """What a camera with `camera`'s lens would see, from an undistorted image (H, W, 3) uint8 and instance mask
    (H, W) of the same K (the synthetic world's renders): each distorted pixel looks up its undistorted point,
    the image bilinearly, the mask at the nearest pixel. Points outside the undistorted image are black and
    background. Returns (image (H, W, 3) uint8, mask (H, W) of mask's dtype)."""
    height, width = mask.shape
    u, v = camera.undistort_pixels(*np.meshgrid(np.arange(width, dtype=np.float64),
                                                np.arange(height, dtype=np.float64)))
    distorted_image = np.clip(np.rint(sample_bilinear(image, u, v)), 0, 255).astype(np.uint8)
    return distorted_image, sample_nearest(mask, u, v)

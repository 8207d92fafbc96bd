"""From a camera image and an instance mask to encoder inputs, and from the crop camera back to the real one.

Per person (one instance id of the mask): the mask's box is expanded to HMR2.0's 3:4 (w:h) aspect, a square
crop of the box's height is resampled to 256x256 with an anti-aliasing (triangle) filter, its central 192
columns are kept and ImageNet-normalised; the person's mask goes through the same resampling and is pooled
onto the 16x12 token grid. Pixel coordinates follow ROS/OpenCV: pixel (u, v) has its centre at (u, v).

With a distorted camera (fasthmr_model.data.lens.CameraModel), the crop is cut from the undistorted view
(same K): the person's box is undistorted, and only the crop's sample grid is mapped through the lens model
into the image (bilinear), at up to the image's own resolution, before the same triangle filter brings it
to 256x192. The crop box, and so the translation, are then in the undistorted view's pixels.
Run-time module: numpy only.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fasthmr_model.bundle import IMAGENET_MEAN, IMAGENET_STD
from fasthmr_model.encoder.config import (
    CROP_SIZE, IMAGE_HEIGHT, IMAGE_WIDTH, PATCH_PADDING, PATCH_SIZE, TOKEN_GRID,
)
from fasthmr_model.data.lens import CameraModel, sample_bilinear, sample_nearest
from fasthmr_model.errors import InputError

# Columns of the 256x256 crop that the encoder sees: HMR2.0's x[..., 32:-32].
CROP_COLUMN_OFFSET = (CROP_SIZE - IMAGE_WIDTH) // 2
# Focal lengths (px) a real camera can have: from a fisheye on a tiny image to a telephoto on a huge one.
FOCAL_RANGE_PX = (1.0, 1e6)
# The largest skew and principal-point coordinate (px) accepted.
MAX_PRINCIPAL_OFFSET_PX = 1e6
# The largest max_persons allowed: a batch of 100 crops is 60 MB of encoder input alone.
MAX_PERSONS_LIMIT = 100
# A distorted crop is sampled first at up to this many samples per output pixel and axis (the image's own
# resolution for crops up to 4 x 256 px high), then filtered down: it bounds the work of a huge crop.
MAX_UNDISTORT_OVERSAMPLING = 4
_MEAN = np.array(IMAGENET_MEAN, np.float32) * 255.0
_INV_STD = 1.0 / (np.array(IMAGENET_STD, np.float32) * 255.0)


@dataclass(frozen=True)
class PreprocessConfig:
    """Args:
        box_scale: the square crop's side relative to the 3:4-expanded mask box (HMR2.0 at inference: 1.0).
        min_person_pixels: instances with fewer mask pixels are skipped (too small to recover a body).
        max_persons: at most this many persons per frame, the largest (by mask pixels) first; the others are
            counted and skipped. It bounds a frame's time and memory: the encoder runs them as one batch.
        person_token_min_fraction: a token is a person token when at least this fraction of its 16x16
            footprint is covered by the person (0 = any overlap at all).
        threads: the persons of a frame are cropped by up to this many threads (numpy releases the GIL in
            the resampling). 1 = in the calling thread, the default: with frames arriving between encoder runs
            (the node, `python -m fasthmr_ros.bench`), waking a second thread on cold caches cost more than it
            saved (three people: 3.2 ms with two threads, 2.8 ms with one).
    """

    box_scale: float = 1.0
    min_person_pixels: int = 64
    max_persons: int = 10
    person_token_min_fraction: float = 0.0
    threads: int = 1

    def __post_init__(self) -> None:
        if not 0.5 <= self.box_scale <= 4.0:
            raise InputError(f"box_scale must be in [0.5, 4], got {self.box_scale}")
        if self.min_person_pixels < 1:
            raise InputError(f"min_person_pixels must be >= 1, got {self.min_person_pixels}")
        if not 1 <= self.max_persons <= MAX_PERSONS_LIMIT:
            raise InputError(f"max_persons must be in [1, {MAX_PERSONS_LIMIT}], got {self.max_persons}")
        if not 0.0 <= self.person_token_min_fraction < 1.0:
            raise InputError(f"person_token_min_fraction must be in [0, 1), got {self.person_token_min_fraction}")
        if not 1 <= self.threads <= 64:
            raise InputError(f"threads must be in [1, 64], got {self.threads}")


class PersonCrops(NamedTuple):
    """Encoder inputs for the B persons of one frame.

    ids (B,) int: instance ids; boxes (B, 4): tight mask boxes x0, y0, x1, y1 (pixel edges);
    crop_boxes (B, 3): square crops (centre x, centre y, side) in pixels; windows (B, 256, 192, 3) float32:
    the RGB crop windows in pixel values (0..255); person_tokens (B, 192) float32 in {0, 1};
    over_cap: persons of the frame skipped because it had more than max_persons.
    """

    ids: np.ndarray
    boxes: np.ndarray
    crop_boxes: np.ndarray
    windows: np.ndarray
    person_tokens: np.ndarray
    over_cap: int = 0

    @property
    def images(self) -> np.ndarray:
        """The encoder's `image` input (B, 3, 256, 192), ImageNet-normalised."""
        return normalise_windows(self.windows)


def validate_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"image must be an (H, W, 3) uint8 RGB array, got {_describe(image)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"image is empty ({image.shape})")


def validate_instance_mask(instance_mask: np.ndarray, image_shape: tuple[int, ...]) -> None:
    if not isinstance(instance_mask, np.ndarray) or instance_mask.ndim != 2 or instance_mask.dtype.kind not in "ub":
        raise InputError(f"instance mask must be an (H, W) unsigned-integer or bool array, got {_describe(instance_mask)}")
    if instance_mask.shape != tuple(image_shape[:2]):
        raise InputError(f"instance mask is {instance_mask.shape[1]}x{instance_mask.shape[0]} but the image is "
                         f"{image_shape[1]}x{image_shape[0]}; the segmentation must have the image's size")


def person_boxes(instance_mask: np.ndarray, min_pixels: int = 1, max_persons: int | None = None
                 ) -> tuple[dict[int, np.ndarray], int]:
    """instance id -> tight box (x0, y0, x1, y1) in pixel-edge coordinates, for ids with >= min_pixels pixels,
    at most max_persons of them (the largest; None: all), and how many were left out for the cap.

    0 is background. The box of pixels u in [a, b] is [a - 0.5, b + 0.5].
    """
    # Everything after the two reductions below reads only the band of rows and columns that holds any
    # person: counting ids over the whole image (bincount widens every pixel to int64) cost more than the
    # rest of a frame's preprocessing.
    rows_with_person = np.flatnonzero(instance_mask.any(axis=1))
    cols_with_person = np.flatnonzero(instance_mask.any(axis=0))
    if len(rows_with_person) == 0:
        return {}, 0
    top, left = rows_with_person[0], cols_with_person[0]
    band = instance_mask[top:rows_with_person[-1] + 1, left:cols_with_person[-1] + 1]
    counts = np.bincount(band[band != 0], minlength=1)
    counts[0] = 0
    persons = np.flatnonzero(counts >= min_pixels)
    over_cap = 0
    if max_persons is not None and len(persons) > max_persons:
        # The largest first (stable: equal sizes keep the smaller id); the boxes below are found for these only,
        # so a mask of a thousand instances costs no more than one at the cap.
        persons = np.sort(persons[np.argsort(-counts[persons], kind="stable")[:max_persons]])
        over_cap = int(np.count_nonzero(counts >= min_pixels)) - max_persons
    boxes = {}
    for instance_id in persons:
        person = band == instance_id
        rows = np.flatnonzero(person.any(axis=1)) + top
        cols = np.flatnonzero(person.any(axis=0)) + left
        boxes[int(instance_id)] = np.array([cols[0] - 0.5, rows[0] - 0.5, cols[-1] + 0.5, rows[-1] + 0.5])
    return boxes, over_cap


def crop_box_for(box: np.ndarray, box_scale: float = 1.0) -> np.ndarray:
    """Tight box (x0, y0, x1, y1) -> square crop (centre x, centre y, side): HMR2.0's 3:4 expansion, then scale."""
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    side = max(height, width * CROP_SIZE / IMAGE_WIDTH) * box_scale
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, side])


class _Resampler(NamedTuple):
    """out[i] = sum_k weights[i, k] * source[indices[i, k]] along one axis."""

    indices: np.ndarray
    weights: np.ndarray


def _resampler(first_edge: float, side: float, num_out: int, num_in: int) -> _Resampler:
    """Triangle-filter resampling of `num_out` samples over [first_edge, first_edge + side) of a source axis.

    The filter is widened by the minification factor (anti-aliasing); taps that fall outside the source
    count as black, as with a constant border.
    """
    step = side / num_out
    support = max(1.0, step)
    centres = first_edge + (np.arange(num_out) + 0.5) * step  # source pixel u has its centre at u
    # Only pixels strictly inside (centre - support, centre + support) have a weight: at most ceil(2 support)
    # of them, from the first integer above centre - support. (Zero-weight taps would add exact zeros.)
    taps = np.arange(int(np.ceil(2 * support)))
    indices = (np.floor(centres - support).astype(np.int64) + 1)[:, None] + taps[None, :]
    weights = np.clip(1.0 - np.abs(indices - centres[:, None]) / support, 0.0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    outside = (indices < 0) | (indices >= num_in)
    weights[outside] = 0.0
    return _Resampler(np.clip(indices, 0, num_in - 1), weights.astype(np.float32))


def _apply(resampler: _Resampler, source: np.ndarray) -> np.ndarray:
    """Resamples axis 0 of source (N, ...) -> (num_out, ...) float32.

    The taps are summed in order, one multiply and one add per tap, so the result does not depend on
    how the arrays are laid out. Axis 0 is the fast one to gather along: each index picks a whole
    contiguous slab, where gathering along an inner axis copies a few bytes at a time.
    """
    weight_shape = (-1,) + (1,) * (source.ndim - 1)
    out = np.take(source, resampler.indices[:, 0], axis=0) * resampler.weights[:, 0].reshape(weight_shape)
    for tap in range(1, resampler.indices.shape[1]):
        term = np.take(source, resampler.indices[:, tap], axis=0)
        out += np.multiply(term, resampler.weights[:, tap].reshape(weight_shape), dtype=np.float32)
    return out


class _CropSampling(NamedTuple):
    """Where a square crop's 256x192 window reads from a source image: the source rows and columns that
    the filters touch (slices) and the resamplers relative to them."""

    rows: slice
    cols: slice
    row_resampler: _Resampler
    col_resampler: _Resampler


def _crop_sampling(crop_box: np.ndarray, source_shape: tuple[int, ...]) -> _CropSampling:
    """The sampling of the encoder's window of the square crop (centre x, centre y, side) in a source of
    source_shape (H, W, ...)."""
    centre_x, centre_y, side = crop_box
    scale = side / CROP_SIZE
    rows = _resampler(centre_y - side / 2, side, CROP_SIZE, source_shape[0])
    cols = _resampler(centre_x - side / 2 + CROP_COLUMN_OFFSET * scale, IMAGE_WIDTH * scale, IMAGE_WIDTH,
                      source_shape[1])
    row_start, col_start = rows.indices.min(), cols.indices.min()
    return _CropSampling(
        slice(row_start, rows.indices.max() + 1), slice(col_start, cols.indices.max() + 1),
        _Resampler(rows.indices - row_start, rows.weights), _Resampler(cols.indices - col_start, cols.weights),
    )


def _resample_window_transposed(window: np.ndarray, sampling: _CropSampling) -> np.ndarray:
    """source[sampling.rows, sampling.cols] (h, w, ...) -> the encoder's window, transposed: (192, 256, ...)
    float32, C-contiguous (columns first: the layout the second pass produces, so no copy puts it back).

    Only the part of the source that the filters touch is read, so the cost follows the crop, not the image.
    Rows first, then columns (on the transposed intermediate, so that both passes gather along axis 0).
    """
    resampled_rows = _apply(sampling.row_resampler, window)
    transposed = np.ascontiguousarray(np.swapaxes(resampled_rows, 0, 1))
    return _apply(sampling.col_resampler, transposed)


def _resample_window(window: np.ndarray, sampling: _CropSampling) -> np.ndarray:
    """source[sampling.rows, sampling.cols] (h, w, ...) -> the encoder's window (256, 192, ...) float32 (a view)."""
    return np.swapaxes(_resample_window_transposed(window, sampling), 0, 1)


def crop_window(image: np.ndarray, crop_box: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> the encoder's window of the square crop (256, 192, 3) float32, pixel values."""
    sampling = _crop_sampling(crop_box, image.shape)
    return _resample_window(image[sampling.rows, sampling.cols], sampling)


def normalise_windows(windows: np.ndarray) -> np.ndarray:
    """Windows (..., 256, 192, 3) in pixel values -> encoder input (..., 3, 256, 192) float32, ImageNet-normalised.

    The result is C-contiguous (what ONNX Runtime is fed): the transpose happens in the one pass that
    subtracts the mean, instead of in a later copy.
    """
    channels_first = np.moveaxis(windows, -1, -3)
    images = np.empty(channels_first.shape, np.float32)
    np.subtract(channels_first, _MEAN[:, None, None], out=images, dtype=np.float32)
    images *= _INV_STD[:, None, None]
    return images


def crop_image(image: np.ndarray, crop_box: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> normalised encoder input (3, 256, 192) float32."""
    return normalise_windows(crop_window(image, crop_box))


def crop_mask(person_mask: np.ndarray, crop_box: np.ndarray) -> np.ndarray:
    """Person coverage (H, W) bool -> coverage in the encoder window (256, 192) float32 in [0, 1]."""
    sampling = _crop_sampling(crop_box, person_mask.shape)
    return _resample_window(person_mask[sampling.rows, sampling.cols], sampling)


def _footprint_weights(resampler: _Resampler, num_in: int, grid: int) -> np.ndarray:
    """(grid, num_in): how much each source pixel of one axis counts towards each token's footprint mean on
    that axis (the resampler's rows summed over the footprint, with the patch padding, divided by its size)."""
    count = PATCH_PADDING + len(resampler.indices)
    rows = np.arange(PATCH_PADDING, count)[:, None]
    # A sum over (row, source pixel) pairs: taps clipped at the image border repeat a pixel (with weight 0).
    dense = np.bincount((rows * num_in + resampler.indices).ravel(), resampler.weights.ravel().astype(np.float64),
                        minlength=count * num_in).reshape(count, num_in)
    return dense[: grid * PATCH_SIZE].reshape(grid, PATCH_SIZE, num_in).sum(axis=1) / PATCH_SIZE


def person_token_fraction(window_mask: np.ndarray) -> np.ndarray:
    """Coverage (256, 192) -> fraction of each token's footprint covered, (192,) row-major over 16x12.

    The patch convolution pads by 2 px, so token (i, j) sees rows 16 i - 2 .. 16 i + 13 and columns
    16 j - 2 .. 16 j + 13 of the window (the last two rows and columns are seen by no token).
    """
    padded = np.pad(window_mask, PATCH_PADDING)
    grid_rows, grid_cols = TOKEN_GRID
    footprints = padded[: grid_rows * PATCH_SIZE, : grid_cols * PATCH_SIZE]
    return footprints.reshape(grid_rows, PATCH_SIZE, grid_cols, PATCH_SIZE).mean(axis=(1, 3)).ravel()


class _CropPool:
    """The crop threads: one pool for the process, replaced only when preprocess.threads changes, so the
    thread count stays bounded by the configuration (a pool per frame would cost more than it saves)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._threads = 0

    def get(self, threads: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._threads != threads:
                if self._pool is not None:
                    self._pool.shutdown(wait=False)
                self._pool, self._threads = ThreadPoolExecutor(threads, thread_name_prefix="fasthmr-crop"), threads
            return self._pool


_crop_pool = _CropPool()


def prepare_persons(image: np.ndarray, instance_mask: np.ndarray, config: PreprocessConfig = PreprocessConfig(),
                    camera: CameraModel | None = None) -> PersonCrops:
    """Crops and person-token flags for every person of the frame (B may be 0). camera: a distorted lens
    model crops from the undistorted view (module docstring; crop_boxes are then in its pixels); None or an
    undistorted one takes the pinhole path."""
    validate_image(image)
    validate_instance_mask(instance_mask, image.shape)
    if instance_mask.dtype == bool:
        instance_mask = instance_mask.astype(np.uint8)
    boxes, over_cap = person_boxes(instance_mask, config.min_person_pixels, config.max_persons)
    ids = np.array(sorted(boxes), dtype=np.int64)
    distorted = camera is not None and camera.distorted
    crop_from = {i: undistorted_box(instance_mask, boxes[i], i, camera) for i in ids} if distorted else boxes
    crop_boxes = np.array([crop_box_for(crop_from[i], config.box_scale) for i in ids]).reshape(-1, 3)
    # Stored column-major per window (B, 192, 256, 3), what the resampling produces; `windows` is its
    # (B, 256, 192, 3) view. Copying each window into row-major order cost as much as a resampling pass.
    windows_transposed = np.empty((len(ids), IMAGE_WIDTH, IMAGE_HEIGHT, 3), np.float32)
    person_tokens = np.empty((len(ids), TOKEN_GRID[0] * TOKEN_GRID[1]), np.float32)

    def crop_person(index: int) -> None:
        if distorted:
            source, person, sampling = _undistorted_sources(image, instance_mask, ids[index], crop_boxes[index], camera)
            windows_transposed[index] = _resample_window_transposed(source, sampling)
            # The coverage grid is as large as the crop's source pixels; its resampled window is pooled (the
            # pooled-weights product below hit multithreaded BLAS at this size: 40 ms on a busy 2-core machine).
            fraction = person_token_fraction(_resample_window(person, sampling))
        else:
            # One sampling for the image and the mask; the mask is compared with the id only where it is read.
            sampling = _crop_sampling(crop_boxes[index], image.shape)
            windows_transposed[index] = _resample_window_transposed(image[sampling.rows, sampling.cols], sampling)
            person = instance_mask[sampling.rows, sampling.cols] == ids[index]
            # The token fractions are linear in the mask: pooled resampling weights on each axis give them from the
            # source pixels directly (the same values as person_token_fraction of the resampled mask, up to
            # rounding).
            rows = _footprint_weights(sampling.row_resampler, person.shape[0], TOKEN_GRID[0])
            cols = _footprint_weights(sampling.col_resampler, person.shape[1], TOKEN_GRID[1])
            fraction = (rows @ person.astype(np.float64) @ cols.T).ravel()
        threshold = config.person_token_min_fraction
        person_tokens[index] = (fraction > threshold) if threshold == 0.0 else (fraction >= threshold)

    if min(config.threads, len(ids)) > 1:  # each person writes its own rows: the result does not depend on the threads
        list(_crop_pool.get(config.threads).map(crop_person, range(len(ids))))
    else:
        for index in range(len(ids)):
            crop_person(index)
    return PersonCrops(ids, np.array([boxes[i] for i in ids]).reshape(-1, 4), crop_boxes,
                       np.swapaxes(windows_transposed, 1, 2), person_tokens, over_cap)


def undistorted_box(instance_mask: np.ndarray, box: np.ndarray, instance_id: int, camera: CameraModel) -> np.ndarray:
    """The tight box (x0, y0, x1, y1) of one person in the undistorted view: its outline (the outer pixel edges
    of each row and column of its pixels inside `box`, its tight box in the image) undistorted."""
    x0, y0, x1, y1 = (int(round(value + 0.5)) for value in box)  # pixel-edge box -> first and past-the-end pixels
    person = instance_mask[y0:y1, x0:x1] == instance_id
    rows, cols = np.flatnonzero(person.any(axis=1)), np.flatnonzero(person.any(axis=0))
    row_person, col_person = person[rows], person[:, cols]
    left = np.argmax(row_person, axis=1) - 0.5
    right = person.shape[1] - np.argmax(row_person[:, ::-1], axis=1) - 0.5
    top = np.argmax(col_person, axis=0) - 0.5
    bottom = person.shape[0] - np.argmax(col_person[::-1], axis=0) - 0.5
    u = np.concatenate([left, right, cols, cols]) + x0
    v = np.concatenate([rows, rows, top, bottom]) + y0
    u, v = camera.undistort_pixels(u.astype(np.float64), v.astype(np.float64))
    return np.array([u.min(), v.min(), u.max(), v.max()])


def _undistorted_sources(image: np.ndarray, instance_mask: np.ndarray, instance_id: int, crop_box: np.ndarray,
                         camera: CameraModel) -> tuple[np.ndarray, np.ndarray, _CropSampling]:
    """The encoder window's region of the undistorted view, sampled n times finer than the window (n: the
    crop's source pixels per window pixel, at most MAX_UNDISTORT_OVERSAMPLING) with a margin of n samples:
    image (R, S, 3) float32, the person's coverage (R, S) bool, and the sampling that filters them down
    to the window (the pinhole path's triangle filter, on this grid). The image is read bilinearly, the mask
    at the nearest pixel."""
    centre_x, centre_y, side = crop_box
    factor = int(min(max(1, math.ceil(side / CROP_SIZE)), MAX_UNDISTORT_OVERSAMPLING))
    step = side / (CROP_SIZE * factor)
    margin = factor
    row_count, col_count = CROP_SIZE * factor + 2 * margin, IMAGE_WIDTH * factor + 2 * margin
    # float32 coordinates: 1e-3 px at 4096 px, and half the memory traffic of float64 through the lens and the reads
    rows = (centre_y - side / 2 + (np.arange(row_count) - margin + 0.5) * step).astype(np.float32)
    cols = (centre_x - side / 2 + CROP_COLUMN_OFFSET * side / CROP_SIZE
            + (np.arange(col_count) - margin + 0.5) * step).astype(np.float32)
    u, v = camera.distort_pixels(*np.meshgrid(cols, rows))
    # Read only the part of the image the grid touches.
    height, width = image.shape[:2]
    row_start = int(np.clip(np.floor(v.min()), 0, height - 1))
    row_stop = int(np.clip(np.floor(v.max()) + 2, row_start + 1, height))
    col_start = int(np.clip(np.floor(u.min()), 0, width - 1))
    col_stop = int(np.clip(np.floor(u.max()) + 2, col_start + 1, width))
    u, v = u - col_start, v - row_start
    source = sample_bilinear(image[row_start:row_stop, col_start:col_stop], u, v)
    person = sample_nearest(instance_mask[row_start:row_stop, col_start:col_stop], u, v) == instance_id
    sampling = _CropSampling(slice(0, row_count), slice(0, col_count),
                             _resampler(margin - 0.5, CROP_SIZE * factor, CROP_SIZE, row_count),
                             _resampler(margin - 0.5, IMAGE_WIDTH * factor, IMAGE_WIDTH, col_count))
    return source, person, sampling


def validate_intrinsics(intrinsics: np.ndarray) -> None:
    """K must be a 3x3 pinhole matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy in FOCAL_RANGE_PX and
    |s|, |cx|, |cy| at most MAX_PRINCIPAL_OFFSET_PX: values outside these are no real camera's, and they would
    put bodies at infinite or zero depth. (Checked on Python floats: it runs twice per frame, and numpy's
    per-call overhead on nine numbers cost more than the checks.)"""
    k = np.asarray(intrinsics, dtype=np.float64)
    values = k.ravel().tolist() if k.shape == (3, 3) else []
    if not values or not all(math.isfinite(value) for value in values):
        raise InputError(f"camera intrinsics must be a finite 3x3 matrix, got {k.tolist()}; check the CameraInfo's K")
    fx, skew, cx, _, fy, cy, *last_row = values
    low, high = FOCAL_RANGE_PX
    if not (low <= fx <= high and low <= fy <= high):
        raise InputError(f"camera intrinsics must have fx, fy in [{low:g}, {high:g}] px, got {fx:g} and {fy:g}; "
                         "check the CameraInfo's K")
    if max(abs(skew), abs(cx), abs(cy)) > MAX_PRINCIPAL_OFFSET_PX or any(
            abs(value - expected) > 1e-9 for value, expected in zip(last_row, (0.0, 0.0, 1.0))):
        raise InputError(f"camera intrinsics must have |skew|, |cx|, |cy| <= {MAX_PRINCIPAL_OFFSET_PX:g} px and a "
                         f"last row of (0, 0, 1), got {k.tolist()}; check the CameraInfo's K")


def camera_translation(cam: np.ndarray, crop_boxes: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Weak-perspective crop camera -> the body root's translation in the real camera (B, 3), metres.

    The encoder predicts (s, tx, ty) for the square crop: a point X projects to s (X + tx) in crop units of
    side / 2 pixels. Matching this to a pinhole camera at depth tz gives f / tz = s * side / 2, so
    tz = 2 f / (s * side) (f: mean of fx and fy), and the crop centre's offset from the principal point shifts
    x and y by (centre - c) * tz / f. This is HMR2.0's full-image camera with the real K instead of a focal
    length guessed from the image size. cam (B, 3), crop_boxes (B, 3) = (centre x, centre y, side).
    """
    validate_intrinsics(intrinsics)
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    scale = np.maximum(cam[:, 0].astype(np.float64), 1e-3)  # a non-positive scale has no depth; keep it far
    depth = (fx + fy) / (scale * crop_boxes[:, 2])
    tx = cam[:, 1] + (crop_boxes[:, 0] - cx) * depth / fx
    ty = cam[:, 2] + (crop_boxes[:, 1] - cy) * depth / fy
    return np.stack([tx, ty, depth], axis=1)


def crop_ray_rotations(crop_boxes: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """The rotation (B, 3), as a rotation vector (axis times angle, radians), that turns the camera's optical
    axis onto the ray through each crop's centre: crop_boxes (B, 3) = (centre x, centre y, side) in pixels of
    the pinhole view of K (intrinsics (3, 3); a distorted camera's undistorted view, as the crops are cut).

    An encoder sees a crop, not where it lies in the image, so the orientation it gives a body is partly
    relative to the crop's own axis (CLIFF's observation): on the synthetic val sequences turning the merged
    encoder's global orientation by half this rotation cut its MPJPE from 85.3 to 74.7 mm. The temporal
    decoder reads it per frame (decoder.model.Denoiser) and learns how much to turn. Zero for a crop
    centred on the principal point; the z component is always zero (the turn is about an axis in the image
    plane).
    """
    validate_intrinsics(intrinsics)
    crop_boxes = np.asarray(crop_boxes, np.float64).reshape(-1, 3)
    k = np.asarray(intrinsics, np.float64)
    tangent_y = (crop_boxes[:, 1] - k[1, 2]) / k[1, 1]
    tangent_x = (crop_boxes[:, 0] - k[0, 2] - k[0, 1] * tangent_y) / k[0, 0]
    spread = np.hypot(tangent_x, tangent_y)
    # z x (tx, ty, 1) = (-ty, tx, 0); the angle between z and the ray is atan(spread); atan(s) / s -> 1 at 0.
    angle_per_spread = np.where(spread > 1e-12, np.arctan(spread) / np.maximum(spread, 1e-12), 1.0)
    return np.stack([-tangent_y * angle_per_spread, tangent_x * angle_per_spread, np.zeros_like(spread)], axis=1)


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def crop_visible_fraction(crop_boxes: np.ndarray, image_width: int, image_height: int) -> np.ndarray:
    """(B,) share of each encoder window (the central 192 columns of the square crop (cx, cy, side),
    crop_boxes (B, 3)) that lies inside the image: 1 for a person fully in view, less when cut by the edge."""
    centre_x, centre_y, side = crop_boxes[:, 0], crop_boxes[:, 1], crop_boxes[:, 2]
    half_width, half_height = side * IMAGE_WIDTH / CROP_SIZE / 2, side / 2
    inside_x = np.clip(np.minimum(centre_x + half_width, image_width - 0.5)
                       - np.maximum(centre_x - half_width, -0.5), 0.0, None)
    inside_y = np.clip(np.minimum(centre_y + half_height, image_height - 0.5)
                       - np.maximum(centre_y - half_height, -0.5), 0.0, None)
    return inside_x * inside_y / np.maximum(4 * half_width * half_height, 1e-12)

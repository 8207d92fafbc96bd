"""Crops, person-token flags and the crop camera -> real camera translation."""

from __future__ import annotations

import numpy as np
import pytest

from fasthmr_model.bundle import IMAGENET_MEAN, IMAGENET_STD
from fasthmr_model.data.crop import (
    PreprocessConfig, camera_translation, crop_box_for, crop_image, crop_ray_rotations, person_boxes,
    person_token_fraction, prepare_persons,
)
from fasthmr_model.errors import InputError


def test_boxes_are_pixel_edges_of_each_instance():
    mask = np.zeros((40, 50), np.uint8)
    mask[5:15, 10:30] = 1
    mask[20:40, 0:3] = 4
    boxes, over_cap = person_boxes(mask)
    assert over_cap == 0
    assert sorted(boxes) == [1, 4]
    np.testing.assert_array_equal(boxes[1], [9.5, 4.5, 29.5, 14.5])
    np.testing.assert_array_equal(boxes[4], [-0.5, 19.5, 2.5, 39.5])
    assert list(person_boxes(mask, min_pixels=100)[0]) == [1]  # 200 px vs 60 px


def test_crop_box_follows_hmr2_aspect_rule():
    # Tall box: the side is its height. Wide box: the side is width * 4/3, so it fits the 192 central columns.
    np.testing.assert_allclose(crop_box_for(np.array([0.0, 0.0, 30.0, 100.0])), [15, 50, 100])
    np.testing.assert_allclose(crop_box_for(np.array([0.0, 0.0, 90.0, 60.0])), [45, 30, 120])
    np.testing.assert_allclose(crop_box_for(np.array([0.0, 0.0, 90.0, 60.0]), box_scale=1.5), [45, 30, 180])


def test_crop_is_normalised_and_black_outside_the_image():
    image = np.full((100, 100, 3), (124, 116, 104), np.uint8)  # ~ImageNet mean: normalises to ~0
    crop = crop_image(image, np.array([50.0, 50.0, 400.0]))
    assert crop.shape == (3, 256, 192)
    centre = crop[:, 128, 96]
    np.testing.assert_allclose(centre, 0.0, atol=0.02)
    corner = crop[:, 0, 0]  # outside the image: black, i.e. -mean/std
    np.testing.assert_allclose(corner, -np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225]), atol=1e-5)


def test_crop_maps_the_box_onto_the_window():
    """A 1:1 crop (side 256) centred on the image copies pixels: window column j is image column c - 96 + j."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    crop = crop_image(image, np.array([199.5, 149.5, 256.0]))  # pixel centres are integers
    expected = (image[150 - 128:150 + 128, 200 - 96:200 + 96].astype(np.float32) / 255.0
                - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(crop, expected.transpose(2, 0, 1), atol=1e-4)


def test_downscaled_crop_is_antialiased():
    """A one-pixel checkerboard shrunk 4x averages to grey instead of aliasing to a pattern."""
    image = ((np.indices((1024, 1024)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    crop = crop_image(image, np.array([512.0, 512.0, 1024.0]))
    assert np.ptp(crop[0, 50:200, 50:150]) < 0.05


def test_token_footprints_account_for_the_patch_padding():
    window = np.zeros((256, 192), np.float32)
    window[14:30, 14:30] = 1.0  # exactly the footprint of token (1, 1): rows/cols 16 - 2 .. 16 + 13
    fraction = person_token_fraction(window).reshape(16, 12)
    assert fraction[1, 1] == 1.0
    fraction[1, 1] = 0.0
    assert fraction.max() == 0.0


def test_prepare_persons_flags_person_tokens_only():
    image = np.zeros((480, 640, 3), np.uint8)
    mask = np.zeros((480, 640), np.uint16)
    mask[100:400, 280:360] = 3
    crops = prepare_persons(image, mask)
    assert crops.ids.tolist() == [3]
    flags = crops.person_tokens[0].reshape(16, 12)
    # The person fills the box height and 80 of the 225 px window width around the centre.
    assert flags[:, 5:7].all() and not flags[:, :2].any() and not flags[:, -2:].any()
    assert crops.images.shape == (1, 3, 256, 192)


def test_min_fraction_rule():
    image = np.zeros((100, 100, 3), np.uint8)
    mask = np.zeros((100, 100), np.uint8)
    mask[10:90, 40:60] = 1
    loose = prepare_persons(image, mask, PreprocessConfig(person_token_min_fraction=0.0)).person_tokens.sum()
    strict = prepare_persons(image, mask, PreprocessConfig(person_token_min_fraction=0.9)).person_tokens.sum()
    assert strict < loose


def test_frame_without_persons_gives_empty_batch():
    crops = prepare_persons(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.uint8))
    assert crops.images.shape == (0, 3, 256, 192) and crops.person_tokens.shape == (0, 192)


@pytest.mark.parametrize("image, mask, message", [
    (np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8), "uint8 RGB"),
    (np.zeros((10, 10, 3), np.float32), np.zeros((10, 10), np.uint8), "uint8 RGB"),
    (np.zeros((0, 10, 3), np.uint8), np.zeros((0, 10), np.uint8), "empty"),
    (np.zeros((10, 10, 3), np.uint8), np.zeros((10, 11), np.uint8), "must have the image's size"),
    (np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.float32), "unsigned-integer"),
])
def test_malformed_inputs_raise_input_error(image, mask, message):
    with pytest.raises(InputError, match=message):
        prepare_persons(image, mask)


def test_crop_rays_turn_the_optical_axis_onto_the_crop_centre():
    """The ray's rotation vector takes (0, 0, 1) onto the direction that projects to the crop centre, with
    skew; zero at the principal point; 45 degrees about y one focal length to the right."""
    from fasthmr_model.body.rotations import axis_angle_to_matrix

    k = np.array([[600.0, 4.0, 330.0], [0.0, 580.0, 250.0], [0.0, 0.0, 1.0]])
    crop_boxes = np.array([[330.0, 250.0, 100.0], [930.0, 250.0, 100.0], [12.0, 470.0, 80.0], [600.0, 20.0, 50.0]])
    rays = crop_ray_rotations(crop_boxes, k)
    np.testing.assert_allclose(rays[0], 0.0, atol=1e-12)
    np.testing.assert_allclose(rays[1], [0.0, np.pi / 4, 0.0], atol=1e-12)
    assert np.all(rays[:, 2] == 0.0)
    directions = axis_angle_to_matrix(rays)[:, :, 2]
    pixels = directions @ k.T
    np.testing.assert_allclose(pixels[:, :2] / pixels[:, 2:], crop_boxes[:, :2], atol=1e-9)
    with pytest.raises(InputError, match="intrinsics"):
        crop_ray_rotations(crop_boxes, np.eye(2))


def test_translation_reprojects_the_root_onto_the_crop_centre_and_scale():
    """Build the crop camera a body at a known translation would have, and recover the translation."""
    k = np.array([[600.0, 0.0, 330.0], [0.0, 580.0, 250.0], [0.0, 0.0, 1.0]])
    truth = np.array([[0.4, -0.2, 5.0], [-1.0, 0.3, 2.5]])
    crop_boxes = np.array([[400.0, 200.0, 180.0], [120.0, 300.0, 300.0]])
    focal = (k[0, 0] + k[1, 1]) / 2
    scale = 2 * focal / (crop_boxes[:, 2] * truth[:, 2])
    cam = np.stack([scale,
                    truth[:, 0] - (crop_boxes[:, 0] - k[0, 2]) * truth[:, 2] / k[0, 0],
                    truth[:, 1] - (crop_boxes[:, 1] - k[1, 2]) * truth[:, 2] / k[1, 1]], axis=1)
    recovered = camera_translation(cam, crop_boxes, k)
    np.testing.assert_allclose(recovered, truth, atol=1e-9)
    # The root projects where the crop camera puts it: the crop centre shifted by s * t * side / 2.
    u = k[0, 0] * truth[:, 0] / truth[:, 2] + k[0, 2]
    np.testing.assert_allclose(u, crop_boxes[:, 0] + cam[:, 0] * cam[:, 1] * crop_boxes[:, 2] / 2
                               * k[0, 0] / focal, atol=1e-9)


@pytest.mark.parametrize("k", [np.zeros((3, 3)), np.full((3, 3), np.nan), np.eye(2),
                               np.array([[-1.0, 0, 1], [0, 1, 1], [0, 0, 1]]),
                               np.array([[1e300, 0, 320], [0, 1e300, 240], [0, 0, 1]]),  # no real camera's
                               np.array([[1e-300, 0, 320], [0, 1e-300, 240], [0, 0, 1]]),
                               np.array([[500.0, 0, 1e308], [0, 500, 240], [0, 0, 1]]),
                               np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 2]])])
def test_bad_intrinsics_are_rejected(k):
    with pytest.raises(InputError, match="intrinsics"):
        camera_translation(np.ones((1, 3)), np.ones((1, 3)), k)


def reference_window(source, crop_box):
    """The resampling written as its definition, without any of prepare_persons' shortcuts: for every tap in
    order, gather along the full source's rows (then the columns of the result) and add weight * value."""
    from fasthmr_model.data.crop import CROP_COLUMN_OFFSET, _resampler

    centre_x, centre_y, side = crop_box
    scale = side / 256
    rows = _resampler(centre_y - side / 2, side, 256, source.shape[0])
    cols = _resampler(centre_x - side / 2 + CROP_COLUMN_OFFSET * scale, 192 * scale, 192, source.shape[1])
    out = source
    for axis, resampler in ((0, rows), (1, cols)):
        shape = [1] * out.ndim
        shape[axis] = -1
        total = None
        for tap in range(resampler.indices.shape[1]):
            term = np.take(out, resampler.indices[:, tap], axis=axis) * resampler.weights[:, tap].reshape(shape)
            total = term if total is None else total + term
        out = total
    return out


def reference_boxes(instance_mask, min_pixels):
    boxes = {}
    for instance_id in np.unique(instance_mask):
        rows, cols = np.nonzero(instance_mask == instance_id)
        if instance_id != 0 and len(rows) >= min_pixels:
            boxes[int(instance_id)] = [cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5]
    return boxes


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, bool])
def test_prepare_persons_is_bit_identical_to_the_plain_definition(seed, dtype):
    """The fast paths (one band for all boxes, gathers along axis 0, normalisation fused with the
    transpose) change no bit of any output, including people cut by the image border and big crops."""
    rng = np.random.default_rng(seed)
    height, width = 120 + 40 * seed, 160 + 30 * seed
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint16)
    for instance_id in rng.choice(np.arange(1, 400), size=3, replace=False):
        top, left = rng.integers(-20, height - 5), rng.integers(-20, width - 5)
        blob = rng.random((int(rng.integers(5, height)), int(rng.integers(5, width)))) < 0.7
        rows = slice(max(top, 0), min(top + blob.shape[0], height))
        cols = slice(max(left, 0), min(left + blob.shape[1], width))
        region = blob[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left]
        mask[rows, cols][region] = instance_id
    if dtype is not np.uint16:
        mask = (mask > 0) if dtype is bool else (mask % 256).astype(np.uint8)
    config = PreprocessConfig(box_scale=float(rng.uniform(0.8, 2.0)), min_person_pixels=20,
                              person_token_min_fraction=[0.0, 0.3][seed % 2])
    crops = prepare_persons(image, mask, config)

    boxes = reference_boxes(mask.astype(np.uint16), config.min_person_pixels)
    assert crops.ids.tolist() == sorted(boxes)
    for index, instance_id in enumerate(crops.ids):
        np.testing.assert_array_equal(crops.boxes[index], boxes[instance_id])
        window = reference_window(image, crops.crop_boxes[index])
        np.testing.assert_array_equal(crops.windows[index], window)
        fraction = person_token_fraction(reference_window(mask == instance_id, crops.crop_boxes[index]))
        threshold = config.person_token_min_fraction
        tokens = (fraction > threshold) if threshold == 0.0 else (fraction >= threshold)
        np.testing.assert_array_equal(crops.person_tokens[index], tokens)
        images = ((window.astype(np.float32) - np.float32(255) * np.array(IMAGENET_MEAN, np.float32))
                  * (np.float32(1) / (np.array(IMAGENET_STD, np.float32) * np.float32(255))))
        np.testing.assert_array_equal(crops.images[index], np.moveaxis(images, -1, 0))


def test_threads_change_no_bit():
    """Persons cropped by a thread pool give exactly the single-thread result."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    mask = np.zeros((240, 320), np.uint8)
    for instance_id, (top, left) in enumerate([(10, 10), (40, 120), (5, 230), (100, 60)], start=1):
        mask[top:top + 120, left:left + 50] = instance_id
    single = prepare_persons(image, mask, PreprocessConfig(threads=1))
    pooled = prepare_persons(image, mask, PreprocessConfig(threads=3))
    assert single.ids.tolist() == [1, 2, 3, 4]
    for field in ("boxes", "crop_boxes", "windows", "person_tokens"):
        np.testing.assert_array_equal(getattr(single, field), getattr(pooled, field))


def crowd_mask(instances: int, side: int = 12, shape=(720, 1280)) -> np.ndarray:
    """A 16-bit mask of `instances` square persons of side x side pixels, instance k of side + k % 5 rows, so
    sizes differ."""
    mask = np.zeros(shape, np.uint16)
    per_row = shape[1] // (side + 4)
    for index in range(instances):
        top, left = (index // per_row) * (side + 8), (index % per_row) * (side + 4)
        mask[top:top + side + index % 5, left:left + side] = index + 1
    return mask


def test_a_crowd_is_capped_to_its_largest_persons_and_the_rest_counted():
    mask = crowd_mask(1000)
    image = np.zeros(mask.shape + (3,), np.uint8)
    crops = prepare_persons(image, mask, PreprocessConfig(max_persons=10))
    sizes = np.bincount(mask.ravel())
    assert len(crops.ids) == 10 and crops.over_cap == 990
    assert sizes[crops.ids].min() >= np.sort(sizes[1:])[-10]  # the largest ten
    few = prepare_persons(image, crowd_mask(4), PreprocessConfig(max_persons=10))
    assert len(few.ids) == 4 and few.over_cap == 0
    # Tiny instances never count, not even against the cap.
    assert prepare_persons(image, mask, PreprocessConfig(min_person_pixels=1000)).over_cap == 0


def test_the_crop_threads_stay_within_the_configuration():
    import threading

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    before = threading.active_count()
    for people in range(2, 34):
        prepare_persons(image, crowd_mask(people, side=40), PreprocessConfig(threads=4, max_persons=40))
    assert threading.active_count() - before <= 4

"""The lens models of CameraInfo: known values, distort/undistort round trips, and what is refused."""

import numpy as np
import pytest

from fasthmr_model.data.crop import prepare_persons
from fasthmr_model.data.lens import DISTORTION_COEFFICIENTS, CameraModel, distorted_view
from fasthmr_model.errors import InputError

K = np.array([[500.0, 0.0, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]])
COEFFICIENTS = {
    "plumb_bob": (-0.28, 0.09, 0.001, -0.0005, -0.02),
    "rational_polynomial": (0.4, -0.1, 0.001, -0.0005, 0.01, 0.7, -0.05, 0.02),
    "equidistant": (0.05, -0.01, 0.002, -0.0005),
}
# The normalised points (0.3, -0.2) and (-0.5, 0.4) distorted by OpenCV 5.1 (cv2.projectPoints for plumb_bob
# and rational_polynomial, cv2.fisheye.distortPoints for equidistant) with K and COEFFICIENTS above: an
# independent implementation of the same formulas.
OPENCV_PIXELS = {
    "plumb_bob": [[464.624059, 147.48220224], [94.834855, 413.04491136]],
    "rational_polynomial": [[464.37722086, 147.64017865], [95.37268615, 412.63185704]],
    "equidistant": [[464.80603578, 147.3241371], [94.24759496, 413.37784707]],
}


@pytest.mark.parametrize("model", list(DISTORTION_COEFFICIENTS))
def test_distortion_matches_opencv_values(model):
    camera = CameraModel(K, model, COEFFICIENTS[model])
    u, v = camera.to_pixels(*camera.distort_normalised(np.array([0.3, -0.5]), np.array([-0.2, 0.4])))
    np.testing.assert_allclose(np.stack([u, v], axis=1), OPENCV_PIXELS[model], atol=1e-6)


@pytest.mark.parametrize("model", list(DISTORTION_COEFFICIENTS))
def test_undistort_inverts_distort_over_the_image(model):
    camera = CameraModel(K, model, COEFFICIENTS[model])
    u, v = np.meshgrid(np.linspace(-0.5, 639.5, 33), np.linspace(-0.5, 479.5, 25))
    distorted = camera.distort_pixels(u, v)
    back_u, back_v = camera.undistort_pixels(*distorted)
    np.testing.assert_allclose(back_u, u, atol=1e-6)
    np.testing.assert_allclose(back_v, v, atol=1e-6)
    # and the other way round: distorted pixels -> ideal -> distorted
    again = camera.distort_pixels(*camera.undistort_pixels(u, v))
    np.testing.assert_allclose(again[0], u, atol=1e-6)
    np.testing.assert_allclose(again[1], v, atol=1e-6)


def test_skewed_intrinsics_round_trip():
    skewed = K.copy()
    skewed[0, 1] = 3.0
    camera = CameraModel(skewed, "plumb_bob", COEFFICIENTS["plumb_bob"])
    u, v = np.array([10.0, 300.0, 630.0]), np.array([5.0, 250.0, 470.0])
    np.testing.assert_allclose(camera.distort_pixels(*camera.undistort_pixels(u, v)), (u, v), atol=1e-6)


@pytest.mark.parametrize("model, coefficients", [("plumb_bob", (0.0,) * 5), ("", ()), ("plumb_bob", ()),
                                                 ("equidistant", (0.0,) * 4), ("unknown_model", (0.0,) * 3)])
def test_zero_coefficients_mean_no_distortion(model, coefficients):
    camera = CameraModel(K, model, coefficients)
    assert not camera.distorted
    u = np.array([1.5, 600.25])
    np.testing.assert_allclose(camera.distort_pixels(u, u)[0], u, atol=1e-12)
    np.testing.assert_array_equal(camera.undistort_pixels(u, u)[0], u)


@pytest.mark.parametrize("model, coefficients, words", [
    ("kannala_brandt", (0.1, 0.0, 0.0, 0.0), "not supported"),
    ("plumb_bob", (0.1, 0.0, 0.0, 0.0), "5 coefficients"),
    ("plumb_bob", (float("nan"), 0.0, 0.0, 0.0, 0.0), "finite"),
])
def test_unusable_distortion_is_refused_by_name(model, coefficients, words):
    with pytest.raises(InputError, match=words):
        CameraModel(K, model, coefficients)


def smooth_scene(height=480, width=640):
    """A smooth image (low-frequency colour waves) with one elliptic person near the top-left corner, where a
    wide lens bends most: (H, W, 3) uint8, (H, W) uint8."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack([127 + 100 * np.sin(u / 23.0), 127 + 100 * np.cos(v / 17.0), 127 + 90 * np.sin((u + v) / 31.0)],
                     axis=2)
    mask = ((((u - 150) / 45) ** 2 + ((v - 140) / 100) ** 2) <= 1).astype(np.uint8)
    return np.rint(image).astype(np.uint8), mask


def test_zero_distortion_crops_bit_for_bit_like_the_pinhole_path():
    image, mask = smooth_scene()
    pinhole = prepare_persons(image, mask * 3)
    zero = prepare_persons(image, mask * 3, camera=CameraModel(K, "plumb_bob", (0.0,) * 5))
    for name in pinhole._fields:
        np.testing.assert_array_equal(getattr(zero, name), getattr(pinhole, name))


def test_crops_of_a_distorted_image_are_the_undistorted_view():
    image, mask = smooth_scene()
    camera = CameraModel(K, "plumb_bob", (-0.28, 0.08, 0.0005, -0.0003, 0.0))
    distorted_image, distorted_mask = distorted_view(image, mask, camera)
    reference = prepare_persons(image, mask)
    honoured = prepare_persons(distorted_image, distorted_mask, camera=camera)
    ignored = prepare_persons(distorted_image, distorted_mask)
    # The box of the undistorted view within a pixel or two (the mask was warped at whole pixels).
    np.testing.assert_allclose(honoured.crop_boxes, reference.crop_boxes, atol=2.0)
    assert np.abs(ignored.crop_boxes - reference.crop_boxes).max() > 10.0
    honoured_error = np.abs(honoured.windows - reference.windows).mean()
    ignored_error = np.abs(ignored.windows - reference.windows).mean()
    assert honoured_error < 1.0 and ignored_error > 5 * honoured_error
    assert np.mean(honoured.person_tokens != reference.person_tokens) < 0.05


@pytest.mark.parametrize("model", list(DISTORTION_COEFFICIENTS))
def test_every_model_crops_through_the_lens(model):
    image, mask = smooth_scene()
    camera = CameraModel(K, model, COEFFICIENTS[model])
    distorted_image, distorted_mask = distorted_view(image, mask, camera)
    reference = prepare_persons(image, mask)
    honoured = prepare_persons(distorted_image, distorted_mask, camera=camera)
    np.testing.assert_allclose(honoured.crop_boxes, reference.crop_boxes, atol=2.0)
    assert np.abs(honoured.windows - reference.windows).mean() < 2.0  # grey levels (0..255): warped twice


def test_the_frame_stage_with_zero_distortion_equals_the_pinhole_stage(untrained_tiny_bundle):
    from fasthmr_model.pipeline import FramePipeline

    image, mask = smooth_scene()
    frames = FramePipeline(untrained_tiny_bundle)
    pinhole = frames.process(image, mask, K)
    zero = frames.process(image, mask, CameraModel(K, "plumb_bob", (0.0,) * 5))
    for name in ("crop_boxes", "person_tokens", "translation", "joints", "vertices"):
        np.testing.assert_array_equal(getattr(zero, name), getattr(pinhole, name))
    distorted = frames.process(image, mask, CameraModel(K, "plumb_bob", COEFFICIENTS["plumb_bob"]))
    assert np.abs(distorted.translation - pinhole.translation).max() > 0.01  # the lens changes where the body is

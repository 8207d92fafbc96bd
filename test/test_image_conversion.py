"""sensor_msgs/Image <-> numpy: round trips over every supported encoding, with row padding and both byte
orders, and a named error for everything malformed."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from fasthmr_model.errors import InputError
from fasthmr_ros.image_conversion import (
    ENCODINGS, MASK_ENCODINGS, ImageConversionError, array_to_image, image_to_array, image_to_rgb, mask_to_ids,
)

HEIGHT, WIDTH = 5, 7


def random_pixels(encoding: str, seed: int = 0) -> np.ndarray:
    layout = ENCODINGS[encoding]
    dtype = np.uint8 if layout.channel_bytes == 1 else np.uint16
    shape = (HEIGHT, WIDTH) if layout.channels == 1 else (HEIGHT, WIDTH, layout.channels)
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("padding", [0, 6])
@pytest.mark.parametrize("bigendian", [False, True])
def test_every_encoding_round_trips_through_a_serialised_message(encoding, padding, bigendian):
    pixels = random_pixels(encoding)
    layout = ENCODINGS[encoding]
    step = WIDTH * layout.channels * layout.channel_bytes + padding
    message = array_to_image(pixels, encoding, step=step, bigendian=bigendian)
    assert (message.height, message.width, message.step) == (HEIGHT, WIDTH, step)
    received = deserialize_message(serialize_message(message), Image)
    np.testing.assert_array_equal(image_to_array(received), pixels)
    assert image_to_array(received).dtype == pixels.dtype


def test_big_endian_bytes_are_read_as_big_endian():
    message = Image(height=1, width=2, encoding="mono16", is_bigendian=1, step=4, data=bytes([1, 2, 3, 4]))
    assert image_to_array(message).tolist() == [[0x0102, 0x0304]]
    message.is_bigendian = 0
    assert image_to_array(message).tolist() == [[0x0201, 0x0403]]


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_give_the_same_rgb(encoding):
    rgb = random_pixels("rgb8", seed=3)
    order = {"rgb8": [0, 1, 2], "bgr8": [2, 1, 0], "rgba8": [0, 1, 2], "bgra8": [2, 1, 0]}[encoding]
    stored = rgb[:, :, order]
    if encoding.endswith("a8"):
        stored = np.concatenate([stored, np.full((HEIGHT, WIDTH, 1), 77, np.uint8)], axis=2)
    converted = image_to_rgb(array_to_image(np.ascontiguousarray(stored), encoding, step=WIDTH * len(encoding) + 3))
    np.testing.assert_array_equal(converted, rgb)


def test_mono_images_become_grey_rgb():
    grey8 = random_pixels("mono8")
    np.testing.assert_array_equal(image_to_rgb(array_to_image(grey8, "mono8")), np.repeat(grey8[..., None], 3, 2))
    grey16 = random_pixels("mono16")
    np.testing.assert_array_equal(image_to_rgb(array_to_image(grey16, "mono16", bigendian=True)),
                                  np.repeat((grey16 >> 8).astype(np.uint8)[..., None], 3, 2))


@pytest.mark.parametrize("encoding", MASK_ENCODINGS)
def test_masks_keep_their_ids(encoding):
    ids = random_pixels(encoding)
    np.testing.assert_array_equal(mask_to_ids(array_to_image(ids, encoding, step=WIDTH * 4)), ids)


def good_message() -> Image:
    return array_to_image(random_pixels("rgb8"), "rgb8")


@pytest.mark.parametrize("change, message", [
    (dict(encoding="yuv422"), "encoding 'yuv422' is not supported"),
    (dict(encoding="32FC1"), "encoding '32FC1' is not supported"),
    (dict(height=0, data=b""), "empty"),
    (dict(width=0), "empty"),
    (dict(step=WIDTH * 3 - 1), "shorter than a row"),
    (dict(data=bytes(HEIGHT * WIDTH * 3 - 1)), "buffer holds"),
    (dict(data=bytes(HEIGHT * WIDTH * 3 + 1)), "buffer holds"),
    (dict(height=HEIGHT + 1), "buffer holds"),
])
def test_malformed_images_are_rejected_by_name(change, message):
    image = good_message()
    for field, value in change.items():
        setattr(image, field, value)
    with pytest.raises(ImageConversionError, match=message):
        image_to_rgb(image)


def test_odd_step_of_16_bit_image_is_rejected():
    message = array_to_image(random_pixels("mono16"), "mono16", step=WIDTH * 2 + 1)
    with pytest.raises(ImageConversionError, match="not a multiple"):
        mask_to_ids(message)


def test_huge_images_are_rejected_before_their_data_is_read():
    message = Image(height=100_000, width=100_000, encoding="rgb8", step=300_000, data=b"")
    with pytest.raises(ImageConversionError, match="max_image_pixels"):
        image_to_rgb(message, max_pixels=4096 * 4096)


def test_colour_masks_are_rejected_and_errors_are_input_errors():
    with pytest.raises(ImageConversionError, match="has several channels") as caught:
        mask_to_ids(good_message())
    assert isinstance(caught.value, InputError)  # the node counts every InputError as bad input


def test_array_of_the_wrong_shape_is_refused():
    with pytest.raises(ImageConversionError, match="rgb8 needs a uint8 array of shape"):
        array_to_image(np.zeros((2, 2), np.uint8), "rgb8")

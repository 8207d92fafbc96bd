"""sensor_msgs/CompressedImage -> numpy: JPEG and PNG images and lossless masks through serialised messages,
image_transport's format strings, limits checked on the header before decoding, and bad data refused."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PilImage
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage

from fasthmr_ros.image_conversion import ImageConversionError, array_to_compressed, image_to_rgb, mask_to_ids


def through_dds_bytes(message: CompressedImage) -> CompressedImage:
    return deserialize_message(serialize_message(message), CompressedImage)


def smooth_rgb(height=48, width=64) -> np.ndarray:
    v, u = np.mgrid[0:height, 0:width]
    return np.stack([u * 3, v * 4, (u + v) * 2], axis=2).astype(np.uint8)


def test_png_images_round_trip_exactly_and_jpeg_within_its_loss():
    image = smooth_rgb()
    png = through_dds_bytes(array_to_compressed(image, "png"))
    assert png.format == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(image_to_rgb(png), image)
    jpeg = through_dds_bytes(array_to_compressed(image, "jpeg"))
    assert jpeg.format == "rgb8; jpeg compressed bgr8"
    assert np.abs(image_to_rgb(jpeg).astype(int) - image).mean() < 2.0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_masks_keep_their_ids(dtype):
    ids = np.random.default_rng(0).integers(0, np.iinfo(dtype).max + 1, (20, 30), dtype=dtype)
    message = through_dds_bytes(array_to_compressed(ids, "png"))
    decoded = mask_to_ids(message)
    assert decoded.dtype == dtype
    np.testing.assert_array_equal(decoded, ids)


def test_grey_and_palette_pngs_are_read_as_what_they_hold():
    grey = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    image = image_to_rgb(array_to_compressed(grey, "png"))  # 16-bit grey: the high byte, as mono16 raw images
    np.testing.assert_array_equal(image[:, :, 1], (grey >> 8).astype(np.uint8))
    buffer = io.BytesIO()
    PilImage.fromarray(np.array([[0, 1], [2, 3]], np.uint8), mode="L").convert("P").save(buffer, format="PNG")
    palette = CompressedImage(format="png", data=buffer.getvalue())
    np.testing.assert_array_equal(mask_to_ids(palette), [[0, 1], [2, 3]])  # a label image's indices are its ids
    grey_jpeg = array_to_compressed(np.full((16, 16), 200, np.uint8), "jpeg")
    assert grey_jpeg.format == "mono8; jpeg compressed "
    np.testing.assert_allclose(image_to_rgb(grey_jpeg), 200, atol=1)


@pytest.mark.parametrize("format_string", ["jpeg", "jpg", "bgr8; jpeg compressed bgr8", " JPEG "])
def test_format_strings_of_image_transport_and_bare_codecs_are_read(format_string):
    message = array_to_compressed(smooth_rgb(), "jpeg")
    message.format = format_string
    assert image_to_rgb(message).shape == (48, 64, 3)


def test_jpeg_masks_are_refused_with_the_reason():
    message = array_to_compressed(np.zeros((8, 8), np.uint8), "jpeg")
    with pytest.raises(ImageConversionError, match="lossy"):
        mask_to_ids(message)
    with pytest.raises(ImageConversionError, match="colour channels"):
        mask_to_ids(array_to_compressed(smooth_rgb(), "png"))


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring width x height 8-bit grey whose image data is a few compressed zero bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(bytes(64)))
            + png_chunk(b"IEND", b""))


@pytest.mark.parametrize("side, words", [(5000, "declares 5000x5000, more than the 16777216 pixels"),
                                         (60000, "declares a huge image")])
def test_declared_size_is_checked_before_decoding(side, words):
    # side x side declared in a hundred bytes: refused on the header (ours, or Pillow's own bomb limit at
    # 178 Mpixels), nothing allocated.
    message = CompressedImage(format="mono8; png compressed ", data=png_header_only(side, side))
    with pytest.raises(ImageConversionError, match=words):
        mask_to_ids(message, max_pixels=16777216)
    small = array_to_compressed(np.zeros((40, 50), np.uint8), "png")
    with pytest.raises(ImageConversionError, match="max_image_pixels"):
        mask_to_ids(small, max_pixels=1999)
    assert mask_to_ids(small, max_pixels=2000).shape == (40, 50)


@pytest.mark.parametrize("codec", ["jpeg", "png"])
def test_truncated_and_corrupt_data_is_refused(codec):
    good = array_to_compressed(smooth_rgb(), codec).data.tobytes()
    for data in (good[: len(good) // 2], good[:12], good[:4] + bytes(len(good) - 4)):
        with pytest.raises(ImageConversionError):
            image_to_rgb(CompressedImage(format=codec, data=data))


@pytest.mark.parametrize("format_string, data, words", [
    ("png", array_to_compressed(smooth_rgb(), "jpeg").data.tobytes(), "names png but the data is jpeg"),
    ("rgb8; tiff compressed rgb8", b"II*\x00", "not supported"),
    ("jpeg", b"GIF89a" + bytes(20), "neither JPEG nor PNG"),
    ("", b"", "neither JPEG nor PNG"),
])
def test_other_or_mislabelled_data_is_refused_by_name(format_string, data, words):
    with pytest.raises(ImageConversionError, match=words):
        image_to_rgb(CompressedImage(format=format_string, data=data))


def test_a_jpeg_declaring_a_huge_size_is_refused_on_its_header():
    data = bytearray(array_to_compressed(smooth_rgb(), "jpeg").data)
    frame_header = data.index(b"\xff\xc0")  # SOF0: length (2), precision (1), height (2), width (2)
    data[frame_header + 5:frame_header + 9] = (60000).to_bytes(2, "big") * 2
    with pytest.raises(ImageConversionError, match="declares 60000x60000, more than the 16777216 pixels"):
        image_to_rgb(CompressedImage(format="jpeg", data=bytes(data)), max_pixels=16777216)


@settings(max_examples=150, deadline=None)
@given(cut=st.integers(0, 4000), flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(1, 255)), max_size=6),
       codec=st.sampled_from(["jpeg", "png"]), for_mask=st.booleans())
def test_damaged_compressed_data_raises_only_conversion_errors(cut, flips, codec, for_mask):
    """Cut short and with flipped bytes anywhere: a conversion error naming the problem, or a correctly shaped
    array when the damage happens to leave a decodable image; never another exception."""
    original = array_to_compressed(smooth_rgb() if codec == "jpeg" or not for_mask else smooth_rgb()[:, :, 0], codec)
    data = bytearray(original.data.tobytes()[:cut] if cut < len(original.data) else original.data.tobytes())
    for position, value in flips:
        if position < len(data):
            data[position] ^= value
    message = CompressedImage(format=original.format, data=bytes(data))
    try:
        pixels = mask_to_ids(message, 48 * 64) if for_mask else image_to_rgb(message, 48 * 64)
    except ImageConversionError:
        return
    assert pixels.shape[:2] == (48, 64) or pixels.shape[0] * pixels.shape[1] <= 48 * 64

"""sensor_msgs/Image <-> numpy, as cv_bridge converts them (cv_bridge for ROS 2 is not installable here).

Every conversion honours `encoding`, `step` (rows may be padded), `is_bigendian` (16-bit data) and the
size, and raises ImageConversionError, naming the problem, for anything else. Supported encodings:

    rgb8 bgr8 rgba8 bgra8 mono8 8UC1 (1 byte per channel)    mono16 16UC1 (2 bytes)

Camera images become (H, W, 3) uint8 RGB (`image_to_rgb`); segmentation images become (H, W) uint8 or
uint16 instance ids (`mask_to_ids`). The arrays are views of the message's buffer where no conversion
is needed (rgb8, mono8 masks): do not keep them past the message.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sensor_msgs.msg import Image

from fasthmr_model.errors import InputError


class ImageConversionError(InputError):
    """An Image message cannot be converted: unsupported encoding, or step, size and buffer disagree."""


class Encoding(NamedTuple):
    """Channels per pixel, bytes per channel, and the channel order of the colour encodings."""

    channels: int
    channel_bytes: int
    order: str  # "RGB", "BGR", "RGBA", "BGRA" or "" for one channel


ENCODINGS = {
    "rgb8": Encoding(3, 1, "RGB"),
    "bgr8": Encoding(3, 1, "BGR"),
    "rgba8": Encoding(4, 1, "RGBA"),
    "bgra8": Encoding(4, 1, "BGRA"),
    "mono8": Encoding(1, 1, ""),
    "8UC1": Encoding(1, 1, ""),
    "mono16": Encoding(1, 2, ""),
    "16UC1": Encoding(1, 2, ""),
}
MASK_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1")
# Which channels of each colour order are R, G and B.
_RGB_INDEX = {"RGB": [0, 1, 2], "BGR": [2, 1, 0], "RGBA": [0, 1, 2], "BGRA": [2, 1, 0]}


def image_to_array(message: Image, max_pixels: int | None = None) -> np.ndarray:
    """The message's pixels as stored: (H, W) for one channel, (H, W, C) otherwise; uint8 or uint16 in
    this machine's byte order. A view of message.data where possible (no copy).

    Raises ImageConversionError for an unsupported encoding, an empty image, more than max_pixels pixels,
    a step shorter than a row, or a buffer whose size is not step * height.
    """
    encoding = ENCODINGS.get(message.encoding)
    if encoding is None:
        raise ImageConversionError(f"image encoding {message.encoding!r} is not supported; use one of "
                                   f"{', '.join(ENCODINGS)}")
    height, width = message.height, message.width
    if height == 0 or width == 0:
        raise ImageConversionError(f"the image is empty ({width}x{height})")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageConversionError(f"the image is {width}x{height}, more than the {max_pixels} pixels allowed "
                                   "(max_image_pixels); send a smaller image or raise the limit")
    row_bytes = width * encoding.channels * encoding.channel_bytes
    if message.step < row_bytes:
        raise ImageConversionError(f"step {message.step} is shorter than a row of {width} {message.encoding} "
                                   f"pixels ({row_bytes} bytes)")
    if message.step % encoding.channel_bytes:
        raise ImageConversionError(f"step {message.step} is not a multiple of the {encoding.channel_bytes}-byte "
                                   f"channels of {message.encoding}")
    buffer = np.frombuffer(message.data, dtype=np.uint8)
    if buffer.size != message.step * height:
        raise ImageConversionError(f"the buffer holds {buffer.size} bytes, but step {message.step} x height "
                                   f"{height} is {message.step * height}")
    if encoding.channel_bytes == 1:
        rows = buffer.reshape(height, message.step)
        pixels = rows[:, :row_bytes]
    else:
        byte_order = ">" if message.is_bigendian else "<"
        rows = buffer.view(np.dtype(f"{byte_order}u2")).reshape(height, message.step // 2)
        pixels = rows[:, :width * encoding.channels]
        if not pixels.dtype.isnative:
            pixels = pixels.astype(np.uint16)  # to this machine's byte order
    shape = (height, width) if encoding.channels == 1 else (height, width, encoding.channels)
    return pixels.reshape(shape)


def image_to_rgb(message: Image, max_pixels: int | None = None) -> np.ndarray:
    """A camera image as (H, W, 3) uint8 RGB.

    Colour encodings are reordered (alpha dropped); mono8 is repeated into three channels; mono16 keeps its
    high byte (value // 256). Raises ImageConversionError as image_to_array does.
    """
    pixels = image_to_array(message, max_pixels)
    encoding = ENCODINGS[message.encoding]
    if encoding.channels == 1:
        grey = pixels if encoding.channel_bytes == 1 else (pixels >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if encoding.order == "RGB":
        return pixels
    return pixels[:, :, _RGB_INDEX[encoding.order]]


def mask_to_ids(message: Image, max_pixels: int | None = None) -> np.ndarray:
    """A segmentation image as (H, W) uint8 or uint16 ids (0 = background, k = person k).

    Raises ImageConversionError for colour encodings (instance ids have one channel) and as
    image_to_array does.
    """
    if message.encoding in ENCODINGS and message.encoding not in MASK_ENCODINGS:
        raise ImageConversionError(f"segmentation encoding {message.encoding!r} has several channels; publish "
                                   f"instance ids as one of {', '.join(MASK_ENCODINGS)}")
    return image_to_array(message, max_pixels)


def array_to_image(array: np.ndarray, encoding: str, step: int | None = None, bigendian: bool = False) -> Image:
    """An Image message holding `array` ((H, W) or (H, W, C), uint8 or uint16) in `encoding`.

    step: row length in bytes (default: no padding; longer rows are zero-padded). bigendian: store 16-bit
    data big-endian. The header is left empty. Raises ImageConversionError when the array's shape or dtype
    does not fit the encoding.
    """
    layout = ENCODINGS.get(encoding)
    if layout is None:
        raise ImageConversionError(f"image encoding {encoding!r} is not supported; use one of {', '.join(ENCODINGS)}")
    dtype = np.uint8 if layout.channel_bytes == 1 else np.uint16
    expected_ndim = 2 if layout.channels == 1 else 3
    if (array.dtype != dtype or array.ndim != expected_ndim
            or (layout.channels > 1 and array.shape[2] != layout.channels)):
        raise ImageConversionError(f"{encoding} needs a {np.dtype(dtype).name} array of shape (H, W"
                                   f"{'' if layout.channels == 1 else f', {layout.channels}'}), got {array.dtype.name} "
                                   f"{array.shape}")
    height, width = array.shape[:2]
    row_bytes = width * layout.channels * layout.channel_bytes
    step = row_bytes if step is None else step
    if step < row_bytes:
        raise ImageConversionError(f"step {step} is shorter than a row ({row_bytes} bytes)")
    stored = array.astype(np.dtype(dtype).newbyteorder(">" if bigendian else "<"), copy=False)
    rows = np.zeros((height, step), np.uint8)
    rows[:, :row_bytes] = np.ascontiguousarray(stored).view(np.uint8).reshape(height, row_bytes)
    message = Image()
    message.height, message.width, message.encoding = height, width, encoding
    message.is_bigendian = int(bigendian and layout.channel_bytes > 1)
    message.step = step
    message.data = rows.tobytes()
    return message

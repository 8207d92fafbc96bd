"""sensor_msgs/Image and CompressedImage -> numpy, as cv_bridge and image_transport convert them (neither is
installable here).

Image: every conversion honours `encoding`, `step` (rows may be padded), `is_bigendian` (16-bit data) and
the size, and raises ImageConversionError, naming the problem, for anything else. Supported encodings:

    rgb8 bgr8 rgba8 bgra8 mono8 8UC1 (1 byte per channel)    mono16 16UC1 (2 bytes)

CompressedImage (image_transport's `compressed` transport): JPEG or PNG data, told apart by their signature;
`format` is image_transport's "<encoding>; <codec> compressed [<encoding>]" (e.g. "rgb8; jpeg compressed
bgr8", "mono16; png compressed ") or a bare "jpeg" / "png", and a codec it names must be the data's. The size
the header declares is checked against max_pixels before anything is decoded (the data is untrusted), and
malformed or truncated data raises ImageConversionError. JPEG is decoded by simplejpeg (libjpeg-turbo), PNG by
Pillow, chosen by measurement (docs/node.md, "Compressed images"). Segmentation must be lossless: PNG with one
channel (8- or 16-bit grey, or palette indices); JPEG masks are refused, JPEG changes ids along every edge.

Camera images become (H, W, 3) uint8 RGB (`image_to_rgb`); segmentation images become (H, W) uint8 or
uint16 instance ids (`mask_to_ids`). The arrays are views of the message's buffer where no conversion
is needed (rgb8, mono8 masks): do not keep them past the message.
"""

from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

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
# The compressed formats, by the signature their data starts with, and the names a format string may give them.
COMPRESSED_SIGNATURES = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}
CODEC_NAMES = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
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


def compressed_codec(message: CompressedImage) -> str:
    """"jpeg" or "png": the codec of a CompressedImage's data (by its signature). Raises ImageConversionError
    for other data, or a format string that names another codec or one that is not supported."""
    text = message.format.strip()
    named = text.partition(";")[2] if ";" in text else text
    words = named.split()
    named_codec = words[0].lower() if words else ""
    if named_codec and named_codec not in CODEC_NAMES:
        raise ImageConversionError(f"compressed format {message.format!r} is not supported; publish JPEG or PNG "
                                   "(image_transport's compressed transport) or raw images")
    data = bytes(message.data[:8])
    codec = next((name for name, signature in COMPRESSED_SIGNATURES.items() if data.startswith(signature)), None)
    if codec is None:
        raise ImageConversionError(f"the compressed data ({len(message.data)} bytes, format {message.format!r}) is "
                                   "neither JPEG nor PNG: it does not start with either's signature")
    if named_codec and CODEC_NAMES[named_codec] != codec:
        raise ImageConversionError(f"the format {message.format!r} names {named_codec} but the data is {codec}")
    return codec


def decode_compressed(message: CompressedImage, max_pixels: int | None = None, instance_ids: bool = False
                      ) -> np.ndarray:
    """The pixels of a CompressedImage: (H, W) uint8 (grey) or uint16 (16-bit grey), or (H, W, 3) uint8 RGB
    (colour; alpha dropped, other colour modes converted). instance_ids: a palette PNG gives its indices (the
    ids of a label image) instead of its colours.

    Raises ImageConversionError for data that is not JPEG or PNG, an empty image, a header declaring more than
    max_pixels pixels (checked before decoding), and malformed or truncated data.
    """
    codec = compressed_codec(message)
    data = bytes(message.data)
    if codec == "jpeg":
        import simplejpeg

        try:
            height, width, colourspace, _ = simplejpeg.decode_jpeg_header(data)
            _check_declared_size(codec, width, height, max_pixels)
            # strict (the default): a decoder warning, e.g. for truncated data, is an error.
            if colourspace == "Gray":
                return simplejpeg.decode_jpeg(data, colorspace="GRAY")[:, :, 0]
            return simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ValueError as error:  # simplejpeg's for bad or truncated data
            raise ImageConversionError(f"the jpeg data ({len(data)} bytes) is malformed or truncated: {error}") from None
    from PIL import Image as PilImage, UnidentifiedImageError

    try:
        with PilImage.open(io.BytesIO(data), formats=["PNG"]) as picture:  # reads the header only
            _check_declared_size(codec, *picture.size, max_pixels)
            if picture.mode not in ("RGB", "L", "I;16") and not (instance_ids and picture.mode == "P"):
                picture = picture.convert("L" if picture.mode in ("1", "I;16B", "I;16L") else "RGB")
            return np.asarray(picture)  # decodes here
    except PilImage.DecompressionBombError as error:  # Pillow's own limit, over 178 Mpixels, met at open
        raise ImageConversionError(f"the png header declares a huge image: {error}") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError) as error:  # Pillow's for bad data
        raise ImageConversionError(f"the png data ({len(data)} bytes) is malformed or truncated: {error}") from None


def _check_declared_size(codec: str, width: int, height: int, max_pixels: int | None) -> None:
    if width == 0 or height == 0:
        raise ImageConversionError(f"the {codec} image is empty ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageConversionError(f"the {codec} header declares {width}x{height}, more than the {max_pixels} "
                                   "pixels allowed (max_image_pixels); send a smaller image or raise the limit")


def image_to_rgb(message: Image | CompressedImage, max_pixels: int | None = None) -> np.ndarray:
    """A camera image as (H, W, 3) uint8 RGB.

    Colour encodings are reordered (alpha dropped); mono8 is repeated into three channels; mono16 keeps its
    high byte (value // 256). A CompressedImage is decoded (decode_compressed) and converted the same way.
    Raises ImageConversionError as image_to_array and decode_compressed do.
    """
    if isinstance(message, CompressedImage):
        pixels = decode_compressed(message, max_pixels)
        if pixels.ndim == 3:
            return pixels
        grey = pixels if pixels.dtype == np.uint8 else (pixels >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    pixels = image_to_array(message, max_pixels)
    encoding = ENCODINGS[message.encoding]
    if encoding.channels == 1:
        grey = pixels if encoding.channel_bytes == 1 else (pixels >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if encoding.order == "RGB":
        return pixels
    return pixels[:, :, _RGB_INDEX[encoding.order]]


def mask_to_ids(message: Image | CompressedImage, max_pixels: int | None = None) -> np.ndarray:
    """A segmentation image as (H, W) uint8 or uint16 ids (0 = background, k = person k).

    Raises ImageConversionError for colour encodings (instance ids have one channel), JPEG (lossy) masks, and
    as image_to_array and decode_compressed do.
    """
    if isinstance(message, CompressedImage):
        if compressed_codec(message) == "jpeg":
            raise ImageConversionError("the segmentation is JPEG, which is lossy: it changes instance ids along "
                                       "every edge; publish masks raw or PNG-compressed (lossless)")
        ids = decode_compressed(message, max_pixels, instance_ids=True)
        if ids.ndim != 2:
            raise ImageConversionError("the PNG segmentation has colour channels; publish instance ids as 8- or "
                                       "16-bit grey")
        return ids
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


def array_to_compressed(array: np.ndarray, codec: str, quality: int = 95) -> CompressedImage:
    """A CompressedImage of `array` as image_transport's compressed publisher writes it: (H, W, 3) uint8 RGB as
    "rgb8; jpeg compressed bgr8" or "rgb8; png compressed bgr8", (H, W) uint8 / uint16 grey as
    "mono8; <codec> compressed " / "mono16; png compressed ". quality: JPEG quality (1-100). The header is left
    empty. Raises ImageConversionError for another codec, shape or dtype (JPEG has no 16-bit grey)."""
    from PIL import Image as PilImage

    if codec not in COMPRESSED_SIGNATURES:
        raise ImageConversionError(f"codec must be one of {', '.join(COMPRESSED_SIGNATURES)}, got {codec!r}")
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        encoding, target = "rgb8", "bgr8"
    elif array.ndim == 2 and array.dtype == np.uint8:
        encoding, target = "mono8", ""
    elif array.ndim == 2 and array.dtype == np.uint16 and codec == "png":
        encoding, target = "mono16", ""
    else:
        raise ImageConversionError(f"{codec} needs an (H, W, 3) or (H, W) uint8 array (or (H, W) uint16 for png), "
                                   f"got {array.dtype.name} {array.shape}")
    buffer = io.BytesIO()
    options = {"quality": quality} if codec == "jpeg" else {"compress_level": 3}
    PilImage.fromarray(np.ascontiguousarray(array)).save(buffer, format=codec.upper(), **options)
    message = CompressedImage()
    message.format = f"{encoding}; {codec} compressed {target}"
    message.data = buffer.getvalue()
    return message

"""The node's input rules, in one object that the node and `fasthmr replay` both feed.

Images and masks are paired by stamp (fasthmr_ros.pairing.StampPairer); each frame that leaves the pairer
takes the CameraInfo of the moment (the newest one received before it left); images that found no mask
follow `unmatched_images` (drop, or process with the whole image as one person); an image older than the
previous one means time jumped back (a bag looped, a simulator restarted) and is counted. Every drop is
counted through the `count(name, amount)` callable the owner passes (the node's NodeStatistics, the
replay's Counter), under the names of fasthmr_ros.diagnostics. No ROS entities, no clocks: the owner
passes the time (`now`, seconds): the node its monotonic clock, the replay the bag's stamps.
The camera model is K with CameraInfo's distortion, or P without it for images marked rectified
(`image_rectified`); images and masks arrive raw or compressed (fasthmr_ros.image_conversion decodes both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from fasthmr_model.data.crop import validate_intrinsics
from fasthmr_model.data.lens import CameraModel
from fasthmr_model.errors import InputError
from fasthmr_ros.pairing import Pair, PairingConfig, StampPairer
from fasthmr_ros.stamps import stamp_seconds

MASK_MODES = ("instances", "binary")
UNMATCHED_IMAGE_POLICIES = ("process", "drop")
# image_transport's transports the node subscribes with: raw sensor_msgs/Image on the topic, or sensor_msgs/
# CompressedImage on `<topic>/compressed` (fasthmr_ros.image_conversion decodes both).
TRANSPORTS = ("raw", "compressed")
COMPRESSED_SUFFIX = "/compressed"


@dataclass(frozen=True)
class InputOptions:
    """The node's top-level input parameters (they have no namespace: parameters.INPUT_OPTIONS).

    Args:
        mask_mode: "instances" (0 = background, k = person k) or "binary" (every non-zero pixel belongs to
            one person: for a segmenter that does not separate people, with one person in view).
        max_image_pixels: larger images (and masks) are rejected before they are read.
        unmatched_images: "drop" images that found no mask, or "process" them with the whole image as one
            person.
        image_rectified: the images are rectified (image_rect): CameraInfo's P applies, without distortion.
            False: the images are the camera's own (image_raw): K and the distortion model with D apply.
    """

    mask_mode: str = "instances"
    max_image_pixels: int = 4096 * 4096
    unmatched_images: str = "drop"
    image_rectified: bool = False

    def __post_init__(self) -> None:
        if self.mask_mode not in MASK_MODES:
            raise InputError(f"mask_mode must be one of {MASK_MODES}, got {self.mask_mode!r}")
        if self.max_image_pixels < 1:
            raise InputError(f"max_image_pixels must be >= 1, got {self.max_image_pixels}")
        if self.unmatched_images not in UNMATCHED_IMAGE_POLICIES:
            raise InputError(f"unmatched_images must be one of {UNMATCHED_IMAGE_POLICIES}, got {self.unmatched_images!r}")


def camera_model(camera_info: CameraInfo, rectified: bool = False) -> CameraModel:
    """The camera model of a CameraInfo: K with its distortion model and D, or for a rectified image the left
    3x3 of P without distortion. Raises InputError (naming the field) when K or P is not a usable pinhole
    matrix or D does not fit its model."""
    try:
        if rectified:
            camera = CameraModel(np.array(camera_info.p, dtype=np.float64).reshape(3, 4)[:, :3])
        else:
            camera = CameraModel(np.array(camera_info.k, dtype=np.float64).reshape(3, 3), camera_info.distortion_model,
                                 tuple(camera_info.d))
        validate_intrinsics(camera.intrinsics)
    except ValueError:  # a K or P of the wrong length (a message built in Python can hold any)
        raise InputError(f"the CameraInfo's {'P' if rectified else 'K'} must hold {12 if rectified else 9} numbers, "
                         f"got {len(camera_info.p if rectified else camera_info.k)}") from None
    except InputError as error:
        if rectified:  # the checks speak of K: say that it came from P
            raise InputError(f"{error} (image_rectified: P's left 3x3 is used as K)") from None
        raise
    return camera


class Frame(NamedTuple):
    """A frame ready for the model: the image, its mask (None: processed without one) and the CameraInfo in
    force when it left the pairer (None: none received yet)."""

    image: Image | CompressedImage
    mask: Image | CompressedImage | None
    camera_info: CameraInfo | None


class InputRules:
    """See the module docstring. Not thread-safe: one thread feeds it (the node's executor).

    Args:
        pairing: the pairer's tolerance, queue and timeout.
        options: unmatched_images is read here (at every frame: the node may change it).
        count: called as count(name, amount) for every drop or event counted.
        masks_expected: False for a source without a mask topic (a bag that has none): every image is a
            frame at once, without a mask, whatever unmatched_images says.
    """

    def __init__(self, pairing: PairingConfig, options: InputOptions, count: Callable[[str, int], None],
                 masks_expected: bool = True) -> None:
        self.pairer = StampPairer(pairing)
        self.options = options
        self.masks_expected = masks_expected
        self.camera_info: CameraInfo | None = None
        self.last_image_stamp: float | None = None
        self.time_jumped_back: tuple[float, float] | None = None  # of the last image: (previous, its stamp)
        self._count = count
        self._pairer_counted = (0, 0)  # masks_dropped and images_dropped already counted

    def on_camera_info(self, message: CameraInfo) -> str | None:
        """The CameraInfo of the moment. Returns what is wrong with its camera model (and counts bad_camera_info),
        else None; it is checked again per frame, against the frame's image, by the frame processor."""
        self.camera_info = message
        try:
            camera_model(message, self.options.image_rectified)
        except InputError as error:
            self._count("bad_camera_info", 1)
            return str(error)
        return None

    def on_image(self, message: Image | CompressedImage, now: float) -> list[Frame]:
        """An image arrived at time `now` (s); returns the frames now ready, oldest first. Sets `time_jumped_back`
        to (previous stamp, this stamp) when the image is older than the previous one, else None."""
        stamp = stamp_seconds(message.header)
        self.time_jumped_back = None
        if self.last_image_stamp is not None and stamp < self.last_image_stamp:
            # The pairer drops what waits from the old timeline; the stream ends every track by itself.
            self._count("time_jumped_back", 1)
            self.time_jumped_back = (self.last_image_stamp, stamp)
        self.last_image_stamp = stamp
        if not self.masks_expected:
            return [Frame(message, None, self.camera_info)]
        return self._frames(self.pairer.add_image(stamp, message, now))

    def on_mask(self, message: Image | CompressedImage, now: float) -> list[Frame]:
        """A mask arrived at time `now` (s); returns the frames now ready."""
        return self._frames(self.pairer.add_mask(stamp_seconds(message.header), message, now))

    def expire(self, now: float) -> list[Frame]:
        """Releases the images that waited sync.mask_timeout or longer (call it now and then; `math.inf` at the
        end of a bag)."""
        return self._frames(self.pairer.expire(now))

    @property
    def images_waiting(self) -> bool:
        """Whether images wait for their mask: only then must expire() be called."""
        return self.pairer.images_waiting > 0

    def _frames(self, pairs: list[Pair]) -> list[Frame]:
        pairer = self.pairer
        self._count("masks_unpaired", pairer.masks_dropped - self._pairer_counted[0])
        self._count("dropped_time_jump", pairer.images_dropped - self._pairer_counted[1])
        self._pairer_counted = (pairer.masks_dropped, pairer.images_dropped)
        frames = []
        for pair in pairs:
            if pair.mask is None and self.options.unmatched_images == "drop":
                self._count("dropped_without_mask", 1)
                continue
            frames.append(Frame(pair.image, pair.mask, self.camera_info))
        return frames

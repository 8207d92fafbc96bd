"""Pairs camera images with segmentation images by stamp (approximate, bounded), as message_filters'
ApproximateTimeSynchronizer would for two topics (message_filters is not installable here).

An image pairs with the mask whose stamp is nearest to its own, within `tolerance` seconds. An image that
cannot pair any more is released without a mask: when a mask newer than its stamp + tolerance has
arrived (each stream arrives in stamp order, so no nearer mask can follow), when it has waited
`mask_timeout` seconds of wall time (the segmentation is slow or absent), or when newer images push it
out of the bounded queue. Masks leave when they pair, when an image pairs with a newer one, or when
newer masks push them out of the bounded queue (a mask is never judged too old on arrival: after time
jumps back, the first mask of the new timeline may come before its image). Plain Python, no ROS: the
node feeds it (stamp, message) and the time, and publishes what comes out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

from fasthmr_model.errors import FastHMRError


@dataclass(frozen=True)
class PairingConfig:
    """Args:
        tolerance: largest stamp difference (s) between an image and its mask.
        queue_size: images (and masks) kept waiting for a partner; older ones leave first.
        mask_timeout: wall time (s) an image waits for its mask before it is released without one.
    """

    tolerance: float = 0.02
    queue_size: int = 5
    mask_timeout: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.tolerance <= 1.0:
            raise FastHMRError(f"sync.tolerance must be in [0, 1] s, got {self.tolerance}")
        if not 1 <= self.queue_size <= 100:
            raise FastHMRError(f"sync.queue_size must be in [1, 100], got {self.queue_size}")
        if not 0.0 <= self.mask_timeout <= 10.0:
            raise FastHMRError(f"sync.mask_timeout must be in [0, 10] s, got {self.mask_timeout}")


class Pair(NamedTuple):
    """An image and its mask (None: the image found no mask within the tolerance)."""

    image: Any
    mask: Any | None


class _Waiting(NamedTuple):
    stamp: float
    message: Any
    arrived: float  # wall time of arrival, seconds


class StampPairer:
    """Approximate stamp pairing of two streams with bounded queues.

    add_image / add_mask / expire return the Pairs that became ready, in image stamp order. Counters (they
    only grow): `images_unpaired` (images released without a mask), `masks_dropped` (masks that no image
    paired with: pushed out of the queue, or passed over for a nearer one) and `images_dropped` (images
    waiting when time jumped back).
    """

    def __init__(self, config: PairingConfig = PairingConfig()) -> None:
        self.config = config
        self._images: deque[_Waiting] = deque()
        self._masks: deque[_Waiting] = deque()
        self._newest_image_stamp = float("-inf")
        self._newest_mask_stamp = float("-inf")
        self.images_unpaired = 0
        self.masks_dropped = 0
        self.images_dropped = 0

    @property
    def images_waiting(self) -> int:
        """Images waiting for their mask (they leave by expire() at the latest)."""
        return len(self._images)

    def add_image(self, stamp: float, message: Any, now: float) -> list[Pair]:
        """An image arrived at wall time `now` (s); returns the pairs now ready.

        An image older than the newest one so far means time jumped back (a bag looped, a simulator
        restarted): the images still waiting and the masks newer than this one belong to the old timeline
        and are dropped. Masks of the new timeline that came before this image are kept.
        """
        if stamp < self._newest_image_stamp:
            self.images_dropped += len(self._images)
            self._images.clear()
            future = [mask for mask in self._masks if mask.stamp > stamp + self.config.tolerance]
            self.masks_dropped += len(future)
            self._masks = deque(mask for mask in self._masks if mask.stamp <= stamp + self.config.tolerance)
            self._newest_mask_stamp = max((mask.stamp for mask in self._masks), default=float("-inf"))
        self._newest_image_stamp = stamp
        self._images.append(_Waiting(stamp, message, now))
        ready = []
        if len(self._images) > self.config.queue_size:
            ready.append(self._release_unpaired())
        return ready + self._match(now)

    def add_mask(self, stamp: float, message: Any, now: float) -> list[Pair]:
        """A mask arrived at wall time `now` (s); returns the pairs now ready."""
        self._masks.append(_Waiting(stamp, message, now))
        self._newest_mask_stamp = max(self._newest_mask_stamp, stamp)
        if len(self._masks) > self.config.queue_size:
            self._drop_oldest_mask()
        return self._match(now)

    def expire(self, now: float) -> list[Pair]:
        """Releases the images that waited mask_timeout or longer (call it now and then)."""
        return self._match(now)

    def _release_unpaired(self) -> Pair:
        self.images_unpaired += 1
        return Pair(self._images.popleft().message, None)

    def _drop_oldest_mask(self) -> None:
        self._masks.popleft()
        self.masks_dropped += 1

    def _match(self, now: float) -> list[Pair]:
        ready = []
        tolerance = self.config.tolerance
        while self._images:
            image = self._images[0]
            nearest = min(self._masks, key=lambda mask: abs(mask.stamp - image.stamp), default=None)
            if nearest is not None and abs(nearest.stamp - image.stamp) <= tolerance:
                # Masks older than the chosen one could only pair with older images, which are gone.
                while self._masks[0] is not nearest:
                    self._drop_oldest_mask()
                self._masks.popleft()
                ready.append(Pair(self._images.popleft().message, nearest.message))
            elif self._newest_mask_stamp > image.stamp + tolerance or now - image.arrived >= self.config.mask_timeout:
                # The mask stream is past this image (no nearer mask can follow), or it waited long enough.
                ready.append(self._release_unpaired())
            else:
                break
        return ready

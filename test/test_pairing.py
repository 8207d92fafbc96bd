"""Image/mask pairing by stamp, and the drop-oldest queue between the executor and the inference thread."""

from __future__ import annotations

import threading
import time

import pytest

from fasthmr_model.errors import FastHMRError
from fasthmr_ros.node import LatestFrames
from fasthmr_ros.pairing import Pair, PairingConfig, StampPairer

CONFIG = PairingConfig(tolerance=0.01, queue_size=3, mask_timeout=0.5)


def test_image_pairs_with_the_nearest_mask_within_tolerance_whichever_comes_first():
    pairer = StampPairer(CONFIG)
    assert pairer.add_image(1.000, "image 1", now=0.0) == []
    assert pairer.add_mask(1.004, "mask 1", now=0.0) == [Pair("image 1", "mask 1")]
    assert pairer.add_mask(2.000, "mask 2", now=0.0) == []  # the mask is first this time
    assert pairer.add_image(1.995, "image 2", now=0.0) == [Pair("image 2", "mask 2")]
    assert pairer.images_unpaired == pairer.masks_dropped == 0


def test_the_nearer_of_two_masks_wins_and_the_older_one_is_dropped():
    pairer = StampPairer(CONFIG)
    pairer.add_mask(0.992, "early", now=0.0)
    pairer.add_mask(0.999, "close", now=0.0)
    assert pairer.add_image(1.0, "image", now=0.0) == [Pair("image", "close")]
    assert pairer.masks_dropped == 1


def test_image_is_released_without_mask_once_the_mask_stream_is_past_it():
    pairer = StampPairer(CONFIG)
    pairer.add_image(1.0, "lonely", now=0.0)
    # The mask of the next frame proves that none will come for 1.0 (streams arrive in stamp order).
    assert pairer.add_mask(1.02, "next mask", now=0.0) == [Pair("lonely", None)]
    assert pairer.add_image(1.02, "next", now=0.0) == [Pair("next", "next mask")]
    assert pairer.images_unpaired == 1


def test_image_is_released_without_mask_after_the_timeout():
    pairer = StampPairer(CONFIG)
    pairer.add_image(1.0, "image", now=10.0)
    assert pairer.expire(now=10.4) == []
    assert pairer.expire(now=10.5) == [Pair("image", None)]


def test_queues_are_bounded_and_drop_oldest_first():
    pairer = StampPairer(CONFIG)
    released = [pair for k in range(5) for pair in pairer.add_image(float(k), f"image {k}", now=0.0)]
    assert released == [Pair("image 0", None), Pair("image 1", None)]
    pairer = StampPairer(CONFIG)
    for k in range(5):
        pairer.add_mask(10.0 + k, f"mask {k}", now=0.0)
    assert pairer.masks_dropped == 2
    assert pairer.add_image(14.0, "image", now=0.0) == [Pair("image", "mask 4")]


def test_time_jumping_back_drops_the_old_timeline_and_pairs_the_new_one():
    pairer = StampPairer(CONFIG)
    pairer.add_image(5.0, "old image", now=0.0)
    pairer.add_mask(4.0, "old mask", now=0.0)  # too early for 5.0, but kept: it might start a new timeline
    # A bag loops: the first mask of the new timeline arrives before its image.
    assert pairer.add_mask(1.0, "new mask", now=0.0) == []
    assert pairer.add_image(1.0, "new image", now=0.0) == [Pair("new image", "new mask")]
    assert (pairer.images_dropped, pairer.masks_dropped) == (1, 1)
    # The old timeline's newest mask no longer marks new images as hopeless.
    assert pairer.add_image(1.1, "next", now=0.0) == []
    assert pairer.add_mask(1.1, "next mask", now=0.0) == [Pair("next", "next mask")]


@pytest.mark.parametrize("field, value", [("tolerance", -0.1), ("queue_size", 0), ("mask_timeout", 11.0)])
def test_bad_pairing_settings_are_refused(field, value):
    with pytest.raises(FastHMRError, match=field):
        PairingConfig(**{field: value})


def test_latest_frames_drops_the_oldest_and_counts_it():
    frames = LatestFrames(2)
    assert [frames.put(k) for k in range(4)] == [False, False, True, True]
    assert frames.get() == 2 and frames.get() == 3
    for k in range(2):
        frames.put(k)
    assert frames.resize(1) == 1 and frames.get() == 1


def test_latest_frames_wakes_a_waiting_reader_and_closes():
    frames, received = LatestFrames(1), []
    reader = threading.Thread(target=lambda: received.extend(iter(frames.get, None)))
    reader.start()
    frames.put("frame")
    deadline = time.monotonic() + 5.0
    while not received and time.monotonic() < deadline:
        time.sleep(0.001)
    frames.close()
    reader.join(timeout=5.0)
    assert not reader.is_alive() and received == ["frame"]

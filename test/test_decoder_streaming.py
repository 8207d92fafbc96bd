"""Causal streaming windows: ring order, warm-up padding, resets on gaps, backwards time and lost tracks."""

from __future__ import annotations

import numpy as np
import pytest

from fasthmr_model.decoder.streaming import FeatureRing, StreamingConfig, TrackWindows
from fasthmr_model.errors import InputError


def test_ring_keeps_the_last_window_in_time_order():
    ring = FeatureRing(4, 1)
    for value in range(1, 11):
        ring.append(np.array([value]))
        expected = list(range(max(1, value - 3), value + 1))
        expected = [expected[0]] * (4 - len(expected)) + expected  # warm-up: the first frame repeated
        assert ring.ordered()[:, 0].tolist() == expected


def test_ring_memory_is_fixed():
    ring = FeatureRing(3, 2)
    buffer = ring._features
    for value in range(100):
        ring.append(np.full(2, value))
    assert ring._features is buffer and buffer.shape == (3, 2)


def stream(windows: TrackWindows, track: int, stamps):
    return [windows.push([track], np.array([[stamp]]), stamp) for stamp in stamps]


def test_warm_up_is_flagged_until_the_window_is_full():
    windows = TrackWindows(3, 1)
    results = stream(windows, 7, [0.0, 0.1, 0.2, 0.3])
    assert [int(result.frames[0]) for result in results] == [1, 2, 3, 3]
    assert [bool(result.warm_up[0]) for result in results] == [True, True, False, False]
    assert [bool(result.reset[0]) for result in results] == [True, False, False, False]
    assert results[-1].features[0, :, 0].tolist() == pytest.approx([0.1, 0.2, 0.3])


def test_a_gap_longer_than_the_limit_starts_the_track_over():
    windows = TrackWindows(3, 1, StreamingConfig(max_gap_s=0.5))
    results = stream(windows, 1, [0.0, 0.1, 0.2, 0.6, 1.2])
    assert [int(result.frames[0]) for result in results] == [1, 2, 3, 3, 1]
    assert results[-1].features[0, :, 0].tolist() == pytest.approx([1.2, 1.2, 1.2])


@pytest.mark.parametrize("jump", [-5.0, 0.0])
def test_time_running_backwards_or_standing_still_resets_every_track(jump):
    windows = TrackWindows(3, 1)
    for stamp in (0.0, 0.1, 0.2):
        windows.push([1, 2], np.array([[stamp], [stamp]]), stamp)
    result = windows.push([1, 2], np.array([[9.0], [9.0]]), 0.2 + jump)
    assert result.frames.tolist() == [1, 1] and result.reset.tolist() == [True, True]


def test_lost_tracks_are_forgotten_and_others_kept():
    windows = TrackWindows(2, 1, StreamingConfig(max_gap_s=0.5))
    windows.push([1, 2], np.zeros((2, 1)), 0.0)
    windows.push([1], np.zeros((1, 1)), 0.4)
    assert len(windows) == 2
    windows.push([1], np.zeros((1, 1)), 0.8)  # track 2 unseen for 0.8 s: gone
    assert len(windows) == 1
    result = windows.push([1, 2], np.ones((2, 1)), 0.9)
    assert result.frames.tolist() == [2, 1] and result.reset.tolist() == [False, True]


def test_bad_input_raises_input_error():
    windows = TrackWindows(2, 3)
    with pytest.raises(InputError, match="features"):
        windows.push([1], np.zeros((1, 2)), 0.0)
    with pytest.raises(InputError, match="unique"):
        windows.push([1, 1], np.zeros((2, 3)), 0.0)
    with pytest.raises(InputError, match="stamp"):
        windows.push([1], np.zeros((1, 3)), float("nan"))
    with pytest.raises(InputError, match="max_gap_s"):
        StreamingConfig(max_gap_s=0.0)

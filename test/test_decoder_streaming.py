"""Causal streaming windows: ring order, warm-up padding, windows that end with their tracks."""

from __future__ import annotations

import numpy as np
import pytest

from fasthmr_model.decoder.streaming import FeatureRing, TrackWindows
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


def stream(windows: TrackWindows, track: int, values):
    return [windows.push([track], np.array([[value]])) for value in values]


def test_warm_up_is_flagged_until_the_window_is_full():
    windows = TrackWindows(3, 1)
    results = stream(windows, 7, [0.0, 0.1, 0.2, 0.3])
    assert [int(result.frames[0]) for result in results] == [1, 2, 3, 3]
    assert [bool(result.warm_up[0]) for result in results] == [True, True, False, False]
    assert [bool(result.reset[0]) for result in results] == [True, False, False, False]
    assert results[-1].features[0, :, 0].tolist() == pytest.approx([0.1, 0.2, 0.3])


def test_ended_tracks_are_forgotten_and_others_kept():
    windows = TrackWindows(2, 1)
    windows.push([1, 2], np.zeros((2, 1)))
    windows.push([1, 2], np.zeros((2, 1)))
    windows.end([2, 99])  # 99: never seen, ignored
    assert len(windows) == 1
    result = windows.push([1, 2], np.ones((2, 1)))
    assert result.frames.tolist() == [2, 1] and result.reset.tolist() == [False, True]
    windows.clear()
    assert len(windows) == 0


def test_bad_input_raises_input_error():
    windows = TrackWindows(2, 3)
    with pytest.raises(InputError, match="features"):
        windows.push([1], np.zeros((1, 2)))
    with pytest.raises(InputError, match="unique"):
        windows.push([1, 1], np.zeros((2, 3)))

"""Velocity per track from its recent positions: a Theil-Sen line fit (the median of the slopes between every
pair of samples, per axis) over the samples of the last `window` seconds.

The median ignores a frame whose position is far off (a bad crop, a mask that merged two people): with at
least MIN_SAMPLES samples, one outlier spoils fewer than half of the pairwise slopes and does not move the
fit. A track with fewer samples (a new track) has no velocity yet: zero, and flagged as not valid. The
stream (fasthmr_model.stream) feeds it the pelvis joint of every body and ends the histories of the tracks
that end. Run-time module: numpy only.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

# Fewest samples for a velocity: with 5, one outlier spoils 4 of the 10 pairwise slopes, under half.
MIN_SAMPLES = 5
# Most samples kept per track (a fast camera's window): bounds memory and the pairs (N (N - 1) / 2) per fit.
MAX_SAMPLES = 32


class Velocities(NamedTuple):
    """velocity (B, 3) in the positions' frame and units per second; valid (B,) bool: False (velocity zero)
    for a track with fewer than MIN_SAMPLES samples in its window."""

    velocity: np.ndarray
    valid: np.ndarray


@lru_cache(maxsize=MAX_SAMPLES + 1)
def _pairs(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) of `count` samples: two index arrays of count (count - 1) / 2."""
    return np.triu_indices(count, k=1)


def theil_sen_velocity(stamps: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The median over sample pairs of (point_j - point_i) / (stamp_j - stamp_i), per axis: stamps (N,) s,
    strictly increasing, N >= 2; points (3, N) (axes first: the median runs along contiguous rows) -> (3,)."""
    first, second = _pairs(len(stamps))
    slopes = (points[:, second] - points[:, first]) / (stamps[second] - stamps[first])
    middle = slopes.shape[1] // 2
    if slopes.shape[1] % 2:
        return np.partition(slopes, middle, axis=1)[:, middle]
    low_and_high = np.partition(slopes, (middle - 1, middle), axis=1)
    return 0.5 * (low_and_high[:, middle - 1] + low_and_high[:, middle])


class _History:
    """One track's newest samples, oldest first: stamps (MAX_SAMPLES,), points (3, MAX_SAMPLES), the first
    `count` used."""

    __slots__ = ("stamps", "points", "count")

    def __init__(self) -> None:
        self.stamps = np.empty(MAX_SAMPLES)
        self.points = np.empty((3, MAX_SAMPLES))
        self.count = 0

    def add(self, stamp: float, point: np.ndarray, window: float) -> None:
        """Adds a sample newer than the newest (an older or equal stamp is not added) and drops the samples
        older than `window` seconds before it, and the oldest beyond MAX_SAMPLES."""
        count = self.count
        if count and stamp <= self.stamps[count - 1]:
            return
        drop = max(int(np.searchsorted(self.stamps[:count], stamp - window)), count + 1 - MAX_SAMPLES)
        if drop:
            count -= drop
            self.stamps[:count] = self.stamps[drop:drop + count]
            self.points[:, :count] = self.points[:, drop:drop + count]
        self.stamps[count] = stamp
        self.points[:, count] = point
        self.count = count + 1


class TrackVelocities:
    """Each live track's recent positions, and its velocity.

    Not thread-safe: the stream's thread calls update().
    """

    def __init__(self) -> None:
        self._history: dict[int, _History] = {}

    def reset(self) -> None:
        self._history.clear()

    def end(self, track_ids) -> None:
        """Forgets the histories of tracks that ended."""
        for track in track_ids:
            self._history.pop(int(track), None)

    def update(self, stamp: float, track_ids: np.ndarray, positions: np.ndarray, window: float) -> Velocities:
        """Adds the positions (B, 3) of the tracks track_ids (B,) seen at `stamp` (s) and returns their
        velocities, fitted over each track's samples of the last `window` seconds. A stamp not after a
        track's newest sample is not added."""
        velocity = np.zeros((len(track_ids), 3))
        valid = np.zeros(len(track_ids), bool)
        for row, track in enumerate(track_ids.tolist()):
            history = self._history.get(track)
            if history is None:
                history = self._history[track] = _History()
            history.add(stamp, positions[row], window)
            if history.count >= MIN_SAMPLES:
                count = history.count
                velocity[row] = theil_sen_velocity(history.stamps[:count], history.points[:, :count])
                valid[row] = True
        return Velocities(velocity, valid)

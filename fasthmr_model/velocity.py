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
# Pairs of samples closer in time than this (s) give no slope (equal stamps).
MIN_PAIR_SECONDS = 1e-6


class Velocities(NamedTuple):
    """velocity (B, 3) in the positions' frame and units per second; valid (B,) bool: False (velocity zero)
    for a track with fewer than MIN_SAMPLES samples in its window."""

    velocity: np.ndarray
    valid: np.ndarray


def theil_sen_velocity(stamps: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The median over sample pairs of (position_j - position_i) / (stamp_j - stamp_i), per axis:
    stamps (N,) s, positions (N, 3) -> (3,). Needs two samples with different stamps."""
    first, second = _pairs(len(stamps))
    elapsed = stamps[second] - stamps[first]
    usable = elapsed > MIN_PAIR_SECONDS
    slopes = (positions[second[usable]] - positions[first[usable]]) / elapsed[usable, None]
    return np.median(slopes, axis=0)


@lru_cache(maxsize=MAX_SAMPLES + 1)
def _pairs(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) of `count` samples: two index arrays."""
    return np.triu_indices(count, k=1)


class TrackVelocities:
    """Each live track's recent positions, and its velocity.

    Not thread-safe: the stream's thread calls update().
    """

    def __init__(self) -> None:
        self._history: dict[int, tuple[list[float], list[np.ndarray]]] = {}

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
            stamps, samples = self._history.setdefault(track, ([], []))
            if not stamps or stamp > stamps[-1]:
                stamps.append(stamp)
                samples.append(np.asarray(positions[row], np.float64))
            # Samples older than the window leave; the newest always stays.
            old = next((index for index, seen in enumerate(stamps) if stamp - seen <= window), len(stamps) - 1)
            old = max(old, len(stamps) - MAX_SAMPLES)
            del stamps[:old], samples[:old]
            if len(stamps) >= MIN_SAMPLES:
                velocity[row] = theil_sen_velocity(np.array(stamps), np.stack(samples))
                valid[row] = True
        return Velocities(velocity, valid)

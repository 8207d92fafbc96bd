"""Causal streaming: per-track ring buffers of the last W frame features, and the windows the decoder reads.

Each new frame appends its feature to its track's buffer in O(1) (fixed memory: W x D floats per track)
and yields the window that ends at it, oldest frame first. A track with fewer than W frames so far is in
warm-up: its window is padded at the old end with copies of its first frame (the decoder is trained on
such windows) and flagged. A buffer resets when time runs backwards or stands still (a bag replayed from
its start, a clock reset), when a track's previous frame is more than `max_gap_s` old (a gap or a track
lost and found again), and a track unseen for that long is forgotten, so memory stays bounded.

Run-time module: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fasthmr_model.errors import InputError


@dataclass(frozen=True)
class StreamingConfig:
    """Args:
        max_gap_s: a track whose previous frame is older than this starts over (seconds).
    """

    max_gap_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.max_gap_s > 0.0:
            raise InputError(f"max_gap_s must be > 0 seconds, got {self.max_gap_s}")


class FeatureRing:
    """The last `window` features (D,) of one track, in a fixed (window, D) float32 array."""

    def __init__(self, window: int, feature_size: int) -> None:
        self._features = np.zeros((window, feature_size), np.float32)
        self._next = 0  # the slot the next feature goes into
        self.count = 0  # features appended since the last reset (may exceed the window)

    @property
    def window(self) -> int:
        return self._features.shape[0]

    def reset(self) -> None:
        self._next = 0
        self.count = 0

    def append(self, feature: np.ndarray) -> None:
        self._features[self._next] = feature
        self._next = (self._next + 1) % self.window
        self.count += 1

    def ordered(self) -> np.ndarray:
        """(window, D) oldest first, ending with the newest feature; in warm-up the missing old frames
        are copies of the first one."""
        if self.count >= self.window:
            return np.concatenate([self._features[self._next:], self._features[:self._next]])
        if self.count == 0:
            raise InputError("the track has no frames yet: append a feature before reading its window")
        padding = np.repeat(self._features[:1], self.window - self.count, axis=0)
        return np.concatenate([padding, self._features[:self.count]])


class Windows(NamedTuple):
    """The decoder's input for the persons of one frame: features (B, W, D) oldest first; frames (B,) how many
    real frames each window holds (W or fewer in warm-up); reset (B,) bool: this frame started the track over."""

    features: np.ndarray
    frames: np.ndarray
    reset: np.ndarray

    @property
    def warm_up(self) -> np.ndarray:
        """(B,) bool: fewer than W real frames so far (the window is padded)."""
        return self.frames < self.features.shape[1]


class TrackWindows:
    """Ring buffers for every track of a stream (track = a person's instance id kept by the segmenter)."""

    def __init__(self, window: int, feature_size: int, config: StreamingConfig = StreamingConfig()) -> None:
        if window < 1 or feature_size < 1:
            raise InputError(f"window and feature size must be >= 1, got {window} and {feature_size}")
        self.window = window
        self.feature_size = feature_size
        self.config = config
        self._rings: dict[int, FeatureRing] = {}
        self._last_seen: dict[int, float] = {}
        self._last_stamp: float | None = None

    def __len__(self) -> int:
        return len(self._rings)

    def push(self, track_ids, features: np.ndarray, stamp: float) -> Windows:
        """Append one frame: track_ids (B,) ints, features (B, D), stamp in seconds -> the B windows ending now."""
        track_ids = [int(track) for track in np.asarray(track_ids).reshape(-1)]
        features = np.asarray(features, np.float32)
        if features.shape != (len(track_ids), self.feature_size):
            raise InputError(f"features must be ({len(track_ids)}, {self.feature_size}) for {len(track_ids)} "
                             f"tracks, got {features.shape}")
        if len(set(track_ids)) != len(track_ids):
            raise InputError(f"track ids must be unique within a frame, got {track_ids}")
        stamp = float(stamp)
        if not np.isfinite(stamp):
            raise InputError(f"stamp must be a finite time in seconds, got {stamp}")
        if self._last_stamp is not None and stamp <= self._last_stamp:
            self.clear()  # time ran backwards or stood still: nothing buffered belongs before this frame
        self._last_stamp = stamp
        for track in [track for track, seen in self._last_seen.items() if stamp - seen > self.config.max_gap_s]:
            del self._rings[track], self._last_seen[track]  # lost: it starts over if it comes back

        windows = np.empty((len(track_ids), self.window, self.feature_size), np.float32)
        frames = np.empty(len(track_ids), np.int64)
        reset = np.zeros(len(track_ids), bool)
        for row, (track, feature) in enumerate(zip(track_ids, features)):
            ring = self._rings.get(track)
            if ring is None:
                ring = self._rings[track] = FeatureRing(self.window, self.feature_size)
                reset[row] = True
            ring.append(feature)
            self._last_seen[track] = stamp
            windows[row] = ring.ordered()
            frames[row] = min(ring.count, self.window)
        return Windows(windows, frames, reset)

    def clear(self) -> None:
        """Forget every track (a new stream)."""
        self._rings.clear()
        self._last_seen.clear()
        self._last_stamp = None

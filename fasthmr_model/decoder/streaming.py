"""Causal streaming: per-track ring buffers of the last W frame features, and the windows the decoder reads.

Each new frame appends its feature to its track's buffer in O(1) (fixed memory: W x D floats per track)
and yields the window that ends at it, oldest frame first. A track with fewer than W frames so far is in
warm-up: its window is padded at the old end with copies of its first frame (the decoder is trained on
such windows) and flagged. When a track's window starts over is not decided here: the stream
(fasthmr_model.stream) ends a track's window when its tracker ends the track (a gap over
`tracking.max_gap`, time jumping back), so one setting governs both.

Run-time module: numpy only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fasthmr_model.errors import InputError


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
    """Ring buffers for every live track of a stream, keyed by track id."""

    def __init__(self, window: int, feature_size: int) -> None:
        if window < 1 or feature_size < 1:
            raise InputError(f"window and feature size must be >= 1, got {window} and {feature_size}")
        self.window = window
        self.feature_size = feature_size
        self._rings: dict[int, FeatureRing] = {}

    def __len__(self) -> int:
        return len(self._rings)

    def push(self, track_ids, features: np.ndarray) -> Windows:
        """Append one frame: track_ids (B,) ints, features (B, D) -> the B windows ending now. A track seen for
        the first time (or again after `end`) starts a new window."""
        track_ids = [int(track) for track in np.asarray(track_ids).reshape(-1)]
        features = np.asarray(features, np.float32)
        if features.shape != (len(track_ids), self.feature_size):
            raise InputError(f"features must be ({len(track_ids)}, {self.feature_size}) for {len(track_ids)} "
                             f"tracks, got {features.shape}")
        if len(set(track_ids)) != len(track_ids):
            raise InputError(f"track ids must be unique within a frame, got {track_ids}")
        windows = np.empty((len(track_ids), self.window, self.feature_size), np.float32)
        frames = np.empty(len(track_ids), np.int64)
        reset = np.zeros(len(track_ids), bool)
        for row, (track, feature) in enumerate(zip(track_ids, features)):
            ring = self._rings.get(track)
            if ring is None:
                ring = self._rings[track] = FeatureRing(self.window, self.feature_size)
                reset[row] = True
            ring.append(feature)
            windows[row] = ring.ordered()
            frames[row] = min(ring.count, self.window)
        return Windows(windows, frames, reset)

    def end(self, track_ids) -> None:
        """Forget the windows of tracks that ended (unknown ids are ignored): memory stays bounded."""
        for track in np.asarray(track_ids, np.int64).reshape(-1).tolist():
            self._rings.pop(track, None)

    def clear(self) -> None:
        """Forget every track (a new stream)."""
        self._rings.clear()

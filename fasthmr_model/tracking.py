"""Track ids for the persons of successive frames: greedy association of image boxes by overlap.

A person keeps its id while its mask box overlaps its box of the previous frame (intersection over union
at least `min_iou`, best pairs first); an unmatched box starts a new id; a track unseen for longer than
`max_gap` seconds ends. Time going backwards (a bag looping, a simulator reset) ends every track, as
tf2 and RViz clear their buffers. Instance ids of the segmentation are not used as track ids: many
segmenters number the persons of each frame afresh. The temporal decoder keys its per-track feature
windows on these ids and resets a window when its track ends. Run-time module: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fasthmr_model.errors import FastHMRError


@dataclass(frozen=True)
class TrackerConfig:
    """Args:
        min_iou: smallest box overlap (intersection over union) that continues a track, in (0, 1].
        max_gap: seconds a track may go unseen before it ends.
    """

    min_iou: float = 0.3
    max_gap: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.min_iou <= 1.0:
            raise FastHMRError(f"min_iou must be in (0, 1], got {self.min_iou}")
        if not 0.0 <= self.max_gap <= 60.0:
            raise FastHMRError(f"max_gap must be in [0, 60] s, got {self.max_gap}")


class TrackUpdate(NamedTuple):
    """track_ids (B,) int64 for the frame's boxes; ended: ids of the tracks that ended at this frame;
    time_jumped_back: the frame's stamp was older than the previous frame's (every track ended)."""

    track_ids: np.ndarray
    ended: list[int]
    time_jumped_back: bool


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes (x0, y0, x1, y1): first (N, 4), second (M, 4) -> (N, M)."""
    top_left = np.maximum(first[:, None, :2], second[None, :, :2])
    bottom_right = np.minimum(first[:, None, 2:], second[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=2)
    area_first = np.prod(first[:, 2:] - first[:, :2], axis=1)
    area_second = np.prod(second[:, 2:] - second[:, :2], axis=1)
    union = area_first[:, None] + area_second[None, :] - intersection
    return intersection / np.maximum(union, 1e-12)


class Tracker:
    """Assigns track ids frame by frame; ids are never reused within one Tracker."""

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self._next_id = 1
        self._ids = np.zeros(0, np.int64)  # the live tracks
        self._boxes = np.zeros((0, 4))  # their last boxes
        self._last_seen = np.zeros(0)  # their last stamps
        self._last_stamp: float | None = None

    def reset(self) -> list[int]:
        """Ends every track; returns their ids."""
        ended = self._ids.tolist()
        self._ids, self._boxes, self._last_seen = np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0)
        self._last_stamp = None
        return ended

    def update(self, stamp: float, boxes: np.ndarray) -> TrackUpdate:
        """boxes (B, 4) of the frame at `stamp` (seconds) -> their track ids and the tracks that ended."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        time_jumped_back = self._last_stamp is not None and stamp < self._last_stamp
        ended = self.reset() if time_jumped_back else []
        self._last_stamp = stamp

        track_ids = np.zeros(len(boxes), np.int64)
        matched_tracks = np.zeros(len(self._ids), bool)
        if len(boxes) and len(self._ids):
            overlap = box_iou(boxes, self._boxes)
            # Best pairs first: each step takes the largest remaining overlap and retires its row and column.
            for flat in np.argsort(-overlap, axis=None, kind="stable"):
                box, track = divmod(int(flat), len(self._ids))
                if overlap[box, track] < self.config.min_iou:
                    break
                if track_ids[box] or matched_tracks[track]:
                    continue
                track_ids[box] = self._ids[track]
                matched_tracks[track] = True
        new = track_ids == 0
        track_ids[new] = np.arange(self._next_id, self._next_id + int(new.sum()))
        self._next_id += int(new.sum())

        # Unmatched tracks live on (with their old box) until they have been unseen for max_gap.
        stale = ~matched_tracks & (stamp - self._last_seen > self.config.max_gap)
        ended += self._ids[stale].tolist()
        keep = ~matched_tracks & ~stale
        self._ids = np.concatenate([self._ids[keep], track_ids])
        self._boxes = np.concatenate([self._boxes[keep], boxes])
        self._last_seen = np.concatenate([self._last_seen[keep], np.full(len(boxes), stamp)])
        return TrackUpdate(track_ids, ended, time_jumped_back)

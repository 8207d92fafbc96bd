"""Track ids for the persons of successive frames: greedy association of image boxes by overlap.

A person keeps its id while its mask box overlaps its box of the previous frame (intersection over union
at least `min_iou`, best pairs first); an unmatched box starts a new id; a track unseen for longer than
`max_gap` seconds ends (before the frame's boxes are matched, so a person found again after a longer gap
gets a new id). Time going backwards (a bag looping, a simulator reset) ends every track, as tf2 and RViz
clear their buffers. Instance ids of the segmentation are not used as track ids: many segmenters number
the persons of each frame afresh. The stream (fasthmr_model.stream) keys the decoder's per-track feature
windows on these ids and drops a window when its track ends. `match_boxes` is the one box matcher of the
project: the tracker's and the replay's prediction-to-truth matching. Run-time module: numpy only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from fasthmr_model.stream import StreamConfig


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


def match_boxes(first: np.ndarray, second: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of boxes first (N, 4) and second (M, 4) by overlap: the pair with the largest
    intersection over union first, then the largest among the rows and columns left, down to `min_iou`.
    Returns [(row in first, row in second)] in that order."""
    first, second = np.asarray(first, np.float64).reshape(-1, 4), np.asarray(second, np.float64).reshape(-1, 4)
    if not len(first) or not len(second):
        return []
    overlap = box_iou(first, second)
    used_first, used_second = np.zeros(len(first), bool), np.zeros(len(second), bool)
    pairs = []
    for flat in np.argsort(-overlap, axis=None, kind="stable"):
        row, column = divmod(int(flat), len(second))
        if overlap[row, column] < min_iou:
            break
        if used_first[row] or used_second[column]:
            continue
        used_first[row] = used_second[column] = True
        pairs.append((row, column))
    return pairs


class Tracker:
    """Assigns track ids frame by frame; ids are never reused within one Tracker."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config  # min_iou and max_gap are read at every update
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

        # Tracks unseen for longer than max_gap end before matching: a person found after a longer gap starts over.
        stale = stamp - self._last_seen > self.config.max_gap
        ended += self._ids[stale].tolist()
        self._ids, self._boxes, self._last_seen = self._ids[~stale], self._boxes[~stale], self._last_seen[~stale]

        track_ids = np.zeros(len(boxes), np.int64)
        matched_tracks = np.zeros(len(self._ids), bool)
        for box, track in match_boxes(boxes, self._boxes, self.config.min_iou):
            track_ids[box] = self._ids[track]
            matched_tracks[track] = True
        new = track_ids == 0
        track_ids[new] = np.arange(self._next_id, self._next_id + int(new.sum()))
        self._next_id += int(new.sum())

        # Unmatched tracks live on (with their old box) until they have been unseen for max_gap.
        keep = ~matched_tracks
        self._ids = np.concatenate([self._ids[keep], track_ids])
        self._boxes = np.concatenate([self._boxes[keep], boxes])
        self._last_seen = np.concatenate([self._last_seen[keep], np.full(len(boxes), stamp)])
        return TrackUpdate(track_ids, ended, time_jumped_back)

"""Track ids: greedy box association (the project's one box matcher), the gap limit, and time going backwards."""

from __future__ import annotations

import numpy as np
import pytest

from fasthmr_model.errors import FastHMRError
from fasthmr_model.stream import StreamConfig
from fasthmr_model.tracking import Tracker, box_iou, match_boxes

LEFT, RIGHT = np.array([0.0, 0.0, 10.0, 20.0]), np.array([30.0, 0.0, 40.0, 20.0])


def test_iou_of_known_boxes():
    overlap = box_iou(np.array([LEFT]), np.array([LEFT, LEFT + [5, 0, 5, 0], RIGHT]))
    np.testing.assert_allclose(overlap, [[1.0, 1 / 3, 0.0]])


def test_people_keep_their_ids_while_they_move_and_new_people_get_new_ids():
    tracker = Tracker(StreamConfig(min_iou=0.3, max_gap=0.5))
    first = tracker.update(0.0, np.array([LEFT, RIGHT]))
    assert first.track_ids.tolist() == [1, 2] and first.ended == []
    # Listed in the other order and moved a little: ids follow the boxes, not the order.
    moved = tracker.update(0.1, np.array([RIGHT + 1, LEFT + 1]))
    assert moved.track_ids.tolist() == [2, 1]
    newcomer = tracker.update(0.2, np.array([LEFT + 1, RIGHT + 1, LEFT + [100, 0, 100, 0]]))
    assert newcomer.track_ids.tolist() == [1, 2, 3]


def test_best_overlap_wins_when_two_boxes_want_one_track():
    tracker = Tracker(StreamConfig())
    tracker.update(0.0, np.array([LEFT]))
    update = tracker.update(0.1, np.array([LEFT + [4, 0, 4, 0], LEFT + [1, 0, 1, 0]]))
    assert update.track_ids.tolist() == [2, 1]


def test_unseen_tracks_survive_short_gaps_and_end_after_max_gap():
    tracker = Tracker(StreamConfig(max_gap=0.5))
    tracker.update(0.0, np.array([LEFT, RIGHT]))
    assert tracker.update(0.3, np.array([LEFT])).ended == []
    assert tracker.update(0.4, np.array([LEFT, RIGHT])).track_ids.tolist() == [1, 2]  # back within the gap
    assert tracker.update(0.7, np.array([LEFT])).ended == []
    assert tracker.update(0.95, np.array([LEFT])).ended == [2]  # unseen for 0.55 s
    assert tracker.update(1.1, np.array([LEFT, RIGHT])).track_ids.tolist() == [1, 3]


def test_time_going_backwards_ends_every_track():
    tracker = Tracker(StreamConfig())
    tracker.update(5.0, np.array([LEFT, RIGHT]))
    update = tracker.update(1.0, np.array([LEFT]))
    assert update.time_jumped_back and sorted(update.ended) == [1, 2]
    assert update.track_ids.tolist() == [3]


def test_empty_frames():
    tracker = Tracker(StreamConfig())
    assert tracker.update(0.0, np.zeros((0, 4))).track_ids.shape == (0,)
    tracker.update(0.1, np.array([LEFT]))
    assert tracker.update(0.2, np.zeros((0, 4))).track_ids.shape == (0,)


@pytest.mark.parametrize("field, value", [("min_iou", 0.0), ("min_iou", 1.5), ("max_gap", -1.0)])
def test_bad_tracker_settings_are_refused(field, value):
    with pytest.raises(FastHMRError, match=field):
        StreamConfig(**{field: value})


def test_match_boxes_takes_the_best_pairs_first_one_to_one_and_stops_at_the_threshold():
    shifted = LEFT + [4, 0, 4, 0]  # IoU with LEFT: 6/14
    pairs = match_boxes(np.array([shifted, LEFT, RIGHT]), np.array([LEFT, RIGHT + [9, 0, 9, 0]]), min_iou=0.3)
    assert pairs == [(1, 0)]  # LEFT takes LEFT; shifted finds nothing left; RIGHT overlaps its box by 1/19 only
    assert match_boxes(np.array([shifted]), np.array([LEFT]), min_iou=0.3) == [(0, 0)]
    assert match_boxes(np.array([shifted]), np.array([LEFT]), min_iou=0.5) == []
    assert match_boxes(np.zeros((0, 4)), np.array([LEFT]), 0.3) == []


def test_a_track_unseen_for_longer_than_max_gap_ends_even_when_no_frame_came_between():
    """A camera that stops and starts again: the person comes back in the same place after a longer gap and
    starts over, as the decoder's window does."""
    tracker = Tracker(StreamConfig(max_gap=0.5))
    tracker.update(0.0, np.array([LEFT]))
    update = tracker.update(0.8, np.array([LEFT]))
    assert update.ended == [1] and update.track_ids.tolist() == [2]

"""Velocity per track (fasthmr_model.velocity and the stream's StreamResult.velocity): exact on a straight line,
unmoved by one outlying frame, zero and flagged for a new track, forgotten when a track ends, and within
0.2 m/s of the truth for a walking person in a rendered clip after half a second."""

from __future__ import annotations

import numpy as np

from fasthmr_model.velocity import MIN_SAMPLES, TrackVelocities

FPS = 30.0
WALK = np.array([0.8, -0.05, -0.6])  # m/s


def test_a_straight_walk_gives_its_velocity_and_one_outlying_frame_does_not_move_it():
    velocities = TrackVelocities()
    track = np.array([7])
    for frame in range(40):
        stamp = 10.0 + frame / FPS
        position = np.array([0.0, 0.2, 3.0]) + WALK * (stamp - 10.0)
        if frame in (20, 31):  # a bad crop: the pelvis a metre off
            position = position + np.array([1.0, -0.5, 1.5])
        result = velocities.update(stamp, track, position[None], window=1.0)
        if frame >= MIN_SAMPLES:
            np.testing.assert_allclose(result.velocity[0], WALK, atol=1e-9)
            assert result.valid.tolist() == [True]


def test_a_new_track_has_a_zero_velocity_flagged_not_valid_until_it_has_enough_frames():
    velocities = TrackVelocities()
    for frame in range(MIN_SAMPLES):
        result = velocities.update(frame / FPS, np.array([1]), np.array([[frame * 0.1, 0.0, 3.0]]), window=1.0)
        assert result.valid.tolist() == [frame == MIN_SAMPLES - 1]
        if frame < MIN_SAMPLES - 1:
            assert result.velocity.tolist() == [[0.0, 0.0, 0.0]]
    # A second person appears: no velocity for them yet, the first keeps theirs.
    result = velocities.update(MIN_SAMPLES / FPS, np.array([1, 2]), np.array([[0.5, 0.0, 3.0], [1.0, 0.0, 4.0]]),
                               window=1.0)
    assert result.valid.tolist() == [True, False] and result.velocity[1].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(result.velocity[0], [3.0, 0.0, 0.0], atol=1e-9)


def test_an_ended_track_starts_over_and_old_samples_leave_the_window():
    velocities = TrackVelocities()
    for frame in range(10):
        velocities.update(frame / FPS, np.array([1]), np.array([[frame / FPS, 0.0, 3.0]]), window=1.0)
    velocities.end([1])
    assert not velocities.update(10 / FPS, np.array([1]), np.array([[5.0, 0.0, 3.0]]), window=1.0).valid[0]
    # Standing still for longer than the window after moving: the old samples no longer count.
    velocities = TrackVelocities()
    for frame in range(90):
        x = min(frame, 30) / FPS
        result = velocities.update(frame / FPS, np.array([1]), np.array([[x, 0.0, 3.0]]), window=1.0)
    np.testing.assert_allclose(result.velocity[0], 0.0, atol=1e-9)


def test_a_walking_person_in_a_rendered_clip_gets_the_true_velocity_within_0_2_m_s_after_half_a_second():
    """The shipped bundle on a rendered clip of one person walking (seed 5: fully in view, 2.7 m away, about 0.75
    m/s, from the clip's second second on, when the walk has its speed). The truth is the true pelvis joint's
    displacement over the fit's window divided by its duration: the walking velocity, without the sway within
    each step that no window-long fit follows."""
    from fasthmr_model.data.clips import render_clip
    from fasthmr_model.data.motion import synthetic_body_model
    from fasthmr_model.stream import StreamPipeline

    body = synthetic_body_model()
    start, frames = 30, 36
    rendered = render_clip(5, 1, start + frames, body, 320, 240, FPS, motion_names=("walk",))[start:]
    truth = np.array([body.forward(person.betas[None], person.rotmats[None], person.translation[None],
                                   with_vertices=False)[1][0, 0] for person in (frame.people[0] for frame in rendered)])
    stream = StreamPipeline()
    window = stream.stream_config.velocity_window
    errors = []
    for index, frame in enumerate(rendered):
        result = stream.process(frame.image, frame.instance_mask, frame.camera.intrinsics, index / FPS)
        assert result.track_ids.tolist() == [1]
        if index >= FPS / 2:
            assert result.velocity_valid.tolist() == [True]
            first = max(0, index - int(round(window * FPS)))
            true_velocity = (truth[index] - truth[first]) / ((index - first) / FPS)
            errors.append(np.linalg.norm(result.velocity[0] - true_velocity))
    assert np.linalg.norm(truth[-1] - truth[0]) / ((frames - 1) / FPS) > 0.5  # it is a walk
    assert max(errors) < 0.2, np.round(errors, 3)

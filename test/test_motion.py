"""The synthetic motion generator: determinism, joint limits, smoothness, gaits that move the body at
plausible speeds with planted feet, in-place motions that stay put, every motion and parameter."""

import numpy as np
import pytest

from fasthmr_model.body.rotations import matrix_to_axis_angle
from fasthmr_model.body.skeleton import JOINT_INDEX, NUM_JOINTS
from fasthmr_model.data import motion
from fasthmr_model.errors import InputError

FPS = 30.0


@pytest.fixture(scope="module")
def body():
    return motion.synthetic_body_model()


@pytest.fixture(scope="module")
def long_sequences():
    """A few minutes of every motion and transition, from several seeds."""
    return [motion.generate_sequence(seed, 1800, fps=FPS) for seed in range(4)]


def _pelvis(body, sequence):
    """(T, 3) world pelvis positions of a sequence."""
    betas = np.broadcast_to(sequence.betas, (sequence.num_frames, 10))
    _, joints = body.forward(betas, sequence.rotmats, sequence.translation, with_vertices=False)
    return joints[:, JOINT_INDEX["pelvis"]]


def _contacts(body, sequence):
    """(T, 4, 3) world heels and balls of the feet."""
    return motion.contact_points(body, sequence.betas, sequence.rotmats, sequence.translation)


def _angular_velocity(sequence):
    """(T - 1, 24, 3) rad/s: each joint's local rotation from one frame to the next, per second."""
    rotmats = sequence.rotmats
    return matrix_to_axis_angle(np.swapaxes(rotmats[:-1], -1, -2) @ rotmats[1:]) * sequence.fps


def _grounded_contact_speeds(body, sequence):
    """Horizontal speeds (m/s) of contact points that are on the ground (< 5 mm) in two frames running."""
    points = _contacts(body, sequence)
    grounded = (points[:-1, :, 1] < 0.005) & (points[1:, :, 1] < 0.005)
    speeds = np.linalg.norm(np.diff(points[:, :, [0, 2]], axis=0), axis=-1) * sequence.fps
    return speeds[grounded]


# --- determinism --------------------------------------------------------------------------------


def test_same_seed_gives_identical_arrays_and_other_seeds_differ():
    first = motion.generate_sequence(11, 400)
    second = motion.generate_sequence(11, 400)
    other = motion.generate_sequence(12, 400)
    for name in ("rotmats", "translation", "betas", "labels"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert first.fps == second.fps == 30.0
    assert not np.allclose(first.rotmats, other.rotmats)
    assert not np.allclose(first.betas, other.betas)


def test_sequence_has_the_documented_shapes(long_sequences):
    sequence = long_sequences[0]
    assert sequence.num_frames == 1800
    assert sequence.rotmats.shape == (1800, NUM_JOINTS, 3, 3)
    assert sequence.translation.shape == (1800, 3)
    assert sequence.betas.shape == (10,)
    assert sequence.labels.shape == (1800,)
    assert sequence.axis_angle().shape == (1800, NUM_JOINTS, 3)
    assert sequence.gender == "neutral"
    # Proper rotations everywhere.
    np.testing.assert_allclose(sequence.rotmats @ np.swapaxes(sequence.rotmats, -1, -2), np.broadcast_to(np.eye(3), sequence.rotmats.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(sequence.rotmats), 1.0, atol=1e-9)


def test_random_betas_are_plausible_shapes():
    betas = np.stack([motion.random_betas(np.random.default_rng(seed)) for seed in range(200)])
    assert betas.shape == (200, 10)
    assert np.abs(betas).max() <= motion.BETA_LIMIT
    assert 0.7 < betas.std() < 1.1


# --- joint limits and angle conventions -----------------------------------------------------------


def test_joint_angle_conversion_round_trips_inside_the_limits():
    rng = np.random.default_rng(3)
    low, high = motion.JOINT_LIMITS[..., 0], motion.JOINT_LIMITS[..., 1]
    angles = low + rng.uniform(size=(50, NUM_JOINTS, 3)) * (high - low)
    recovered = motion.matrix_to_joint_angles(motion.joint_angles_to_matrix(angles))
    np.testing.assert_allclose(recovered, angles, atol=1e-9)


def test_joint_angle_axes_mean_what_the_docstring_says():
    # Left hip flexion (negative x) swings the thigh, pointing down, forward (+z).
    flexed = motion.joint_angles_to_matrix(np.radians([-30.0, 0.0, 0.0])) @ [0.0, -1.0, 0.0]
    assert flexed[2] > 0.4
    # Lowering the left arm (negative z at the shoulder) turns it from +x toward -y.
    lowered = motion.joint_angles_to_matrix(np.radians([0.0, 0.0, -76.0])) @ [1.0, 0.0, 0.0]
    assert lowered[1] < -0.9


def test_apply_joint_limits_keeps_angles_inside_and_leaves_the_middle_alone():
    low, high = motion.JOINT_LIMITS[..., 0], motion.JOINT_LIMITS[..., 1]
    wild = np.linspace(-4.0, 4.0, 101)[:, None, None] * np.ones((1, NUM_JOINTS, 3))
    limited = motion.apply_joint_limits(wild)
    assert np.all(limited >= low) and np.all(limited <= high)
    middle = 0.5 * (low + high)[None]
    np.testing.assert_array_equal(motion.apply_joint_limits(middle), middle)
    # Monotonic: easing never reverses the order of angles.
    assert np.all(np.diff(limited, axis=0) >= 0.0)


def test_joint_limits_hold_on_every_frame(long_sequences):
    low, high = motion.JOINT_LIMITS[1:, :, 0], motion.JOINT_LIMITS[1:, :, 1]
    for sequence in long_sequences:
        # The root carries the heading as well, so only the other joints are read back as angles.
        angles = motion.matrix_to_joint_angles(sequence.rotmats[:, 1:])
        assert np.all(angles >= low - 1e-9) and np.all(angles <= high + 1e-9)


@pytest.mark.parametrize("name", motion.MOTION_NAMES)
def test_every_clip_is_inside_the_joint_limits_including_the_pelvis_tilt(name):
    sequence_rng = np.random.default_rng(5)
    clip = motion.random_clip(name, sequence_rng, FPS, motion.random_style(sequence_rng), motion.rest_skeleton())
    assert np.all(clip.angles >= motion.JOINT_LIMITS[..., 0]) and np.all(clip.angles <= motion.JOINT_LIMITS[..., 1])


# --- smoothness -----------------------------------------------------------------------------------


def test_joints_and_root_move_smoothly_with_no_jumps_at_transitions(long_sequences, body):
    for sequence in long_sequences:
        velocity = _angular_velocity(sequence)
        speed = np.linalg.norm(velocity, axis=-1)
        acceleration = np.linalg.norm(np.diff(velocity, axis=0), axis=-1) * sequence.fps
        # A cut between two poses would turn a joint by tenths of a radian within one frame.
        assert speed.max() < 16.0
        assert acceleration.max() < 800.0
        in_transition = sequence.labels[1:-1] == motion.TRANSITION_LABEL
        assert in_transition.any()
        assert acceleration[in_transition].max() < 400.0

        pelvis = _pelvis(body, sequence)
        pelvis_speed = np.linalg.norm(np.diff(pelvis, axis=0), axis=-1) * sequence.fps
        pelvis_acceleration = np.linalg.norm(np.diff(pelvis, 2, axis=0), axis=-1) * sequence.fps**2
        assert pelvis_speed.max() < 4.5
        assert pelvis_acceleration.max() < 30.0


def test_feet_stay_on_the_ground_and_do_not_slide(long_sequences, body):
    for sequence in long_sequences:
        lowest = _contacts(body, sequence)[:, :, 1].min(axis=1)
        # Always a foot near the ground (a run's flight is a few centimetres at most).
        assert np.all(lowest > -0.01) and np.all(lowest < 0.03)
        standing = ~np.isin(sequence.labels, ["run", motion.TRANSITION_LABEL])
        assert np.abs(lowest[standing]).max() < 0.01
        assert _grounded_contact_speeds(body, sequence).mean() < 0.1


# --- gaits ----------------------------------------------------------------------------------------


def _steady_speed(body, clip, gait, speed=1.0):
    """Horizontal pelvis speed (m/s) over the part of a gait clip at full step length."""
    sequence = motion.place_clip(clip, np.zeros(10))
    ramp = motion.GAIT_STILL_SECONDS + motion.GAIT_RAMP_STEPS / (gait.cadence * speed)
    first, last = int(ramp * clip.fps), clip.num_frames - int(ramp * clip.fps)
    assert last - first > clip.fps  # at least a second at full speed
    pelvis = _pelvis(body, sequence)
    return np.linalg.norm(pelvis[last, [0, 2]] - pelvis[first, [0, 2]]) / ((last - first) / clip.fps)


def test_walking_moves_forward_at_a_walking_speed_and_running_faster(body):
    walking = _steady_speed(body, motion.walk(FPS, steps=12), motion.WALK_GAIT)
    running = _steady_speed(body, motion.run(FPS, steps=16), motion.RUN_GAIT)
    assert 0.5 < walking < 2.0
    assert running > 1.8 and running > 1.5 * walking
    # The speed is the planned cadence times step length.
    np.testing.assert_allclose(walking, motion.WALK_GAIT.cadence * motion.WALK_GAIT.step_length, rtol=0.1)
    slow = _steady_speed(body, motion.walk(FPS, steps=12, speed=0.8, amplitude=0.8), motion.WALK_GAIT, speed=0.8)
    fast = _steady_speed(body, motion.walk(FPS, steps=12, speed=1.25, amplitude=1.2), motion.WALK_GAIT, speed=1.25)
    assert 0.5 < slow < walking < fast < 2.0


def test_walking_faces_and_moves_along_its_heading(body):
    heading = 0.7
    sequence = motion.place_clip(motion.walk(FPS, steps=10), np.zeros(10), heading=heading)
    pelvis = _pelvis(body, sequence)
    direction = pelvis[-1, [0, 2]] - pelvis[0, [0, 2]]
    np.testing.assert_allclose(direction / np.linalg.norm(direction), [np.sin(heading), np.cos(heading)], atol=0.05)


def test_a_walking_turn_changes_the_heading_and_curves_the_path(body):
    clip = motion.walk(FPS, steps=12, turn_angle=np.pi / 2)
    assert set(clip.labels) == {"walk_turn"}
    np.testing.assert_allclose(np.sum(clip.yaw_rate) / FPS, np.pi / 2, rtol=0.02)
    pelvis = _pelvis(body, motion.place_clip(clip, np.zeros(10)))
    heading = np.concatenate([[0.0], np.cumsum(clip.yaw_rate[:-1])]) / FPS
    # Wherever it walks, it walks where it faces (a quarter turn to the left, from +z to +x).
    for fraction in (0.3, 0.5, 0.7):
        frame = int(fraction * clip.num_frames)
        step = pelvis[frame + 15, [0, 2]] - pelvis[frame - 15, [0, 2]]
        moving = np.arctan2(step[0], step[1])
        assert abs(moving - heading[frame]) < 0.2


def test_walking_feet_are_planted_while_they_carry_the_body(body):
    for clip in (motion.walk(FPS, steps=10), motion.run(FPS, steps=12)):
        speeds = _grounded_contact_speeds(body, motion.place_clip(clip, np.zeros(10)))
        assert speeds.mean() < 0.1


def test_running_has_a_flight_phase_and_walking_does_not():
    assert motion.run(FPS).lift.max() > 0.003
    assert motion.walk(FPS).lift.max() < 0.002
    support = motion.run(FPS).support
    assert np.any(support.sum(axis=1) == 0.0)  # both feet in the air


# --- motions in place and the library --------------------------------------------------------------

IN_PLACE = {
    "idle": lambda speed: motion.idle(FPS, np.random.default_rng(0), seconds=3.0 / speed),
    "turn": lambda speed: motion.turn(FPS, angle=np.pi, speed=speed),
    "wave": lambda speed: motion.wave(FPS, speed=speed),
    "reach": lambda speed: motion.reach(FPS, height=-0.5, speed=speed),
    "squat": lambda speed: motion.squat(FPS, speed=speed),
    "sit": lambda speed: motion.sit(FPS, seated_seconds=2.0 / speed, speed=speed),
    "bend": lambda speed: motion.bend(FPS, speed=speed),
}


@pytest.mark.parametrize("name", sorted(IN_PLACE))
def test_in_place_motions_keep_the_root_near_its_start_and_the_feet_on_the_ground(name, body):
    sequence = motion.place_clip(IN_PLACE[name](1.0), np.zeros(10))
    pelvis = _pelvis(body, sequence)
    drift = np.linalg.norm(pelvis[:, [0, 2]] - pelvis[0, [0, 2]], axis=1)
    # Sitting moves the hips back over the (imagined) seat and returns; idling shifts them sideways.
    assert drift.max() < 0.45
    contacts = _contacts(body, sequence)
    if name == "turn":
        # A half turn pivots about the feet, a few centimetres ahead of the pelvis.
        assert drift[-1] < 0.15
    else:
        # The feet stay where they stood.
        ground_positions = contacts[:, :, [0, 2]]
        assert np.linalg.norm(ground_positions - ground_positions[:1], axis=-1).max() < 0.05
    lowest = contacts[:, :, 1].min(axis=1)
    assert np.abs(lowest).max() < 0.01


def test_in_place_motions_lower_and_raise_the_body_as_expected(body):
    standing = _pelvis(body, motion.place_clip(motion.idle(FPS, np.random.default_rng(0)), np.zeros(10)))[:, 1].mean()
    squat = _pelvis(body, motion.place_clip(motion.squat(FPS, depth=1.0), np.zeros(10)))[:, 1]
    seated = motion.place_clip(motion.sit(FPS, seated_seconds=1.0), np.zeros(10))
    assert squat.min() < standing - 0.35
    assert abs(squat[0] - standing) < 0.03 and abs(squat[-1] - standing) < 0.03
    seat_height = _pelvis(body, seated)[seated.labels == "seated", 1]
    assert 0.45 < seat_height.mean() < 0.7
    assert [label for label in dict.fromkeys(seated.labels)] == list(motion.SIT_PHASE_LABELS)


def test_a_raised_hand_is_above_the_head_when_waving(body):
    sequence = motion.place_clip(motion.wave(FPS, side="right", waves=4), np.zeros(10))
    _, joints = body.forward(np.zeros((sequence.num_frames, 10)), sequence.rotmats, sequence.translation, with_vertices=False)
    middle = sequence.num_frames // 2
    assert joints[middle, JOINT_INDEX["right_wrist"], 1] > joints[middle, JOINT_INDEX["head"], 1]
    assert joints[middle, JOINT_INDEX["left_wrist"], 1] < joints[middle, JOINT_INDEX["pelvis"], 1] + 0.1


@pytest.mark.parametrize("name", sorted(IN_PLACE))
def test_speed_parameter_changes_duration(name):
    normal, fast = IN_PLACE[name](1.0).num_frames, IN_PLACE[name](2.0).num_frames
    assert abs(fast - normal / 2.0) <= 2


def test_gait_speed_parameter_changes_duration():
    normal, fast = motion.walk(FPS, steps=8), motion.walk(FPS, steps=8, speed=2.0)
    still = int(round(2.0 * motion.GAIT_STILL_SECONDS * FPS))
    assert abs((fast.num_frames - still) - (normal.num_frames - still) / 2.0) <= 2


def test_clips_keep_their_timing_in_seconds_at_any_frame_rate():
    assert abs(motion.squat(60.0).num_frames - 2 * motion.squat(30.0).num_frames) <= 2
    assert abs(motion.walk(60.0).num_frames - 2 * motion.walk(30.0).num_frames) <= 2


@pytest.mark.parametrize("name", motion.MOTION_NAMES)
def test_every_named_motion_can_be_generated(name):
    sequence = motion.generate_sequence(21, 240, motions=[name])
    expected = set(motion.SIT_PHASE_LABELS) if name == "sit" else {name}
    assert set(sequence.labels) - {motion.TRANSITION_LABEL} <= expected
    assert set(sequence.labels) & expected
    assert np.all(np.isfinite(sequence.rotmats)) and np.all(np.isfinite(sequence.translation))


def test_mirrored_sides_are_mirror_images():
    left, right = motion.wave(FPS, side="left"), motion.wave(FPS, side="right")
    np.testing.assert_allclose(left.angles[:, JOINT_INDEX["left_elbow"]], right.angles[:, JOINT_INDEX["right_elbow"]] * [1, -1, -1])


def test_transitions_blend_clips_and_label_the_blend():
    first, second = motion.squat(FPS), motion.wave(FPS)
    joined = motion.join_clips([first, second], blend_seconds=0.5)
    overlap = int(round(0.5 * FPS))
    assert joined.num_frames == first.num_frames + second.num_frames - overlap
    assert np.sum(joined.labels == motion.TRANSITION_LABEL) == overlap
    np.testing.assert_array_equal(joined.angles[: first.num_frames - overlap], first.angles[: first.num_frames - overlap])
    np.testing.assert_array_equal(joined.angles[-10:], second.angles[-10:])


def test_resampling_keeps_the_frames_that_coincide():
    sequence = motion.generate_sequence(4, 121, fps=60.0)
    half = motion.resample_sequence(sequence, 30.0)
    assert half.fps == 30.0 and half.num_frames == 61
    np.testing.assert_allclose(half.rotmats, sequence.rotmats[::2], atol=1e-12)
    np.testing.assert_allclose(half.translation, sequence.translation[::2], atol=1e-12)
    doubled = motion.resample_sequence(sequence, 120.0)
    assert doubled.num_frames == 241
    # Halfway between two frames, each rotation is the midpoint of the two.
    midway = np.swapaxes(doubled.rotmats[1], -1, -2) @ sequence.rotmats[1]
    np.testing.assert_allclose(
        np.linalg.norm(matrix_to_axis_angle(midway), axis=-1),
        0.5 * np.linalg.norm(matrix_to_axis_angle(np.swapaxes(sequence.rotmats[0], -1, -2) @ sequence.rotmats[1]), axis=-1),
        atol=1e-9,
    )


def test_bad_arguments_raise_input_errors():
    with pytest.raises(InputError, match="unknown-dance"):
        motion.generate_sequence(0, 10, motions=["walk", "unknown-dance"])
    with pytest.raises(InputError, match="num_frames"):
        motion.generate_sequence(0, 0)
    with pytest.raises(InputError, match="fps"):
        motion.generate_sequence(0, 10, fps=0.0)
    with pytest.raises(InputError, match="side"):
        motion.wave(FPS, side="middle")
    with pytest.raises(InputError, match="depth"):
        motion.squat(FPS, depth=2.0)
    with pytest.raises(InputError, match="betas"):
        motion.place_clip(motion.squat(FPS), np.zeros(3))

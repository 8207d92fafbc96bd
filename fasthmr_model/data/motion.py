"""Synthetic human motion over the body's 24 joints: a library of parameterised motions (walk, run,
turn, wave, reach, squat, sit, bend, idle sway), joint limits, blended transitions, and placement of
the body on the ground plane. Sequences are reproducible from a seed.

Conventions (the body's: y up, rest pose a T-pose facing +z, left at +x):
- A motion is first made as joint angles (T, 24, 3) in degrees inside this module, radians outside.
  Each joint's local rotation is R = Rx(x) @ Rz(z) @ Ry(y) from its angles (x, y, z) (see
  joint_angles_to_matrix). Angles are always written with the LEFT side's meaning; a right-side joint
  stores (x, -y, -z), its mirror image, so one number means the same movement on both sides.
  What the axes mean per joint (left side, positive direction):
    pelvis: x tilts the trunk forward, y yaws it toward the left, z raises its left side.
    hip: x extends the thigh (moves the knee backward; flexion is negative), y twists, z abducts.
    knee: x flexes. ankle: x plantar-flexes (toes down), y twists, z rolls. foot (toes): x curls them
    down (negative lifts the toes, as at push-off).
    spine1-3, neck, head: x bends forward, y turns toward the left, z bends toward the right.
    collar: z shrugs. shoulder: z raises the arm in the frontal plane (0 = T-pose, about -78 = hanging),
    x swings the lowered arm (negative = forward), y swings the T-posed arm forward (negative).
    elbow: y flexes (negative), x twists the forearm. wrist: z lifts the back of the hand, y deviates.
- The pelvis' angles are its tilt relative to the heading; the heading (a yaw about y, 0 = facing +z)
  comes from each motion's yaw rate and is applied on top: rotmats[:, 0] = Ry(heading) @ R(pelvis).
- Output rotations are matrices: MotionSequence.rotmats (T, 24, 3, 3), what the body model consumes
  (MotionSequence.axis_angle() gives SMPL's axis-angle pose).
- Walking and running plan the feet (a planted stance moving back at the walking speed, heel strike,
  roll and push-off, a smooth swing) and solve hips and knees by two-bone inverse kinematics, the
  pelvis as high as the legs allow. The other motions pose the joints directly.
- Translation is the body model's `transl` (SMPL's convention): the pelvis sits at its rest position
  plus transl. It is computed from the feet, not chosen: the contact points (heels under the ankles,
  balls under the toe joints) are kept on the ground plane y = 0, and the root moves against the
  contact points that carry the body (as a gait plans them, else the lowest ones), so planted feet
  stay put and walking and running move the body by their own stride.
- Everything random comes from one numpy Generator seeded by generate_sequence's seed.
"""

import dataclasses
import functools

import numpy as np

from fasthmr_model.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from fasthmr_model.body.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_BETAS, NUM_JOINTS, PARENTS
from fasthmr_model.errors import InputError

# Motions that generate_sequence can be asked for. "walk_turn" is walk() with a turn along the way.
MOTION_NAMES = ("idle", "walk", "run", "turn", "walk_turn", "wave", "reach", "squat", "sit", "bend")
# Frame labels: the motion names, the three phases of "sit", and the blends between clips.
TRANSITION_LABEL = "transition"
SIT_PHASE_LABELS = ("sit_down", "seated", "stand_up")

# --- joint angles and limits --------------------------------------------------------------------

# Per-joint ranges in degrees, ((x_min, x_max), (y_min, y_max), (z_min, z_max)), for the midline and
# the left side in the meaning above; the right side gets the mirrored ranges. Roughly the ranges of
# motion in clinical tables, narrowed where the synthetic body's tubes would pass through each other.
# Every |z| stays below 90 degrees, where the x-z-y decomposition of a rotation is unique.
JOINT_LIMITS_DEGREES = {
    # Pelvis tilt relative to the heading (a deep forward bend tilts the pelvis a lot).
    "pelvis": ((-20.0, 80.0), (-25.0, 25.0), (-15.0, 15.0)),
    "left_hip": ((-125.0, 30.0), (-35.0, 35.0), (-25.0, 40.0)),
    "left_knee": ((-5.0, 145.0), (-10.0, 10.0), (-5.0, 5.0)),
    "left_ankle": ((-40.0, 50.0), (-20.0, 20.0), (-25.0, 25.0)),
    "left_foot": ((-50.0, 30.0), (-5.0, 5.0), (-5.0, 5.0)),
    "spine1": ((-15.0, 40.0), (-20.0, 20.0), (-15.0, 15.0)),
    "spine2": ((-15.0, 40.0), (-20.0, 20.0), (-15.0, 15.0)),
    "spine3": ((-15.0, 40.0), (-20.0, 20.0), (-15.0, 15.0)),
    "neck": ((-40.0, 45.0), (-50.0, 50.0), (-30.0, 30.0)),
    "head": ((-30.0, 30.0), (-30.0, 30.0), (-20.0, 20.0)),
    "left_collar": ((-15.0, 15.0), (-25.0, 15.0), (-15.0, 25.0)),
    "left_shoulder": ((-170.0, 60.0), (-110.0, 45.0), (-88.0, 85.0)),
    "left_elbow": ((-80.0, 80.0), (-150.0, 5.0), (-5.0, 5.0)),
    "left_wrist": ((-40.0, 40.0), (-30.0, 30.0), (-70.0, 70.0)),
    "left_hand": ((-20.0, 20.0), (-20.0, 20.0), (-20.0, 20.0)),
}
# Limits are soft within this margin of each end (or a tenth of the range if smaller): an angle
# entering the margin is eased toward the limit with continuous velocity instead of being cut,
# which would put a kink (a spike of acceleration) into the motion.
_LIMIT_MARGIN_DEGREES = 3.0


def _mirror_sign(joint_name):
    """(1, -1, -1) for a right-side joint, whose stored y and z are the mirror of the left's."""
    return np.array((1.0, -1.0, -1.0)) if joint_name.startswith("right_") else np.ones(3)


def _joint_limit_table():
    """(24, 3, 2) joint limits in radians: [joint, axis] = (min, max), right side mirrored."""
    table = np.zeros((NUM_JOINTS, 3, 2))
    for joint, name in enumerate(JOINT_NAMES):
        left_name = "left_" + name[len("right_"):] if name.startswith("right_") else name
        ranges = np.radians(np.array(JOINT_LIMITS_DEGREES[left_name]))
        sign = _mirror_sign(name)[:, None]
        # Negating a range swaps its ends.
        table[joint] = np.sort(ranges * sign, axis=1)
    return table


JOINT_LIMITS = _joint_limit_table()


def _rotation_about(axis, angles):
    """(..., 3, 3) rotations by `angles` (...) radians about coordinate axis 0 (x), 1 (y) or 2 (z)."""
    cos, sin = np.cos(angles), np.sin(angles)
    first, second = [(1, 2), (2, 0), (0, 1)][axis]
    matrices = np.zeros(np.shape(angles) + (3, 3))
    matrices[..., axis, axis] = 1.0
    matrices[..., first, first] = cos
    matrices[..., second, second] = cos
    matrices[..., first, second] = -sin
    matrices[..., second, first] = sin
    return matrices


def joint_angles_to_matrix(angles):
    """Joint angles (..., 3) radians (x, y, z) -> rotation matrices (..., 3, 3) = Rx(x) @ Rz(z) @ Ry(y)."""
    angles = np.asarray(angles, dtype=np.float64)
    return _rotation_about(0, angles[..., 0]) @ _rotation_about(2, angles[..., 2]) @ _rotation_about(1, angles[..., 1])


def matrix_to_joint_angles(matrices):
    """Rotation matrices (..., 3, 3) -> joint angles (..., 3) radians (x, y, z), the inverse of
    joint_angles_to_matrix for |z| < pi/2 (x and y in (-pi, pi]).

    With R = Rx(x) Rz(z) Ry(y): R[0, 1] = -sin z, (R[0, 0], R[0, 2]) = cos z (cos y, sin y) and
    (R[1, 1], R[2, 1]) = cos z (cos x, sin x).
    """
    matrices = np.asarray(matrices, dtype=np.float64)
    z = np.arcsin(np.clip(-matrices[..., 0, 1], -1.0, 1.0))
    y = np.arctan2(matrices[..., 0, 2], matrices[..., 0, 0])
    x = np.arctan2(matrices[..., 2, 1], matrices[..., 1, 1])
    return np.stack([x, y, z], axis=-1)


def apply_joint_limits(angles):
    """Joint angles (T, 24, 3) radians -> the same with every angle inside JOINT_LIMITS.

    Inside the limits less a margin an angle is unchanged; beyond it, it approaches the limit
    exponentially (value and slope continuous), so it never crosses it.
    """
    angles = np.asarray(angles, dtype=np.float64)
    low, high = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
    margin = np.minimum(np.radians(_LIMIT_MARGIN_DEGREES), 0.1 * (high - low))
    upper_knee, lower_knee = high - margin, low + margin
    above = angles > upper_knee
    below = angles < lower_knee
    eased_above = high - margin * np.exp(-(angles - upper_knee) / margin)
    eased_below = low + margin * np.exp(-(lower_knee - angles) / margin)
    return np.where(above, eased_above, np.where(below, eased_below, angles))


# --- shapes and styles ----------------------------------------------------------------------------

# Betas are one standard deviation per unit; beyond this the bodies stop looking like people.
BETA_LIMIT = 2.5


def random_betas(rng):
    """(10,) float64 shape coefficients ~ N(0, 1), clipped to +-BETA_LIMIT. rng: numpy Generator."""
    return np.clip(rng.standard_normal(NUM_BETAS), -BETA_LIMIT, BETA_LIMIT)


@dataclasses.dataclass(frozen=True)
class MotionStyle:
    """A person's habitual posture, shared by all motions of a sequence (degrees, multipliers).

    arm_hang: how far the arms are lowered from the T-pose when hanging; elbow_bend: resting elbow
    flexion; posture_lean: forward tilt of the pelvis when standing; arm_swing: multiplier of the arm
    swing of walking and running; stance_width: hip abduction of both legs when standing.
    """

    arm_hang: float = 76.0
    elbow_bend: float = 12.0
    posture_lean: float = 2.0
    arm_swing: float = 1.0
    stance_width: float = 2.0


DEFAULT_STYLE = MotionStyle()


def random_style(rng):
    """A MotionStyle drawn from plausible ranges. rng: numpy Generator."""
    return MotionStyle(
        arm_hang=rng.uniform(72.0, 80.0),
        elbow_bend=rng.uniform(6.0, 20.0),
        posture_lean=rng.uniform(0.0, 5.0),
        arm_swing=rng.uniform(0.6, 1.4),
        stance_width=rng.uniform(0.0, 4.0),
    )


# --- clips: one motion each -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MotionClip:
    """One motion, before it is joined to others and placed in the world.

    fps: frames per second. angles (T, 24, 3) radians: joint angles, inside JOINT_LIMITS.
    yaw_rate (T,) rad/s: heading change (turns). lift (T,) metres: height of the lowest foot above the
    ground (the flight phase of running; zero otherwise). labels (T,) str: the motion of each frame.
    support (T, 4): which contact points (CONTACT_JOINTS order) carry the body, as a gait plans it
    (rows sum to 1, or to 0 in flight), and planned (T,) in [0, 1]: how far to trust `support`
    rather than the contact points' heights (1 for gaits, 0 for motions that stand in place).
    """

    fps: float
    angles: np.ndarray
    yaw_rate: np.ndarray
    lift: np.ndarray
    labels: np.ndarray
    support: np.ndarray
    planned: np.ndarray

    @property
    def num_frames(self):
        return self.angles.shape[0]


# Labels are stored as numpy strings of this width.
_LABEL_WIDTH = 16
# MotionClip's per-frame fields, labels last (the one field that is not blended).
_CLIP_SERIES = ("angles", "yaw_rate", "lift", "support", "planned", "labels")


def _check_positive(name, value):
    if not np.isfinite(value) or value <= 0.0:
        raise InputError(f"{name} must be a positive number, got {value!r}.")


def _times(fps, seconds):
    """(T,) frame times in seconds for a clip of `seconds` (at least two frames)."""
    _check_positive("fps", fps)
    return np.arange(max(2, int(round(seconds * fps)))) / fps


def _standing(frame_count, style):
    """(T, 24, 3) degrees: the person's relaxed standing pose, arms hanging."""
    angles = np.zeros((frame_count, NUM_JOINTS, 3))
    _add(angles, "pelvis", x=style.posture_lean)
    for side in ("left", "right"):
        _add(angles, f"{side}_shoulder", z=-style.arm_hang)
        _add(angles, f"{side}_elbow", y=-style.elbow_bend)
        # Legs apart by abducting the hips; the ankles roll back so the soles stay flat.
        _add(angles, f"{side}_hip", z=style.stance_width)
        _add(angles, f"{side}_ankle", z=-style.stance_width)
    return angles


def _add(angles, joint_name, x=0.0, y=0.0, z=0.0):
    """Adds (x, y, z) degrees (scalars or (T,) arrays, left-side meaning) to a joint, in place."""
    frame_count = angles.shape[0]
    delta = np.stack(np.broadcast_arrays(*(np.broadcast_to(value, (frame_count,)) for value in (x, y, z))), axis=-1)
    angles[:, JOINT_INDEX[joint_name]] += delta * _mirror_sign(joint_name)


def _lean_trunk(angles, lean, pelvis_share):
    """Bends the trunk forward by `lean` degrees, `pelvis_share` of it at the pelvis, the rest spread
    over the three spine joints. Call before _place_legs, which keeps the thighs where they were."""
    _add(angles, "pelvis", x=pelvis_share * lean)
    for spine in ("spine1", "spine2", "spine3"):
        _add(angles, spine, x=(1.0 - pelvis_share) * lean / 3.0)


def _place_legs(angles, side, thigh, shank):
    """Sets one leg by the world angles of its segments (degrees, sagittal plane), the sole flat.

    thigh: how far the thigh swings forward from vertical; shank: how far the knee is ahead of the
    ankle, as an angle from vertical. The hip cancels the pelvis tilt so `thigh` is measured in the
    world; the knee bends by thigh + shank; the ankle brings the foot back to level.
    """
    pelvis_tilt = angles[:, JOINT_INDEX["pelvis"], 0]
    _add(angles, f"{side}_hip", x=-thigh - pelvis_tilt)
    _add(angles, f"{side}_knee", x=thigh + shank)
    _add(angles, f"{side}_ankle", x=-shank)


def _smootherstep(fraction):
    """0 -> 1 with zero first and second derivatives at both ends (Perlin's 6t^5 - 15t^4 + 10t^3)."""
    s = np.clip(fraction, 0.0, 1.0)
    return s * s * s * (s * (6.0 * s - 15.0) + 10.0)


def _smootherstep_rate(fraction):
    """The derivative of _smootherstep with respect to its argument (zero outside [0, 1])."""
    s = np.clip(fraction, 0.0, 1.0)
    return 30.0 * s * s * (1.0 - s) ** 2


def _keyframes(times, key_times, key_values):
    """(T,) values through (key_time, key_value) pairs, eased between consecutive keys with
    _smootherstep (the motion rests for an instant at each key); constant before the first key and
    after the last. key_times must increase."""
    key_times = np.asarray(key_times, dtype=np.float64)
    key_values = np.asarray(key_values, dtype=np.float64)
    segment = np.clip(np.searchsorted(key_times, times, side="right") - 1, 0, len(key_times) - 2)
    start, end = key_times[segment], key_times[segment + 1]
    eased = _smootherstep((times - start) / (end - start))
    return key_values[segment] + eased * (key_values[segment + 1] - key_values[segment])


def _favour_lowest(values, softness):
    """Weights (..., N) along the last axis, summing to 1, that favour the lowest of `values` (..., N):
    a value `softness` above the lowest gets 1/e of its weight."""
    weights = np.exp(-(values - values.min(axis=-1, keepdims=True)) / softness)
    return weights / weights.sum(axis=-1, keepdims=True)


def _soft_minimum(values, softness):
    """A smooth minimum (...) over the last axis of `values` (..., N), never above the true minimum:
    -softness * log(sum(exp(-values / softness)))."""
    lowest = values.min(axis=-1)
    return lowest - softness * np.log(np.sum(np.exp(-(values - lowest[..., None]) / softness), axis=-1))


def _bump(phase, centre, width):
    """A periodic bump over the gait cycle (phase in cycles): 1 at `centre`, about a Gaussian of
    standard deviation `width` (cycles) near it, smooth and periodic (a von Mises profile)."""
    concentration = 1.0 / (2.0 * np.pi * width) ** 2
    return np.exp(concentration * (np.cos(2.0 * np.pi * (phase - centre)) - 1.0))


def _clip(fps, degrees, labels, yaw_rate=None, lift=None, support=None):
    """A MotionClip from angles in degrees: converts to radians and applies the joint limits.
    `support` (T, 4) is the gait's planned support, or None to judge contacts by their heights."""
    frame_count = degrees.shape[0]
    return MotionClip(
        fps=float(fps),
        angles=apply_joint_limits(np.radians(degrees)),
        yaw_rate=np.zeros(frame_count) if yaw_rate is None else yaw_rate,
        lift=np.zeros(frame_count) if lift is None else lift,
        labels=np.broadcast_to(np.asarray(labels, dtype=f"<U{_LABEL_WIDTH}"), (frame_count,)).copy(),
        support=np.zeros((frame_count, 4)) if support is None else support,
        planned=np.full(frame_count, 0.0 if support is None else 1.0),
    )


# --- gaits: walking and running by inverse kinematics of planned foot paths ------------------------


@dataclasses.dataclass(frozen=True)
class RestSkeleton:
    """A body's rest pose as far as the motions need it: joints (24, 3) metres, and sole_height, the
    y of the lowest rest vertex (where the soles are)."""

    joints: np.ndarray
    sole_height: float


@functools.cache
def synthetic_body_model():
    """The synthetic body as a BodyModel, built in memory once per process (about 0.1 s)."""
    from fasthmr_model.body import BodyModel, BodyModelArrays
    from fasthmr_model.body.model_file import REQUIRED_KEYS
    from fasthmr_model.body.synthetic import MODEL_NAME, build_synthetic_body

    arrays = build_synthetic_body()
    return BodyModel(BodyModelArrays(model_name=MODEL_NAME, **{key: arrays[key] for key in REQUIRED_KEYS}))


def rest_skeleton(body_model=None, betas=None):
    """The RestSkeleton of `body_model` (default: the synthetic body) with shape `betas` (default: mean)."""
    body_model = synthetic_body_model() if body_model is None else body_model
    betas = np.zeros(NUM_BETAS) if betas is None else np.asarray(betas, dtype=np.float64)
    vertices = body_model.arrays.v_template + body_model.arrays.shapedirs @ betas
    return RestSkeleton(joints=body_model.arrays.J_regressor @ vertices, sole_height=float(vertices[:, 1].min()))


@dataclasses.dataclass(frozen=True)
class _Leg:
    """One leg of a rest skeleton, projected on the sagittal (y-z) plane for the gait's inverse
    kinematics. Angles are "forward angles" in radians: from straight down, positive toward +z; a
    rotation by x about the x axis lowers a forward angle by x.

    thigh, shank: segment lengths; thigh_angle, shank_angle: their rest forward angles; hip_offset
    (3,): hip minus pelvis at rest; ankle_to_ball (2,): (y, z) from the ankle to the toe joint at rest;
    ball_height, heel_drop: heights of the toe joint and of the ankle above the sole at rest.
    """

    thigh: float
    shank: float
    thigh_angle: float
    shank_angle: float
    hip_offset: np.ndarray
    ankle_to_ball: np.ndarray
    ball_height: float
    heel_drop: float

    def reach(self, knee_flexion):
        """Hip-to-ankle distance with the knee flexed by `knee_flexion` (radians, scalar or array)."""
        between = knee_flexion + self.thigh_angle - self.shank_angle
        return np.sqrt(self.thigh**2 + self.shank**2 + 2.0 * self.thigh * self.shank * np.cos(between))


def _leg(skeleton, side):
    """The _Leg of one side ("left" or "right") of a RestSkeleton."""
    joints = skeleton.joints
    hip, knee, ankle, ball = (joints[JOINT_INDEX[f"{side}_{name}"]] for name in ("hip", "knee", "ankle", "foot"))
    thigh, shank = knee - hip, ankle - knee
    return _Leg(
        thigh=float(np.hypot(thigh[1], thigh[2])),
        shank=float(np.hypot(shank[1], shank[2])),
        thigh_angle=float(np.arctan2(thigh[2], -thigh[1])),
        shank_angle=float(np.arctan2(shank[2], -shank[1])),
        hip_offset=hip - joints[JOINT_INDEX["pelvis"]],
        ankle_to_ball=(ball - ankle)[1:],
        ball_height=float(ball[1] - skeleton.sole_height),
        heel_drop=float(ankle[1] - skeleton.sole_height),
    )


@dataclasses.dataclass(frozen=True)
class Gait:
    """A gait's shape. One cycle is two steps and starts at the left foot's touch-down.

    cadence: steps per second at speed 1. step_length: metres per step at amplitude 1.
    duty_factor: fraction of the cycle a foot is on the ground (above 0.5: double support, below:
    flight). swing_height: metres the foot rises mid-swing. heel_strike: degrees the toes point up when
    the heel lands; the foot is flat `loading` (fraction of the cycle) later. push_off: degrees the
    heel has risen at toe-off, from heel_off (fraction of the cycle) before it. knee_floor: degrees the
    knees stay flexed at least; stance_compression: degrees more at mid-stance (the knee yields under
    the body's weight, a little in walking, much in running). lean: degrees of forward pelvis tilt.
    pelvis_turn, pelvis_list: degrees of pelvis yaw and side tilt over the cycle. arm_swing:
    degrees. elbow_flexion: degrees added to the resting elbow flexion. label: the frames' label.
    """

    cadence: float
    step_length: float
    duty_factor: float
    swing_height: float
    heel_strike: float
    loading: float
    push_off: float
    heel_off: float
    knee_floor: float
    stance_compression: float
    lean: float
    pelvis_turn: float
    pelvis_list: float
    arm_swing: float
    elbow_flexion: float
    label: str


# Adult walking: ~1.8 steps/s of ~0.6 m (1.1 m/s), 60% stance. Jogging: ~2.8 steps/s of ~0.95 m
# (2.7 m/s), 35% stance and a short flight between steps.
WALK_GAIT = Gait(
    cadence=1.8, step_length=0.6, duty_factor=0.6, swing_height=0.05, heel_strike=15.0, loading=0.1,
    push_off=25.0, heel_off=0.15, knee_floor=5.0, stance_compression=12.0, lean=2.0, pelvis_turn=4.0,
    pelvis_list=3.0, arm_swing=15.0, elbow_flexion=10.0, label="walk",
)
RUN_GAIT = Gait(
    cadence=2.8, step_length=0.95, duty_factor=0.35, swing_height=0.15, heel_strike=8.0, loading=0.06,
    push_off=30.0, heel_off=0.1, knee_floor=10.0, stance_compression=35.0, lean=8.0, pelvis_turn=7.0,
    pelvis_list=3.0, arm_swing=30.0, elbow_flexion=70.0, label="run",
)
# Fractions of the swing over which the pushed-off foot levels out, and over which it then turns its
# toes up for the heel strike.
_SWING_LEVELLING = 0.45
_SWING_TOES_UP = 0.45


def _rotate_sagittal(angle, up, forward):
    """(up, forward) components of the vector (up, forward) rotated by `angle` radians about x."""
    cos, sin = np.cos(angle), np.sin(angle)
    return up * cos - forward * sin, up * sin + forward * cos


@dataclasses.dataclass(frozen=True)
class _FootPlan:
    """The planned path of one foot, each field (T,).

    forward: the ball of the foot's ground point when flat, relative to the pelvis (metres); rise:
    height of the foot's reference point above the ground (metres); pitch: the foot's pitch (radians,
    positive = heel up); toe_bend: the part of the pitch the toes take back to stay flat (radians);
    to_heel: 0 when the foot pivots about the ball of the foot, 1 about the heel; relax: how much the
    foot may hang from the shank instead of following `pitch` (0 in stance, up to 1 mid-swing);
    loaded: 0 to 1 to 0 over the stance (1 at mid-stance), 0 in swing; support: 1 while the foot
    carries the body, easing in and out over _SUPPORT_EASE at touch-down and toe-off, 0 in swing;
    heel_share: the part of that support on the heel (1 rolling on it, 1/2 flat, 0 on the ball).
    """

    forward: np.ndarray
    rise: np.ndarray
    pitch: np.ndarray
    toe_bend: np.ndarray
    to_heel: np.ndarray
    relax: np.ndarray
    loaded: np.ndarray
    support: np.ndarray
    heel_share: np.ndarray


# Fraction of the cycle over which a foot takes up or gives off the body's weight in the plan.
_SUPPORT_EASE = 0.03


def _foot_plan(leg_phase, gait, stride, foot_length):
    """The _FootPlan over a foot's gait phase (T,) in cycles, 0 = its heel strike, for steps of
    `stride` (T,) times the gait's (swing height and foot roll scale with it up to 1).

    In stance a ground point moves backward at the walking speed in a straight line (the foot stays
    put while the body passes over it): the foot lands heel first with the toes up, rolls about the
    heel until flat, and at the end rolls about the ball of the foot as the heel rises. In swing the
    foot returns forward on a cubic that starts and ends with the stance's velocity, so it leaves and
    touches the ground without sliding, and rises on an arch that leaves and meets the ground with
    zero vertical velocity and acceleration.
    """
    duty = gait.duty_factor
    step_length = gait.step_length * stride
    # Short steps lift and roll the foot less, down to standing still at stride 0.
    roll = np.minimum(stride, 1.0)
    cycle = np.mod(leg_phase, 1.0)
    in_stance = cycle < duty
    # The ball's ground point sweeps 2 * duty step lengths per stance, centred a little ahead of the
    # pelvis so that the ankle's sweep (it is behind the ball) is centred.
    centre = 0.75 * foot_length
    stance_forward = centre + duty * step_length - 2.0 * step_length * cycle
    swing = (cycle - duty) / (1.0 - duty)
    swing_velocity = -2.0 * step_length * (1.0 - duty)  # metres per unit of `swing`
    span = 2.0 * duty * step_length
    # A cubic Hermite: after toe-off the foot still moves back relative to the pelvis (it stays put
    # on the ground) and turns forward; a quintic with zero end accelerations would overshoot more.
    cubic_step = swing**2 * (3.0 - 2.0 * swing)
    swing_forward = centre - duty * step_length + swing_velocity * swing + (span - swing_velocity) * cubic_step

    arch = 64.0 * swing**3 * (1.0 - swing) ** 3  # 0 at both ends with two zero derivatives, 1 mid-swing
    heel_rise = np.where(
        in_stance,
        _smootherstep((cycle - (duty - gait.heel_off)) / gait.heel_off),
        1.0 - _smootherstep(swing / _SWING_LEVELLING),
    )
    toes_up = np.where(
        in_stance,
        1.0 - _smootherstep(cycle / gait.loading),
        _smootherstep((swing - (1.0 - _SWING_TOES_UP)) / _SWING_TOES_UP),
    )
    heel_rise = roll * heel_rise
    pitch = np.radians(gait.push_off * heel_rise - roll * gait.heel_strike * toes_up)
    taking_off = _smootherstep((cycle - duty + _SUPPORT_EASE) / _SUPPORT_EASE)
    return _FootPlan(
        forward=np.where(in_stance, stance_forward, swing_forward),
        rise=np.where(in_stance, 0.0, roll * gait.swing_height * arch),
        pitch=pitch,
        toe_bend=np.radians(gait.push_off) * heel_rise,
        # In stance the pivot is whichever end is on the ground; in swing the reference hands over
        # smoothly from the ball that left the ground to the heel that will land.
        to_heel=np.where(in_stance, (pitch < 0.0).astype(np.float64), _smootherstep(swing)),
        relax=np.where(in_stance, 0.0, roll * arch),
        loaded=np.where(in_stance, 64.0 * (cycle / duty) ** 3 * (1.0 - cycle / duty) ** 3, 0.0),
        support=np.where(in_stance, _smootherstep(cycle / _SUPPORT_EASE) * (1.0 - taking_off), 0.0),
        heel_share=(1.0 - heel_rise) * 0.5 * (1.0 + np.where(in_stance, toes_up, 0.0)),
    )


def _place_foot(plan, pitch, leg):
    """Where the ankle of a foot following `plan` with this pitch (T,) is, and its contact points.

    Returns (T,) each: the ankle's height above the ground and its forward position relative to the
    pelvis, and the heights of the heel and of the ball of the foot above the ground.
    """
    foot_length = leg.ankle_to_ball[1]
    ball_up, ball_forward = _rotate_sagittal(pitch, leg.heel_drop, -foot_length)
    heel_up, heel_forward = _rotate_sagittal(pitch, leg.heel_drop, 0.0)
    # The ankle seen from the ball's ground point and from the heel's (behind it by the foot length).
    from_ball = (plan.rise + ball_up, plan.forward + ball_forward)
    from_heel = (plan.rise + heel_up, plan.forward - foot_length + heel_forward)
    ankle_height, ankle_forward = ((1.0 - plan.to_heel) * ball + plan.to_heel * heel for ball, heel in zip(from_ball, from_heel))
    return ankle_height, ankle_forward, ankle_height - heel_up, ankle_height - ball_up


def _two_bone(leg, down, forward):
    """Forward angles (radians) of thigh and shank that put the ankle `down` below and `forward` of
    the hip, the knee bending forward. Targets beyond the straight leg's reach are pulled in to it."""
    distance = np.minimum(np.hypot(down, forward), leg.reach(0.0))
    cos_at_hip = (leg.thigh**2 + distance**2 - leg.shank**2) / (2.0 * leg.thigh * distance)
    thigh_angle = np.arctan2(forward, down) + np.arccos(np.clip(cos_at_hip, -1.0, 1.0))
    knee_down, knee_forward = leg.thigh * np.cos(thigh_angle), leg.thigh * np.sin(thigh_angle)
    return thigh_angle, np.arctan2(forward - knee_forward, down - knee_down)


# The pelvis height is a soft minimum (metres) of what each leg allows, smoothed over about this
# time (seconds, Gaussian sigma); see _gait_legs.
_PELVIS_SOFTNESS = 0.01
_PELVIS_SMOOTHING = 0.06
# In mid-swing the foot hangs from the shank, this much plantar-flexed (degrees), instead of being
# held level, which would take more dorsiflexion than an ankle has when the knee is folded.
_RELAXED_ANKLE = 15.0


def _gait_legs(angles, phase, fps, gait, stride, skeleton):
    """Sets hips, knees, ankles and toes (degrees, in place) so that the feet follow their plans, by
    two-bone inverse kinematics in the sagittal plane. Returns the planned height of the lowest
    contact point above the ground (T,) (zero unless both feet are in the air) and the planned
    support (T, 4) (see MotionClip).

    The pelvis rotation already in `angles` is taken into account for where the hips are.
    """
    pelvis = np.radians(angles[:, JOINT_INDEX["pelvis"]])
    root = joint_angles_to_matrix(pelvis)
    pelvis_tilt = pelvis[:, 0]
    # The pelvis' rotation without its tilt: Rz(side tilt) @ Ry(turn).
    pelvis_twist = joint_angles_to_matrix(pelvis * (0.0, 1.0, 1.0))
    legs, allowed_heights = [], []
    for side, offset in (("left", 0.0), ("right", 0.5)):
        leg = _leg(skeleton, side)
        plan = _foot_plan(phase - offset, gait, stride, leg.ankle_to_ball[1])
        hip = root @ leg.hip_offset
        ankle_height, ankle_forward, _, _ = _place_foot(plan, plan.pitch, leg)
        forward = ankle_forward - hip[:, 2]
        legs.append((side, leg, plan, hip, ankle_height, forward))
        # The highest pelvis at which this ankle is reached with the knee flexed as the gait wants.
        knee = np.radians(gait.knee_floor + gait.stance_compression * plan.loaded)
        allowed_heights.append(ankle_height - hip[:, 1] + np.sqrt(np.maximum(leg.reach(knee) ** 2 - forward**2, 0.0)))
    # The pelvis rides as high as both legs allow: a smooth minimum, never above the true one, so
    # it vaults over a straight leg in walking and sinks into a yielding one in running.
    allowed = _soft_minimum(np.stack(allowed_heights, axis=1), _PELVIS_SOFTNESS)
    # Smoothed in time, then lowered as far as the smoothing lifted it anywhere: the pelvis does not
    # drop abruptly when a leg reaches out before the heel strike.
    smoothed = _gaussian_smooth(allowed, _PELVIS_SMOOTHING * fps)
    pelvis_height = smoothed - np.max(smoothed - allowed)

    heel_heights, ball_heights = [], []
    for side, leg, plan, hip, ankle_height, forward in legs:
        _, shank_angle = _two_bone(leg, pelvis_height + hip[:, 1] - ankle_height, forward)
        # Second pass: in swing the foot relaxes toward hanging from the shank, which moves the ankle
        # a little (the foot pivots about its planned reference point); solve again for that.
        shank_rotation = leg.shank_angle - shank_angle
        pitch = plan.pitch + plan.relax * (shank_rotation + np.radians(_RELAXED_ANKLE) - plan.pitch)
        ankle_height, ankle_forward, heel_height, ball_height = _place_foot(plan, pitch, leg)
        heel_heights.append(heel_height)
        ball_heights.append(ball_height)
        thigh_angle, shank_angle = _two_bone(leg, pelvis_height + hip[:, 1] - ankle_height, ankle_forward - hip[:, 2])
        thigh_rotation, shank_rotation = leg.thigh_angle - thigh_angle, leg.shank_angle - shank_angle
        # The hip undoes the pelvis' turn and side tilt, then swings the leg in the heading's
        # sagittal plane: pelvis @ hip = Rx(tilt + hip swing) @ (the standing abduction).
        hip_index = JOINT_INDEX[f"{side}_hip"]
        hip_rotation = (
            np.swapaxes(pelvis_twist, -1, -2)
            @ _rotation_about(0, thigh_rotation - pelvis_tilt)
            @ joint_angles_to_matrix(np.radians(angles[:, hip_index]))
        )
        angles[:, hip_index] = np.degrees(matrix_to_joint_angles(hip_rotation))
        _add(angles, f"{side}_knee", x=np.degrees(shank_rotation - thigh_rotation))
        _add(angles, f"{side}_ankle", x=np.degrees(pitch - shank_rotation))
        _add(angles, f"{side}_foot", x=-np.degrees(plan.toe_bend))
    # Contact points in CONTACT_JOINTS order: left heel, right heel, left ball, right ball. The lift
    # is their height as ground_translation measures it (a mean weighted toward the lowest), so that
    # the pelvis it places follows the plan also in flight.
    heights = np.stack(heel_heights + ball_heights, axis=1)
    lift = np.sum(_favour_lowest(heights, _CONTACT_SOFTNESS) * heights, axis=1)
    plans = [plan for _, _, plan, _, _, _ in legs]
    support = np.stack(
        [plan.support * plan.heel_share for plan in plans] + [plan.support * (1.0 - plan.heel_share) for plan in plans], axis=1
    )
    total = support.sum(axis=1, keepdims=True)
    support = np.where(total > 0.0, support / np.where(total > 0.0, total, 1.0), 0.0)
    return lift, support


# Gaits start and end standing and reach their full step length over this many steps (a
# smootherstep): starting or stopping takes a few steps, as for people. They also stand still for
# the first and last GAIT_STILL_SECONDS, so that a blend from or to another motion (a fraction of a
# second) does not add its own change of speed to the start or the stop.
GAIT_RAMP_STEPS = 3.0
GAIT_STILL_SECONDS = 0.3


def _gait_arms(angles, phase, swing, elbow_extra, style):
    """Arm swing opposite to the legs: the left arm is forward when the right leg is (phase 0.5)."""
    for side, offset in (("left", 0.5), ("right", 0.0)):
        forward = np.cos(2.0 * np.pi * (phase - offset))
        _add(angles, f"{side}_shoulder", x=-swing * style.arm_swing * forward)
        # The elbow bends more as the arm swings forward.
        _add(angles, f"{side}_elbow", y=-elbow_extra * (1.0 + forward) / 2.0)


def gait_clip(fps, gait, steps=8, speed=1.0, amplitude=1.0, turn_angle=0.0, style=DEFAULT_STYLE, skeleton=None):
    """`steps` steps of a Gait (WALK_GAIT, RUN_GAIT) from standing to standing: a MotionClip.

    speed multiplies the cadence: the clip lasts steps / (cadence * speed) seconds plus
    2 * GAIT_STILL_SECONDS standing still. amplitude multiplies the step length and the swing of
    pelvis and arms. The walking speed, cadence * step_length * speed * amplitude, is reached after
    GAIT_RAMP_STEPS steps and left as many steps before the end. A non-zero turn_angle (radians,
    positive = to the left) turns the heading smoothly over the clip (label "walk_turn" for walking).
    skeleton: the RestSkeleton the feet are planned for (default: the synthetic body, mean shape);
    played on a body of another size, the feet slide a little.
    """
    _check_positive("speed", speed)
    _check_positive("amplitude", amplitude)
    _check_positive("steps", steps)
    skeleton = rest_skeleton() if skeleton is None else skeleton
    times = _times(fps, steps / (gait.cadence * speed) + 2.0 * GAIT_STILL_SECONDS)
    duration = len(times) / fps
    phase = times * gait.cadence * speed / 2.0
    cycle_angle = 2.0 * np.pi * phase
    # The steps lengthen from a standstill and shorten again to one at the end of the clip.
    ramp = GAIT_RAMP_STEPS / (gait.cadence * speed)
    starting = _smootherstep((times - GAIT_STILL_SECONDS) / ramp)
    stopping = _smootherstep((duration - GAIT_STILL_SECONDS - times) / ramp)
    stride = amplitude * starting * stopping
    angles = _standing(len(times), style)
    _add(
        angles, "pelvis", x=gait.lean,
        y=-gait.pelvis_turn * stride * np.cos(cycle_angle), z=gait.pelvis_list * stride * np.sin(cycle_angle),
    )
    for spine in ("spine1", "spine2", "spine3"):
        # The chest turns against the pelvis and the spine keeps the shoulders level.
        _add(
            angles, spine, y=gait.pelvis_turn * stride * 0.6 * np.cos(cycle_angle),
            z=-gait.pelvis_list * stride / 3.0 * np.sin(cycle_angle),
        )
    _add(angles, "neck", x=-0.7 * gait.lean)
    if gait.elbow_flexion > 30.0:
        # Arms carried with bent elbows (running) hang a little less.
        for side in ("left", "right"):
            _add(angles, f"{side}_shoulder", z=8.0)
    _gait_arms(angles, phase, swing=gait.arm_swing * stride, elbow_extra=gait.elbow_flexion, style=style)
    lift, support = _gait_legs(angles, phase, fps, gait, stride, skeleton)
    # The turn follows a smootherstep in time: no yaw rate at either end of the clip.
    yaw_rate = turn_angle * _smootherstep_rate(times / duration) / duration
    label = "walk_turn" if gait.label == "walk" and turn_angle != 0.0 else gait.label
    return _clip(fps, angles, label, yaw_rate=yaw_rate, lift=lift, support=support)


def walk(fps, steps=8, speed=1.0, amplitude=1.0, turn_angle=0.0, style=DEFAULT_STYLE, skeleton=None):
    """A walk (WALK_GAIT, about 1.1 m/s at speed and amplitude 1); see gait_clip() for the arguments."""
    return gait_clip(fps, WALK_GAIT, steps, speed, amplitude, turn_angle, style, skeleton)


def run(fps, steps=10, speed=1.0, amplitude=1.0, turn_angle=0.0, style=DEFAULT_STYLE, skeleton=None):
    """A run (RUN_GAIT, about 2.7 m/s at speed and amplitude 1); see gait_clip() for the arguments."""
    return gait_clip(fps, RUN_GAIT, steps, speed, amplitude, turn_angle, style, skeleton)


TURN_RATE = np.radians(100.0)  # radians per second at speed 1
STEP_IN_PLACE_PERIOD = 1.0  # seconds per pair of steps at speed 1


def turn(fps, angle=np.pi / 2, speed=1.0, amplitude=1.0, style=DEFAULT_STYLE):
    """Turning in place by `angle` radians (positive = to the left) at about 100 deg/s times speed,
    stepping with alternate feet; starts and ends standing."""
    _check_positive("speed", speed)
    duration = max(1.0, abs(angle) / TURN_RATE) / speed
    times = _times(fps, duration)
    duration = len(times) / fps
    step_count = max(1, int(round(duration * speed / STEP_IN_PLACE_PERIOD)))
    phase = times / duration * step_count
    # Whole steps fit the clip, and the stepping fades in and out with the turn.
    envelope = np.sin(np.pi * times / duration) ** 2
    angles = _standing(len(times), style)
    stepping = np.zeros(len(times))
    for side, centre in (("left", 0.25), ("right", 0.75)):
        lift = envelope * _bump(phase, centre, 0.1)
        _place_legs(angles, side, thigh=20.0 * amplitude * lift, shank=20.0 * amplitude * lift)
        stepping += lift
    # The body turns while both feet are down (pivoting about a point between them, under the
    # pelvis) rather than about the one foot left on the ground during a step.
    turning = _smootherstep_rate(times / duration) * (1.0 - 0.9 * np.minimum(stepping, 1.0))
    yaw_rate = angle * turning / (np.sum(turning) / fps)
    return _clip(fps, angles, "turn", yaw_rate=yaw_rate)


def _swap_side(side):
    if side not in ("left", "right"):
        raise InputError(f"side must be 'left' or 'right', got {side!r}.")
    return "right" if side == "left" else "left"


WAVE_FREQUENCY = 2.0  # waves per second at speed 1


def wave(fps, side="left", waves=3, speed=1.0, amplitude=1.0, style=DEFAULT_STYLE):
    """Raising one arm, waving the forearm side to side `waves` times, lowering it.

    The upper arm goes out to the side with the forearm upright; waving swings the forearm about the
    elbow. Raising and lowering take 0.6 s each; all times are divided by speed.
    """
    _swap_side(side)
    _check_positive("speed", speed)
    raise_time = 0.6 / speed
    wave_time = waves / (WAVE_FREQUENCY * speed)
    times = _times(fps, 2.0 * raise_time + wave_time)
    end = times[-1]
    raised = _keyframes(times, [0.0, raise_time, end - raise_time, end], [0.0, 1.0, 1.0, 0.0])
    fade = 0.2 / speed
    waving = _keyframes(times, [raise_time, raise_time + fade, end - raise_time - fade, end - raise_time], [0.0, 1.0, 1.0, 0.0])
    angles = _standing(len(times), style)
    # Upper arm: from hanging to out to the side and slightly forward, turned so the elbow bends upward.
    _add(angles, f"{side}_shoulder", x=-90.0 * raised, z=(style.arm_hang - 20.0) * raised)
    elbow_swing = 25.0 * amplitude * waving * np.sin(2.0 * np.pi * WAVE_FREQUENCY * speed * (times - raise_time))
    _add(angles, f"{side}_elbow", y=-(90.0 - style.elbow_bend) * raised + elbow_swing)
    _add(angles, "neck", y=10.0 * raised if side == "left" else -10.0 * raised)
    return _clip(fps, angles, "wave")


def reach(fps, side="right", height=0.0, speed=1.0, amplitude=1.0, style=DEFAULT_STYLE):
    """Reaching forward with one arm and back: height -0.5 (low, with a forward bend of trunk and
    knees) to 1 (overhead); 0 is shoulder height. Reach 0.9 s, hold 0.5 s, return 0.9 s, over speed."""
    _swap_side(side)
    _check_positive("speed", speed)
    if not -0.5 <= height <= 1.0:
        raise InputError(f"reach height must be in [-0.5, 1], got {height!r}.")
    move, hold = 0.9 / speed, 0.5 / speed
    times = _times(fps, 2.0 * move + hold)
    end = times[-1]
    extended = _keyframes(times, [0.0, move, end - move, end], [0.0, 1.0, 1.0, 0.0])
    low = max(0.0, -height) * 2.0  # 0 at or above shoulder height, 1 at the lowest reach
    angles = _standing(len(times), style)
    _lean_trunk(angles, (5.0 + 35.0 * low) * amplitude * extended, pelvis_share=0.6)
    for leg in ("left", "right"):
        _place_legs(angles, leg, thigh=20.0 * low * extended, shank=15.0 * low * extended)
    _add(angles, f"{side}_shoulder", x=-(90.0 + 60.0 * height) * amplitude * extended)
    _add(angles, f"{side}_elbow", y=(style.elbow_bend - 3.0) * extended)
    _add(angles, f"{_swap_side(side)}_shoulder", x=8.0 * extended)
    # The pelvis turns a little to bring the reaching shoulder forward.
    _add(angles, "pelvis", y=(-8.0 if side == "left" else 8.0) * extended)
    return _clip(fps, angles, "reach")


def squat(fps, depth=1.0, speed=1.0, style=DEFAULT_STYLE):
    """A squat down and up with flat feet, arms forward for balance: depth 0.3 (shallow) to 1
    (thighs just past horizontal). Down 1.0 s, hold 0.3 s, up 1.0 s, over speed."""
    _check_positive("speed", speed)
    if not 0.3 <= depth <= 1.0:
        raise InputError(f"squat depth must be in [0.3, 1], got {depth!r}.")
    move, hold = 1.0 / speed, 0.3 / speed
    times = _times(fps, 2.0 * move + hold)
    end = times[-1]
    down = depth * _keyframes(times, [0.0, move, end - move, end], [0.0, 1.0, 1.0, 0.0])
    angles = _standing(len(times), style)
    _lean_trunk(angles, 35.0 * down, pelvis_share=0.5)
    for side in ("left", "right"):
        _place_legs(angles, side, thigh=95.0 * down, shank=32.0 * down)
        _add(angles, f"{side}_shoulder", x=-75.0 * down)
    _add(angles, "neck", x=-15.0 * down)
    return _clip(fps, angles, "squat")


def sit(fps, seated_seconds=2.0, speed=1.0, style=DEFAULT_STYLE):
    """Sitting down on a seat at knee height, staying seated, standing up again.

    Labels the frames "sit_down", "seated", "stand_up". The trunk leans forward to move the weight
    over the feet before the thighs lower (and before they rise), as people do. No seat is modelled:
    the pelvis stops at seat height because the shins stay upright and the thighs horizontal.
    """
    _check_positive("speed", speed)
    if not np.isfinite(seated_seconds) or seated_seconds < 0.0:
        raise InputError(f"seated_seconds must be >= 0, got {seated_seconds!r}.")
    down, up = 1.6 / speed, 1.8 / speed
    times = _times(fps, down + seated_seconds + up)
    stand = times[-1] - up  # when standing up starts
    lean = _keyframes(times, [0.0, 0.7 / speed, down, stand, stand + 0.6 / speed, times[-1]], [0.0, 35.0, 12.0, 12.0, 40.0, 0.0])
    thigh = _keyframes(times, [0.3 / speed, 1.4 / speed, stand + 0.5 / speed, stand + 1.6 / speed], [0.0, 88.0, 88.0, 0.0])
    shank = thigh * (8.0 / 88.0)
    angles = _standing(len(times), style)
    _lean_trunk(angles, lean, pelvis_share=0.6)
    for side in ("left", "right"):
        _place_legs(angles, side, thigh=thigh, shank=shank)
        _add(angles, f"{side}_shoulder", x=-0.6 * lean)
    labels = np.where(times < down, SIT_PHASE_LABELS[0], np.where(times < stand, SIT_PHASE_LABELS[1], SIT_PHASE_LABELS[2]))
    return _clip(fps, angles, labels)


def bend(fps, depth=1.0, speed=1.0, style=DEFAULT_STYLE):
    """Bending forward from the hips with knees slightly bent, the arms hanging, and back up: depth 0.3
    to 1 (trunk ~85 degrees forward). Down 1.2 s, hold 0.6 s, up 1.2 s, over speed."""
    _check_positive("speed", speed)
    if not 0.3 <= depth <= 1.0:
        raise InputError(f"bend depth must be in [0.3, 1], got {depth!r}.")
    move, hold = 1.2 / speed, 0.6 / speed
    times = _times(fps, 2.0 * move + hold)
    end = times[-1]
    lean = 85.0 * depth * _keyframes(times, [0.0, move, end - move, end], [0.0, 1.0, 1.0, 0.0])
    angles = _standing(len(times), style)
    _lean_trunk(angles, lean, pelvis_share=0.6)
    for side in ("left", "right"):
        _place_legs(angles, side, thigh=0.1 * lean, shank=0.12 * lean)
        # Hanging arms stay vertical, so the shoulders flex as much as the trunk leans.
        _add(angles, f"{side}_shoulder", x=-0.9 * lean)
    _add(angles, "neck", x=-0.3 * lean)
    return _clip(fps, angles, "bend")


def _smooth_noise(rng, times, low_hz, high_hz, components=3):
    """(T,) a smooth random signal of about unit amplitude: a few sinusoids of random frequency in
    [low_hz, high_hz] and random phase."""
    frequencies = rng.uniform(low_hz, high_hz, size=components)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=components)
    waves = np.sin(2.0 * np.pi * frequencies * times[:, None] + phases)
    return waves.sum(axis=1) / np.sqrt(components / 2.0)


def idle(fps, rng, seconds=3.0, amplitude=1.0, style=DEFAULT_STYLE):
    """Standing with idle sway: slow weight shifts from foot to foot, breathing, small head and arm
    movements. rng (numpy Generator) draws the sway; amplitude multiplies it."""
    times = _times(fps, seconds)
    angles = _standing(len(times), style)
    # Weight shift: both legs roll the same way about the hips, which moves the pelvis sideways over
    # planted feet; the ankles roll back to keep the soles flat.
    shift = 2.5 * amplitude * _smooth_noise(rng, times, 0.1, 0.35)
    for side in ("left", "right"):
        side_sign = 1.0 if side == "left" else -1.0
        _add(angles, f"{side}_hip", z=side_sign * shift)
        _add(angles, f"{side}_ankle", z=-side_sign * shift)
    breathing = np.sin(2.0 * np.pi * rng.uniform(0.2, 0.3) * times + rng.uniform(0.0, 2.0 * np.pi))
    for spine in ("spine1", "spine2", "spine3"):
        _add(angles, spine, x=amplitude * breathing / 3.0, z=-shift / 6.0)
    look_around = 6.0 * amplitude * _smooth_noise(rng, times, 0.1, 0.4)
    _add(angles, "neck", y=look_around, x=3.0 * amplitude * _smooth_noise(rng, times, 0.1, 0.4))
    for side in ("left", "right"):
        _add(angles, f"{side}_shoulder", x=3.0 * amplitude * _smooth_noise(rng, times, 0.15, 0.5))
        _add(angles, f"{side}_elbow", y=-3.0 * amplitude * (1.0 + _smooth_noise(rng, times, 0.15, 0.5)))
    return _clip(fps, angles, "idle")


# --- sequences: clips joined and placed on the ground ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class MotionSequence:
    """A body moving in a y-up world frame, in the SMPL format.

    fps: frames per second.
    rotmats (T, 24, 3, 3) float64: local joint rotations, rotmats[:, 0] the global orientation.
    translation (T, 3) float64 metres: the body model's transl (pelvis = its rest position + transl).
    betas (10,) float64: shape coefficients.
    labels (T,) str: what each frame shows (a motion name, a sit phase, "transition", or for files
    read from motion capture "mocap").
    gender: "neutral", "male" or "female" (the generator makes neutral bodies).
    """

    fps: float
    rotmats: np.ndarray
    translation: np.ndarray
    betas: np.ndarray
    labels: np.ndarray
    gender: str = "neutral"

    @property
    def num_frames(self):
        return self.rotmats.shape[0]

    def axis_angle(self):
        """(T, 24, 3) the rotations as axis-angle vectors (SMPL's pose parameters)."""
        return matrix_to_axis_angle(self.rotmats)


def resample_sequence(sequence, fps):
    """The MotionSequence at another frame rate: frames at multiples of 1 / fps seconds within the
    original duration, rotations interpolated along the shortest arc (slerp), translation linearly,
    labels from the nearest original frame."""
    _check_positive("fps", fps)
    frame_count = sequence.num_frames
    duration = (frame_count - 1) / sequence.fps
    # A small tolerance keeps the last frame when the duration is a whole number of new frames.
    new_count = int(np.floor(duration * fps + 1e-9)) + 1
    position = np.arange(new_count) * (sequence.fps / fps)
    before = np.minimum(np.floor(position).astype(np.int64), max(frame_count - 2, 0))
    after = np.minimum(before + 1, frame_count - 1)
    fraction = (position - before)[:, None]
    start = sequence.rotmats[before]
    # R(f) = R_before @ exp(f * log(R_before^T @ R_after)): constant angular velocity between frames.
    step = matrix_to_axis_angle(np.swapaxes(start, -1, -2) @ sequence.rotmats[after])
    rotmats = start @ axis_angle_to_matrix(fraction[..., None] * step)
    translation = (1.0 - fraction) * sequence.translation[before] + fraction * sequence.translation[after]
    nearest = np.minimum(np.round(position).astype(np.int64), frame_count - 1)
    return dataclasses.replace(
        sequence, fps=float(fps), rotmats=rotmats, translation=translation, labels=sequence.labels[nearest].copy()
    )


# The points that touch the ground: each heel below its ankle and each ball of the foot below its toe
# joint, in this order: left heel, right heel, left ball, right ball (the joints they hang from).
CONTACT_JOINTS = tuple(JOINT_INDEX[name] for name in ("left_ankle", "right_ankle", "left_foot", "right_foot"))
# Contact points within about this height of the lowest one share the body's weight (metres):
# a foot in the air carries almost none, two planted feet about half each.
_CONTACT_SOFTNESS = 0.006
# The root's horizontal velocity is smoothed over about this time (seconds, Gaussian sigma): it
# softens the weight transfer between feet where blended or in-place motions do not plan it.
_VELOCITY_SMOOTHING = 0.03


def contact_drops(skeleton):
    """(4,) how far each contact point lies below its CONTACT_JOINTS joint (metres): the joint's height
    above the sole in the rest pose of a RestSkeleton."""
    return skeleton.joints[list(CONTACT_JOINTS), 1] - skeleton.sole_height


def _world_rotation(rotmats, joint):
    """(T, 3, 3) a joint's rotation in the world: the product of the local rotations from the root."""
    rotation = rotmats[:, joint]
    parent = PARENTS[joint]
    while parent >= 0:
        rotation = rotmats[:, parent] @ rotation
        parent = PARENTS[parent]
    return rotation


def contact_points(body_model, betas, rotmats, transl=None):
    """(T, 4, 3) the heels and balls of the feet (see CONTACT_JOINTS) of the posed body.

    Each point hangs below its joint by contact_drops in the joint's own frame, so it rolls with the
    foot: when the heel lifts, the heel point rises and the ball point stays on the ground.
    """
    betas = np.asarray(betas, dtype=np.float64)
    frame_count = rotmats.shape[0]
    _, joints = body_model.forward(np.broadcast_to(betas, (frame_count, NUM_BETAS)), rotmats, transl, with_vertices=False)
    drops = contact_drops(rest_skeleton(body_model, betas))
    points = np.empty((frame_count, len(CONTACT_JOINTS), 3))
    for index, (joint, drop) in enumerate(zip(CONTACT_JOINTS, drops)):
        # Column 1 of the joint's world rotation is its own up (+y) axis, seen in the world.
        points[:, index] = joints[:, joint] - drop * _world_rotation(rotmats, joint)[:, :, 1]
    return points


def _gaussian_smooth(values, sigma_frames):
    """(T, ...) values smoothed along axis 0 by a Gaussian, the ends extended by their edge values."""
    radius = int(np.ceil(3.0 * sigma_frames))
    if radius == 0 or len(values) < 2:
        return values
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    kernel /= kernel.sum()
    padded = np.concatenate([np.repeat(values[:1], radius, axis=0), values, np.repeat(values[-1:], radius, axis=0)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, len(kernel), axis=0)
    return windows @ kernel


def ground_translation(body_model, betas, rotmats, fps, lift=None, support=None, planned=None):
    """(T, 3) translation that keeps the feet on the ground plane y = 0 without sliding.

    Args:
        body_model: a BodyModel. betas: (10,). rotmats: (T, 24, 3, 3) with the heading in the root.
        fps: frames per second. lift: (T,) metres the lowest contact point is above the ground
            (the flight phases of running), or None for always on the ground.
        support, planned: a gait's planned support (T, 4) and how far to trust it (T,) (see
            MotionClip), or None to judge the contacts by their heights alone.

    Height: the weighted mean of the contact points' (contact_points) heights, weights favouring the
    lowest (_CONTACT_SOFTNESS), is set to `lift`. Horizontal: the root moves against the motion of
    the contact points that carry the body (the planned support, else the lowest points), so a planted
    foot stays in place; when nothing carries it (flight) it keeps its velocity, interpolated between
    take-off and landing. The horizontal velocity is smoothed (_VELOCITY_SMOOTHING). The pelvis
    starts above the world origin.
    """
    betas = np.asarray(betas, dtype=np.float64)
    frame_count = rotmats.shape[0]
    lift = np.zeros(frame_count) if lift is None else np.asarray(lift, dtype=np.float64)
    planned = np.zeros(frame_count) if planned is None else np.asarray(planned, dtype=np.float64)
    support = np.zeros((frame_count, len(CONTACT_JOINTS))) if support is None else np.asarray(support, dtype=np.float64)
    points = contact_points(body_model, betas, rotmats)
    heights = points[:, :, 1]
    lowest_first = _favour_lowest(heights, _CONTACT_SOFTNESS)

    translation = np.zeros((frame_count, 3))
    translation[:, 1] = lift - np.sum(lowest_first * heights, axis=1)
    weights = planned[:, None] * support + (1.0 - planned[:, None]) * lowest_first
    # Step from frame t to t + 1 with the weights of the two frames averaged.
    step_weights = 0.5 * (weights[1:] + weights[:-1])
    carried = step_weights.sum(axis=1)
    airborne = carried < 0.5
    contact_steps = np.sum(step_weights[:, :, None] * (points[1:] - points[:-1]), axis=1) / np.maximum(carried, 1e-9)[:, None]
    root_steps = -contact_steps[:, [0, 2]]
    if airborne.any() and not airborne.all():
        step_index = np.arange(frame_count - 1)
        for axis in range(2):
            root_steps[airborne, axis] = np.interp(step_index[airborne], step_index[~airborne], root_steps[~airborne, axis])
    translation[1:, [0, 2]] = np.cumsum(_gaussian_smooth(root_steps, _VELOCITY_SMOOTHING * fps), axis=0)
    # The root rotates about the pelvis, which therefore sits at its rest position before translation.
    translation[:, [0, 2]] -= rest_skeleton(body_model, betas).joints[JOINT_INDEX["pelvis"], [0, 2]]
    return translation


def join_clips(clips, blend_seconds=0.5):
    """Joins clips into one (T, ...) clip, each consecutive pair cross-faded over `blend_seconds`.

    The cross-fade overlaps the end of one clip with the start of the next, weights following a
    smootherstep, so angles, yaw rate and lift change with continuous velocity and acceleration. A
    blend never takes more than half of either clip. Blended frames are labelled "transition".
    Angles stay inside the joint limits (the limits are a box and a blend is a convex combination).
    """
    if not clips:
        raise InputError("join_clips needs at least one clip.")
    fps = clips[0].fps
    if any(clip.fps != fps for clip in clips):
        raise InputError(f"all clips must have the same fps, got {sorted({clip.fps for clip in clips})}.")
    joined = {field: [getattr(clips[0], field)] for field in _CLIP_SERIES}
    for clip in clips[1:]:
        previous_length = len(joined["angles"][-1])
        overlap = min(int(round(blend_seconds * fps)), previous_length // 2, clip.num_frames // 2)
        if overlap > 0:
            weight = _smootherstep((np.arange(overlap) + 0.5) / overlap)
            for field in _CLIP_SERIES[:-1]:
                tail = joined[field][-1]
                fade = weight.reshape((overlap,) + (1,) * (tail.ndim - 1))
                blended = (1.0 - fade) * tail[-overlap:] + fade * getattr(clip, field)[:overlap]
                joined[field][-1] = tail[:-overlap]
                joined[field].append(blended)
            joined["labels"][-1] = joined["labels"][-1][:-overlap]
            joined["labels"].append(np.full(overlap, TRANSITION_LABEL, dtype=f"<U{_LABEL_WIDTH}"))
        for field in _CLIP_SERIES:
            joined[field].append(getattr(clip, field)[overlap:])
    return MotionClip(fps=fps, **{field: np.concatenate(joined[field]) for field in _CLIP_SERIES})


def place_clip(clip, betas, heading=0.0, body_model=None):
    """A MotionSequence from a clip: the heading integrated from the yaw rate (starting at `heading`
    radians, 0 = facing +z), rotation matrices, and the translation from ground_translation.
    body_model: a BodyModel, by default the synthetic body."""
    body_model = synthetic_body_model() if body_model is None else body_model
    betas = np.asarray(betas, dtype=np.float64)
    if betas.shape != (NUM_BETAS,):
        raise InputError(f"betas must have shape ({NUM_BETAS},), got {betas.shape}.")
    # Heading at frame t: the yaw rates of the frames before it, integrated.
    headings = heading + np.concatenate([[0.0], np.cumsum(clip.yaw_rate[:-1])]) / clip.fps
    rotmats = joint_angles_to_matrix(clip.angles)
    rotmats[:, 0] = _rotation_about(1, headings) @ rotmats[:, 0]
    translation = ground_translation(body_model, betas, rotmats, clip.fps, clip.lift, clip.support, clip.planned)
    return MotionSequence(fps=clip.fps, rotmats=rotmats, translation=translation, betas=betas, labels=clip.labels.copy())


# Ranges that generate_sequence draws each motion's parameters from.
_SPEED_RANGE = (0.8, 1.25)
_AMPLITUDE_RANGE = (0.8, 1.2)
_BLEND_SECONDS_RANGE = (0.4, 0.7)


def random_clip(name, rng, fps, style=DEFAULT_STYLE, skeleton=None):
    """One MotionClip of motion `name` (from MOTION_NAMES) with its parameters (speed, amplitude,
    duration, side, height, depth, turn angle) drawn from rng, a numpy Generator. Gaits are planned
    for `skeleton` (default: the synthetic body, mean shape)."""
    speed = rng.uniform(*_SPEED_RANGE)
    amplitude = rng.uniform(*_AMPLITUDE_RANGE)
    side = ("left", "right")[rng.integers(2)]
    if name == "idle":
        return idle(fps, rng, seconds=rng.uniform(2.0, 5.0), amplitude=amplitude, style=style)
    if name == "walk":
        return walk(fps, steps=int(rng.integers(4, 13)), speed=speed, amplitude=amplitude, style=style, skeleton=skeleton)
    if name == "walk_turn":
        turn_angle = rng.choice((-1.0, 1.0)) * rng.uniform(np.radians(30.0), np.radians(120.0))
        return walk(
            fps, steps=int(rng.integers(6, 13)), speed=speed, amplitude=amplitude, turn_angle=turn_angle, style=style,
            skeleton=skeleton,
        )
    if name == "run":
        return run(fps, steps=int(rng.integers(6, 17)), speed=speed, amplitude=amplitude, style=style, skeleton=skeleton)
    if name == "turn":
        angle = rng.choice((-1.0, 1.0)) * rng.uniform(np.radians(45.0), np.radians(180.0))
        return turn(fps, angle=angle, speed=speed, amplitude=amplitude, style=style)
    if name == "wave":
        return wave(fps, side=side, waves=int(rng.integers(2, 6)), speed=speed, amplitude=amplitude, style=style)
    if name == "reach":
        return reach(fps, side=side, height=rng.uniform(-0.5, 1.0), speed=speed, amplitude=amplitude, style=style)
    if name == "squat":
        return squat(fps, depth=rng.uniform(0.4, 1.0), speed=speed, style=style)
    if name == "sit":
        return sit(fps, seated_seconds=rng.uniform(0.5, 3.0), speed=speed, style=style)
    if name == "bend":
        return bend(fps, depth=rng.uniform(0.4, 1.0), speed=speed, style=style)
    raise InputError(f"unknown motion {name!r}; choose from {', '.join(MOTION_NAMES)}.")


def generate_sequence(seed, num_frames, fps=30.0, motions=None, body_model=None):
    """A random programme of motions and transitions, placed on the ground: a MotionSequence.

    Args:
        seed: an int or a sequence of ints (anything numpy.random.default_rng takes); the same seed
            and arguments give identical arrays.
        num_frames: frames to make (>= 1).
        fps: frame rate; motions keep their timing in seconds at any rate.
        motions: names from MOTION_NAMES to draw from (uniformly, one after another), or None for all.
        body_model: the BodyModel whose feet are kept on the ground; by default the synthetic body.

    The person (betas, style), the initial heading, and every motion's parameters (speed, amplitude,
    duration, side, depth, turn angle) and blend length are drawn from the seed.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise InputError(f"num_frames must be a positive integer, got {num_frames!r}.")
    _check_positive("fps", fps)
    motions = MOTION_NAMES if motions is None else tuple(motions)
    unknown = [name for name in motions if name not in MOTION_NAMES]
    if not motions or unknown:
        raise InputError(f"motions must be a non-empty selection of {', '.join(MOTION_NAMES)}; got {list(motions)}.")

    rng = np.random.default_rng(seed)
    betas = random_betas(rng)
    style = random_style(rng)
    heading = rng.uniform(0.0, 2.0 * np.pi)
    blend_seconds = rng.uniform(*_BLEND_SECONDS_RANGE)
    body_model = synthetic_body_model() if body_model is None else body_model
    skeleton = rest_skeleton(body_model, betas)
    clips, frame_count = [], 0
    # Each join overlaps at most this many frames; stop once the joined clip is long enough.
    overlap = int(round(blend_seconds * fps))
    while not clips or frame_count - (len(clips) - 1) * overlap < num_frames:
        clip = random_clip(motions[rng.integers(len(motions))], rng, fps, style, skeleton)
        clips.append(clip)
        frame_count += clip.num_frames
    joined = join_clips(clips, blend_seconds)
    trimmed = MotionClip(
        fps=joined.fps, **{field: getattr(joined, field)[:num_frames] for field in _CLIP_SERIES}
    )
    return place_clip(trimmed, betas, heading=heading, body_model=body_model)

"""The AMASS reader: files written here in AMASS's format (SMPL-H 156 and SMPL 72 pose widths, both
frame-rate key spellings) read back to the sequences they were made from, z-up turned y-up,
resampling, and clear errors that name the file."""

import numpy as np
import pytest

from fasthmr_model.body.rotations import matrix_to_axis_angle
from fasthmr_model.body.skeleton import JOINT_INDEX
from fasthmr_model.data import amass, motion
from fasthmr_model.errors import InputError

# Our y-up world -> AMASS's z-up world: +90 degrees about x, (x, y, z) -> (x, -z, y). Written out
# here rather than taken from the reader, so the test checks the reader's convention.
WORLD_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@pytest.fixture(scope="module")
def body():
    return motion.synthetic_body_model()


@pytest.fixture(scope="module")
def sequence():
    """A generated y-up sequence whose hand joints are still (so a 156-wide file can hold it)."""
    return motion.generate_sequence(8, 90, fps=60.0)


def _amass_arrays(sequence, width, rate_key="mocap_framerate", betas_count=16):
    """The arrays of an AMASS file holding `sequence`, in AMASS's z-up world."""
    rest_pelvis = motion.rest_skeleton(None, sequence.betas).joints[JOINT_INDEX["pelvis"]]
    rotmats = sequence.rotmats.copy()
    rotmats[:, 0] = WORLD_TO_Z_UP @ rotmats[:, 0]
    # The body turns about its pelvis, so the pelvis position (rest pelvis + trans) turns with the world.
    trans = (sequence.translation + rest_pelvis) @ WORLD_TO_Z_UP.T - rest_pelvis
    frame_count = sequence.num_frames
    poses = np.zeros((frame_count, width))
    joints = 24 if width == 72 else 22
    poses[:, : 3 * joints] = matrix_to_axis_angle(rotmats[:, :joints]).reshape(frame_count, -1)
    betas = np.concatenate([sequence.betas, np.linspace(0.1, 0.6, betas_count - 10)])
    return {"poses": poses, "trans": trans, "betas": betas, rate_key: np.array(sequence.fps), "gender": np.array("female")}


def _write(path, arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "width, rate_key", [(156, "mocap_framerate"), (72, "mocap_frame_rate"), (165, "mocap_frame_rate")]
)
def test_round_trip_through_an_amass_file(tmp_path, sequence, width, rate_key):
    path = _write(tmp_path / "clip.npz", _amass_arrays(sequence, width, rate_key))
    read = amass.read_amass(path)
    assert read.fps == sequence.fps
    assert read.gender == "female"
    np.testing.assert_allclose(read.betas, sequence.betas)
    np.testing.assert_allclose(read.rotmats, sequence.rotmats, atol=1e-9)
    np.testing.assert_allclose(read.translation, sequence.translation, atol=1e-9)
    assert set(read.labels) == {amass.MOCAP_LABEL}


def test_smplh_hand_joints_become_identity_and_hand_poses_are_ignored(tmp_path, sequence):
    arrays = _amass_arrays(sequence, 156)
    arrays["poses"][:, 66:] = 0.7  # finger rotations, which SMPL's body has no joints for
    read = amass.read_amass(_write(tmp_path / "hands.npz", arrays))
    np.testing.assert_allclose(read.rotmats[:, 22:], np.broadcast_to(np.eye(3), read.rotmats[:, 22:].shape), atol=1e-12)


def test_a_standing_z_up_pose_stands_up_in_our_y_up_world(tmp_path, body):
    # In AMASS a person standing upright has the root turned +90 degrees about x, facing -y.
    frame_count = 3
    poses = np.zeros((frame_count, 156))
    poses[:, 0] = np.pi / 2
    trans = np.tile([0.4, -1.5, 0.9], (frame_count, 1))
    path = _write(tmp_path / "standing.npz", {"poses": poses, "trans": trans, "betas": np.zeros(16), "mocap_frame_rate": 120.0})
    read = amass.read_amass(path)
    np.testing.assert_allclose(read.rotmats[:, 0], np.broadcast_to(np.eye(3), (frame_count, 3, 3)), atol=1e-12)
    _, joints = body.forward(np.zeros((frame_count, 10)), read.rotmats, read.translation, with_vertices=False)
    pelvis, head = joints[0, JOINT_INDEX["pelvis"]], joints[0, JOINT_INDEX["head"]]
    assert head[1] > pelvis[1] + 0.4
    # AMASS's pelvis at (x, y, z) = rest pelvis + trans lands at (x, z, -y).
    rest_pelvis = motion.rest_skeleton().joints[JOINT_INDEX["pelvis"]]
    x, y, z = rest_pelvis + trans[0]
    np.testing.assert_allclose(pelvis, [x, z, -y], atol=1e-12)
    # The toes point forward, +z, as in the body's rest frame; the left side is +x.
    assert joints[0, JOINT_INDEX["left_foot"], 2] > joints[0, JOINT_INDEX["left_ankle"], 2]
    assert joints[0, JOINT_INDEX["left_hip"], 0] > joints[0, JOINT_INDEX["right_hip"], 0]
    assert read.gender == "neutral"


def test_resampling_to_a_target_frame_rate(tmp_path, sequence):
    path = _write(tmp_path / "clip.npz", _amass_arrays(sequence, 156))
    read = amass.read_amass(path, target_fps=30.0)
    assert read.fps == 30.0
    assert read.num_frames == (sequence.num_frames - 1) // 2 + 1
    np.testing.assert_allclose(read.rotmats, sequence.rotmats[::2], atol=1e-9)
    np.testing.assert_allclose(read.translation, sequence.translation[::2], atol=1e-9)
    upsampled = amass.read_amass(path, target_fps=120.0)
    assert upsampled.num_frames == 2 * sequence.num_frames - 1
    np.testing.assert_allclose(upsampled.translation[1], sequence.translation[:2].mean(axis=0), atol=1e-12)
    angle = np.linalg.norm(matrix_to_axis_angle(upsampled.rotmats[1, 0] @ upsampled.rotmats[0, 0].T))
    full = np.linalg.norm(matrix_to_axis_angle(sequence.rotmats[1, 0] @ sequence.rotmats[0, 0].T))
    np.testing.assert_allclose(angle, full / 2.0, atol=1e-9)


def test_ten_betas_and_byte_string_gender_are_accepted(tmp_path, sequence):
    arrays = _amass_arrays(sequence, 72, betas_count=10)
    arrays["gender"] = np.array(b"male")
    read = amass.read_amass(_write(tmp_path / "ten.npz", arrays))
    np.testing.assert_allclose(read.betas, sequence.betas)
    assert read.gender == "male"


def _broken(arrays, change):
    arrays = dict(arrays)
    change(arrays)
    return arrays


BROKEN_FILES = {
    "no poses": (lambda a: a.pop("poses"), "'poses'"),
    "no trans": (lambda a: a.pop("trans"), "'trans'"),
    "no betas": (lambda a: a.pop("betas"), "'betas'"),
    "no frame rate": (lambda a: a.pop("mocap_framerate"), "frame rate"),
    "pose width": (lambda a: a.update(poses=a["poses"][:, :99]), "99"),
    "trans frames": (lambda a: a.update(trans=a["trans"][:-1]), "'trans'"),
    "trans columns": (lambda a: a.update(trans=a["trans"][:, :2]), "'trans'"),
    "few betas": (lambda a: a.update(betas=a["betas"][:8]), "'betas'"),
    "nan pose": (lambda a: a["poses"].__setitem__((3, 5), np.nan), "NaN"),
    "infinite trans": (lambda a: a["trans"].__setitem__((0, 1), np.inf), "NaN or infinite"),
    "zero frame rate": (lambda a: a.update(mocap_framerate=np.array(0.0)), "positive"),
    "text poses": (lambda a: a.update(poses=np.array(["a", "b"])), "numeric"),
    "unknown gender": (lambda a: a.update(gender=np.array("robot")), "gender"),
    "pickled gender": (lambda a: a.update(gender=np.array(["male", None], dtype=object)), "pickled"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_FILES))
def test_malformed_files_raise_input_errors_naming_the_file(tmp_path, sequence, case):
    change, message = BROKEN_FILES[case]
    arrays = _broken({key: np.array(value) for key, value in _amass_arrays(sequence, 156).items()}, change)
    path = tmp_path / f"{case.replace(' ', '_')}.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=message) as raised:
        amass.read_amass(path)
    assert str(path) in str(raised.value)


def test_missing_and_unreadable_files_raise_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        amass.read_amass(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip archive")
    with pytest.raises(InputError, match="garbage.npz"):
        amass.read_amass(garbage)

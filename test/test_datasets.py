"""3DPW and EMDB readers, on files written here in exactly the datasets' layouts (the datasets are not here).

Each file holds a generated motion in a world frame and a moving camera's world -> camera extrinsics; the
reader's camera-frame parameters, posed on the body model, must give the world joints seen by that camera.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fasthmr_model.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from fasthmr_model.data import motion
from fasthmr_model.data.datasets import read_3dpw, read_emdb
from fasthmr_model.data.render import instance_mask
from fasthmr_model.errors import InputError

FRAMES = 12
K = np.array([[1000.0, 0.0, 540.0], [0.0, 1000.0, 960.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def body():
    return motion.synthetic_body_model()


def moving_camera(frames: int) -> np.ndarray:
    """(frames, 4, 4) world -> camera: a camera 4 m in front of the origin, panning and rising a little.
    The camera looks along its +z with y down; the world is y-up."""
    extrinsics = np.zeros((frames, 4, 4))
    for index in range(frames):
        yaw = 0.02 * index
        flip = np.diag([1.0, -1.0, -1.0])  # world y-up, camera looking at the origin from +z
        rotation = flip @ axis_angle_to_matrix(np.array([0.0, yaw, 0.0]))
        extrinsics[index, :3, :3] = rotation
        extrinsics[index, :3, 3] = -rotation @ np.array([0.3 * np.sin(yaw), 1.0 + 0.01 * index, 4.0])
        extrinsics[index, 3, 3] = 1.0
    return extrinsics


def world_people(seed: int):
    sequence = motion.generate_sequence(seed, FRAMES)
    poses = matrix_to_axis_angle(sequence.rotmats).reshape(FRAMES, 72)
    return sequence, poses


def camera_joints(body, sequence, extrinsics):
    """The ground truth: world joints moved by the extrinsics (N, 24, 3)."""
    _, joints = body.forward(np.repeat(sequence.betas[None], FRAMES, 0), sequence.rotmats, sequence.translation,
                             with_vertices=False)
    return np.einsum("nij,nkj->nki", extrinsics[:, :3, :3], joints) + extrinsics[:, None, :3, 3]


def posed_joints(body, people):
    _, joints = body.forward(np.stack([p.betas for p in people]), np.stack([p.rotmats for p in people]),
                             np.stack([p.translation for p in people]), with_vertices=False)
    return joints


def write_3dpw(path, body, valid_second):
    """A two-actor 3DPW sequence file, pickled as the dataset's (protocol 2, Python 2 era)."""
    extrinsics = moving_camera(FRAMES)
    actors = [world_people(seed) for seed in (1, 2)]
    content = {
        "sequence": "courtyard_synthetic_00",
        "poses": [poses for _, poses in actors],
        "trans": [sequence.translation for sequence, _ in actors],
        # 3DPW stores more coefficients than SMPL's 10 for some actors; the reader keeps the first 10.
        "betas": [actors[0][0].betas, np.concatenate([actors[1][0].betas, np.zeros(290)])],
        "genders": ["m", "f"],
        "campose_valid": [np.ones(FRAMES, bool), valid_second],
        "cam_poses": extrinsics,
        "cam_intrinsics": K,
        "poses2d": [np.zeros((FRAMES, 3, 18))] * 2,
        "img_frame_ids": np.arange(FRAMES),
    }
    with open(path, "wb") as stream:
        pickle.dump(content, stream, protocol=2)
    return actors, extrinsics


def test_3dpw_people_are_in_the_camera_frame(tmp_path, body):
    valid_second = np.arange(FRAMES) % 3 != 0
    actors, extrinsics = write_3dpw(tmp_path / "courtyard_synthetic_00.pkl", body, valid_second)
    sequence = read_3dpw(tmp_path / "courtyard_synthetic_00.pkl", tmp_path / "images", body)
    assert sequence.name == "courtyard_synthetic_00" and sequence.fps == 30.0 and len(sequence.frames) == FRAMES
    np.testing.assert_array_equal(sequence.intrinsics, K)
    assert sequence.frames[4].image_path == tmp_path / "images" / "image_00004.jpg"
    truth = [camera_joints(body, world, extrinsics) for world, _ in actors]
    for frame in sequence.frames:
        ids = [person.track_id for person in frame.people]
        assert ids == ([0, 1] if valid_second[frame.index] else [0])
        joints = posed_joints(body, frame.people)
        for person, posed in zip(frame.people, joints):
            np.testing.assert_allclose(posed, truth[person.track_id][frame.index], atol=1e-9)
    assert [p.gender for p in sequence.frames[1].people] == ["male", "female"]


def test_emdb_person_is_in_the_camera_frame_and_bad_frames_are_empty(tmp_path, body):
    world, poses = world_people(3)
    extrinsics = moving_camera(FRAMES)
    good = np.arange(FRAMES) >= 2
    folder = tmp_path / "P9" / "99_synthetic_walk"
    folder.mkdir(parents=True)
    content = {
        "gender": "female", "name": "P9_99_synthetic_walk", "emdb1": True, "emdb2": False, "n_frames": FRAMES,
        "good_frames_mask": good,
        "camera": {"intrinsics": K, "extrinsics": extrinsics, "width": 1080, "height": 1920},
        "smpl": {"poses_root": poses[:, :3], "poses_body": poses[:, 3:], "trans": world.translation,
                 "betas": world.betas},
        "kp2d": np.zeros((FRAMES, 24, 3)),
        "bboxes": {"bboxes": np.zeros((FRAMES, 4)), "invalid_idxs": np.flatnonzero(~good)},
    }
    with open(folder / "P9_99_synthetic_walk_data.pkl", "wb") as stream:
        pickle.dump(content, stream)
    sequence = read_emdb(folder / "P9_99_synthetic_walk_data.pkl", body)
    assert (sequence.width, sequence.height) == (1080, 1920)
    assert sequence.frames[3].image_path == folder / "images" / "00003.jpg"
    assert [len(frame.people) for frame in sequence.frames] == [0, 0] + [1] * (FRAMES - 2)
    truth = camera_joints(body, world, extrinsics)
    for frame in sequence.frames[2:]:
        np.testing.assert_allclose(posed_joints(body, frame.people)[0], truth[frame.index], atol=1e-9)


def test_masks_from_meshes_follow_depth_order(body):
    """Two people, the nearer one in front: its pixels win wherever they overlap."""
    rotmats = np.repeat(np.eye(3)[None, None], 2, 0).repeat(24, 1)
    rotmats[:, 0] = np.diag([1.0, -1.0, -1.0])  # upright, facing the camera (y down)
    vertices, _ = body.forward(np.zeros((2, 10)), rotmats, np.array([[0.0, 0.0, 5.0], [0.15, 0.0, 3.0]]))
    mask = instance_mask(vertices, body.faces, np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]]), 320, 240)
    far_alone = instance_mask(vertices[:1], body.faces, np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]]),
                              320, 240)
    assert set(np.unique(mask)) == {0, 1, 2}
    overlap = (far_alone == 1) & (mask != 1)
    assert overlap.any() and np.all(mask[overlap] == 2)


@pytest.mark.parametrize("damage, message", [
    (lambda c: c.pop("cam_poses"), "has no 'cam_poses'"),
    (lambda c: c.update(poses=[c["poses"][0][:, :69], c["poses"][1]]), "has shape (12, 69), expected (12, 72)"),
    (lambda c: c["trans"][0].__setitem__((0, 0), np.nan), "NaN"),
    (lambda c: c.update(genders=["x", "f"]), "gender 'x'"),
])
def test_broken_3dpw_files_say_what_is_wrong(tmp_path, body, damage, message):
    path = tmp_path / "seq.pkl"
    write_3dpw(path, body, np.ones(FRAMES, bool))
    with open(path, "rb") as stream:
        content = pickle.load(stream)
    damage(content)
    with open(path, "wb") as stream:
        pickle.dump(content, stream, protocol=2)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_3dpw(path, tmp_path, body)


class Payload:
    def __reduce__(self):
        return (print, ("this pickle ran code",))


def test_pickles_that_would_run_code_are_refused(tmp_path, body, capsys):
    path = tmp_path / "hostile_data.pkl"
    with open(path, "wb") as stream:
        pickle.dump({"camera": Payload()}, stream)
    with pytest.raises(InputError, match="refusing to load builtins.print"):
        read_emdb(path, body)
    assert "ran code" not in capsys.readouterr().out
    with pytest.raises(InputError, match="does not exist"):
        read_emdb(tmp_path / "missing_data.pkl", body)

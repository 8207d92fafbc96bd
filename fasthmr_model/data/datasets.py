"""Readers of the public 3DPW and EMDB annotation files, in their documented layouts, into one form:
per image frame, each person's SMPL parameters in the camera frame.

3DPW (sequenceFiles/{train,validation,test}/SEQUENCE.pkl, a Python 2 pickle; images in
imageFiles/SEQUENCE/image_00000.jpg, 30 frames/s). Per actor lists: `poses` (N, 72) axis-angle and
`trans` (N, 3) in the world frame, aligned with the N image frames; `betas` (10 or more,); `genders` 'm'/'f';
`campose_valid` (N,) which frames have an aligned camera. Per frame: `cam_poses` (N, 4, 4) world -> camera;
`cam_intrinsics` (3, 3) K.

EMDB (P*/SEQUENCE/P*_SEQUENCE_data.pkl; images in P*/SEQUENCE/images/00000.jpg, 30 frames/s). One person:
`smpl` {`poses_root` (N, 3), `poses_body` (N, 69), `trans` (N, 3) world frame, `betas` (10,)}, `gender`,
`good_frames_mask` (N,) frames where the person is visible enough to evaluate; `camera` {`intrinsics` (3, 3),
`extrinsics` (N, 4, 4) world -> camera, `width`, `height`}; `n_frames`, `name`.

Both datasets fit gendered SMPL bodies, so their parameters are moved into the camera frame about the rest
pelvis of the body model they will be posed on (body.lbs.move_body); pose them on the matching gendered SMPL
file for exact ground truth. Frames a dataset marks invalid keep their image but list no person.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fasthmr_model.body.lbs import BodyModel, move_body
from fasthmr_model.body.rotations import axis_angle_to_matrix
from fasthmr_model.body.skeleton import NUM_BETAS, NUM_JOINTS
from fasthmr_model.errors import InputError
from fasthmr_model.pickles import load_numpy_pickle

DATASET_FPS = 30.0  # both datasets' image rate
GENDERS = {"m": "male", "male": "male", "f": "female", "female": "female", "n": "neutral", "neutral": "neutral"}


@dataclass(frozen=True)
class DatasetPerson:
    """One person in one frame: track_id (stable over the sequence), gender ('male', 'female', 'neutral'),
    betas (10,), rotmats (24, 3, 3) with the global orientation in the camera frame, translation (3,) the
    body model's transl in the camera frame (metres)."""

    track_id: int
    gender: str
    betas: np.ndarray
    rotmats: np.ndarray
    translation: np.ndarray


@dataclass(frozen=True)
class DatasetFrame:
    """index: the frame number; image_path: its image file; people: DatasetPerson, possibly none."""

    index: int
    image_path: Path
    people: tuple


@dataclass(frozen=True)
class DatasetSequence:
    """name; fps; intrinsics (3, 3) K; width, height (None when the file does not say: read the images);
    frames in order."""

    name: str
    fps: float
    intrinsics: np.ndarray
    width: int | None
    height: int | None
    frames: tuple


def _load(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputError(f"the {what} file {path} does not exist")
    try:
        content = load_numpy_pickle(path)
    except Exception as error:  # corrupt, truncated or hostile pickles fail in many ways
        raise InputError(f"cannot read the {what} file {path} ({type(error).__name__}: {error}); "
                         f"it must be the dataset's original .pkl") from None
    if not isinstance(content, dict):
        raise InputError(f"the {what} file {path} holds a {type(content).__name__}, not the dataset's dict")
    return content


def _array(path: Path, content: dict, key: str, shape: tuple, what: str) -> np.ndarray:
    """content[key] as finite float64 of `shape` (None entries match any size)."""
    if key not in content:
        raise InputError(f"the {what} file {path} has no '{key}' (it has {', '.join(sorted(map(str, content)))})")
    try:
        array = np.asarray(content[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"'{key}' in the {what} file {path} is not numeric") from None
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        expected = "(" + ", ".join("N" if want is None else str(want) for want in shape) + ")"
        raise InputError(f"'{key}' in the {what} file {path} has shape {array.shape}, expected {expected}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"'{key}' in the {what} file {path} contains NaN or infinite values")
    return array


def _gender(path: Path, value, what: str) -> str:
    text = value.decode() if isinstance(value, bytes) else str(value)
    if text.strip().lower() not in GENDERS:
        raise InputError(f"the {what} file {path} names gender {value!r}; expected one of {sorted(set(GENDERS))}")
    return GENDERS[text.strip().lower()]


def _camera_people(poses: np.ndarray, trans: np.ndarray, betas: np.ndarray, extrinsics: np.ndarray,
                   body_model: BodyModel) -> tuple[np.ndarray, np.ndarray]:
    """World-frame poses (N, 72), trans (N, 3), betas (10,), extrinsics (N, 4, 4) -> camera-frame
    rotmats (N, 24, 3, 3) and transl (N, 3)."""
    rotmats = axis_angle_to_matrix(poses.reshape(len(poses), NUM_JOINTS, 3))
    rest_pelvis = body_model.rest_joints(betas[None])[0, 0]
    rotmats[:, 0], transl = move_body(extrinsics[:, :3, :3], extrinsics[:, :3, 3], rotmats[:, 0], trans, rest_pelvis)
    return rotmats, transl


def read_3dpw(sequence_file, images, body_model: BodyModel) -> DatasetSequence:
    """A 3DPW sequence .pkl and its image folder (imageFiles/SEQUENCE) -> DatasetSequence.

    Raises InputError naming the file and the key for a missing or unreadable file, missing keys, arrays
    of the wrong shape, non-finite values or an unknown gender.
    """
    path, what = Path(sequence_file), "3DPW sequence"
    content = _load(path, what)
    name = str(content.get("sequence", path.stem))
    extrinsics = _array(path, content, "cam_poses", (None, 4, 4), what)
    frame_count = len(extrinsics)
    intrinsics = _array(path, content, "cam_intrinsics", (3, 3), what)
    for key in ("poses", "trans", "betas", "campose_valid"):
        if not isinstance(content.get(key), (list, tuple)) or not content[key]:
            raise InputError(f"'{key}' in the {what} file {path} must be a list with one entry per actor")
    actors = len(content["poses"])
    genders = content.get("genders", ["neutral"] * actors)
    per_actor = []
    for actor in range(actors):
        entry = {key: content[key][actor] for key in ("poses", "trans", "betas", "campose_valid")}
        poses = _array(path, entry, "poses", (frame_count, 3 * NUM_JOINTS), f"{what} (actor {actor})")
        trans = _array(path, entry, "trans", (frame_count, 3), f"{what} (actor {actor})")
        betas = _array(path, entry, "betas", (None,), f"{what} (actor {actor})")
        if len(betas) < NUM_BETAS:
            raise InputError(f"'betas' of actor {actor} in the {what} file {path} has {len(betas)} values, "
                             f"expected at least {NUM_BETAS}")
        valid = _array(path, entry, "campose_valid", (frame_count,), f"{what} (actor {actor})") > 0
        rotmats, transl = _camera_people(poses, trans, betas[:NUM_BETAS], extrinsics, body_model)
        per_actor.append((_gender(path, genders[actor], what), betas[:NUM_BETAS], rotmats, transl, valid))
    images = Path(images)
    frames = tuple(
        DatasetFrame(index, images / f"image_{index:05d}.jpg", tuple(
            DatasetPerson(actor, gender, betas, rotmats[index], transl[index])
            for actor, (gender, betas, rotmats, transl, valid) in enumerate(per_actor) if valid[index]))
        for index in range(frame_count))
    return DatasetSequence(name, DATASET_FPS, intrinsics, None, None, frames)


def read_emdb(data_file, body_model: BodyModel, images=None) -> DatasetSequence:
    """An EMDB P*_SEQUENCE_data.pkl (and its image folder, default: `images` beside it) -> DatasetSequence.

    Raises InputError as read_3dpw does.
    """
    path, what = Path(data_file), "EMDB data"
    content = _load(path, what)
    for key in ("smpl", "camera"):
        if not isinstance(content.get(key), dict):
            raise InputError(f"the {what} file {path} has no '{key}' dict")
    smpl, camera = content["smpl"], content["camera"]
    extrinsics = _array(path, camera, "extrinsics", (None, 4, 4), f"{what} (camera)")
    frame_count = len(extrinsics)
    intrinsics = _array(path, camera, "intrinsics", (3, 3), f"{what} (camera)")
    root = _array(path, smpl, "poses_root", (frame_count, 3), f"{what} (smpl)")
    body = _array(path, smpl, "poses_body", (frame_count, 69), f"{what} (smpl)")
    trans = _array(path, smpl, "trans", (frame_count, 3), f"{what} (smpl)")
    betas = _array(path, smpl, "betas", (None,), f"{what} (smpl)").reshape(-1)[:NUM_BETAS]
    if len(betas) != NUM_BETAS:
        raise InputError(f"'betas' in the {what} file {path} has fewer than {NUM_BETAS} values")
    good = _array(path, content, "good_frames_mask", (frame_count,), what) > 0
    gender = _gender(path, content.get("gender", "neutral"), what)
    rotmats, transl = _camera_people(np.concatenate([root, body], axis=1), trans, betas, extrinsics, body_model)
    images = Path(images) if images is not None else path.parent / "images"
    frames = tuple(
        DatasetFrame(index, images / f"{index:05d}.jpg",
                     (DatasetPerson(0, gender, betas, rotmats[index], transl[index]),) if good[index] else ())
        for index in range(frame_count))
    size = [camera.get(key) for key in ("width", "height")]
    width, height = (int(size[0]), int(size[1])) if all(value is not None for value in size) else (None, None)
    return DatasetSequence(str(content.get("name", path.stem)), DATASET_FPS, intrinsics, width, height, frames)

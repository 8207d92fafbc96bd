"""The synthetic world's fixed splits: seeds -> rendered frames -> encoder crops with ground truth, on disk.

Every split is a set of person crops made by the run-time preprocessing (`fasthmr_model.data.crop`) from
full 640x480 renders of robot-camera scenes, so training and evaluation see exactly what the node sees.
Frame splits draw poses from a split-private pool of generated motion sequences (different seeds per
split, so no test pose or motion programme is seen in training). The test split is only evaluated, never
trained or tuned on. A split is cached once as memory-mapped .npy files in `<cache>/<name>/` (written in a
staging folder and renamed, so a half-built split never looks complete) and never committed.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.skeleton import NUM_BETAS, NUM_JOINTS
from fasthmr_model.data.crop import PreprocessConfig, prepare_persons
from fasthmr_model.errors import FastHMRError
from fasthmr_model.staging import move_into_place, staging_folder
from fasthmr_model.encoder.config import IMAGE_HEIGHT, IMAGE_WIDTH, NUM_TOKENS

FRAME_WIDTH, FRAME_HEIGHT = 640, 480
PEOPLE_PER_FRAME = (1, 2, 3)
PEOPLE_PROBABILITIES = (0.5, 0.3, 0.2)
MOTION_FPS = 30.0
SPLIT_FORMAT_VERSION = 1
CHUNK_FRAMES = 200

# field -> (per-crop shape, dtype). windows are rounded to uint8 (<= 0.5 levels from the float crop).
CROP_FIELDS = {
    "windows": ((IMAGE_HEIGHT, IMAGE_WIDTH, 3), np.uint8),
    "person_tokens": ((NUM_TOKENS,), np.uint8),
    "rotmats": ((NUM_JOINTS, 3, 3), np.float32),  # camera-frame global orientation first
    "betas": ((NUM_BETAS,), np.float32),
    "translation": ((3,), np.float32),            # body model transl, camera frame
    "joints_3d": ((NUM_JOINTS, 3), np.float32),   # camera frame, metres
    "joints_2d": ((NUM_JOINTS, 2), np.float32),   # crop-normalised: (pixel - crop centre) / crop side
    "joint_visible": ((NUM_JOINTS,), np.bool_),
    "crop_boxes": ((3,), np.float32),
    "frame_index": ((), np.int64),
    "instance_id": ((), np.int64),
}


@dataclass(frozen=True)
class FrameSplit:
    """A fixed split: `frames` rendered frames from `seed`, poses from `motion_sequences` generated sequences
    of `motion_frames` frames each."""

    name: str
    seed: int
    frames: int
    motion_sequences: int
    motion_frames: int = 300


SPLITS = {
    "train": FrameSplit("train", seed=1_000, frames=24_000, motion_sequences=96),
    "val": FrameSplit("val", seed=2_000, frames=600, motion_sequences=16),
    "test": FrameSplit("test", seed=3_000, frames=1_000, motion_sequences=24),
}


def default_cache() -> Path:
    """Where splits are cached unless told otherwise: $XDG_CACHE_HOME/fasthmr/world (~/.cache/...)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fasthmr" / "world"


def synthetic_body_path(cache: Path) -> Path:
    """The synthetic body the splits in `cache` are posed with, written there once."""
    path = Path(cache) / "synthetic_body.npz"
    if not path.is_file():
        from fasthmr_model.body.synthetic import write_synthetic_body

        write_synthetic_body(path)
    return path


def split(name: str) -> FrameSplit:
    try:
        return SPLITS[name]
    except KeyError:
        raise FastHMRError(f"unknown split {name!r}; the splits are {sorted(SPLITS)}") from None


def motion_pool(spec: FrameSplit, body_model: BodyModel) -> list:
    """The split's generated motion sequences (deterministic in the split's seed)."""
    from fasthmr_model.data.motion import generate_sequence

    return [generate_sequence([spec.seed, 1, k], spec.motion_frames, MOTION_FPS, body_model=body_model)
            for k in range(spec.motion_sequences)]


def render_frame(spec: FrameSplit, index: int, body_model: BodyModel, pool: list):
    """Frame `index` of the split: 1-3 people posed from the pool, a sampled robot scene, rendered."""
    from fasthmr_model.data.render import PosedBody, render_scene, sample_scene

    rng = np.random.default_rng([spec.seed, 2, index])
    count = int(rng.choice(PEOPLE_PER_FRAME, p=PEOPLE_PROBABILITIES))
    bodies = []
    for _ in range(count):
        sequence = pool[int(rng.integers(len(pool)))]
        frame = int(rng.integers(sequence.num_frames))
        bodies.append(PosedBody(betas=sequence.betas, rotmats=sequence.rotmats[frame]))
    scene = sample_scene([spec.seed, 3, index], body_model, bodies, FRAME_WIDTH, FRAME_HEIGHT)
    return render_scene(scene, body_model)


def frame_crops(frame, frame_index: int, preprocess: PreprocessConfig = PreprocessConfig()) -> dict[str, np.ndarray]:
    """The crops of one rendered frame (through the run-time preprocessing) with their ground truth."""
    crops = prepare_persons(frame.image, frame.instance_mask, preprocess)
    truth = {person.instance_id: person for person in frame.people}
    rows = []
    for instance_id, crop_box, window, tokens in zip(crops.ids, crops.crop_boxes, crops.windows, crops.person_tokens):
        person = truth[int(instance_id)]
        rows.append({
            "windows": np.clip(np.round(window), 0, 255).astype(np.uint8),
            "person_tokens": tokens.astype(np.uint8),
            "rotmats": person.rotmats, "betas": person.betas, "translation": person.translation,
            "joints_3d": person.joints_3d,
            "joints_2d": (person.joints_2d - crop_box[:2]) / crop_box[2],
            "joint_visible": person.joint_visible, "crop_boxes": crop_box,
            "frame_index": frame_index, "instance_id": instance_id,
        })
    return {field: np.array([row[field] for row in rows], dtype).reshape((len(rows),) + shape)
            for field, (shape, dtype) in CROP_FIELDS.items()}


_WORKER_STATE: dict = {}


def _worker_start(spec: FrameSplit, body_model_path: str) -> None:
    body_model = BodyModel.from_file(body_model_path)
    _WORKER_STATE.update(spec=spec, body=body_model, pool=motion_pool(spec, body_model))


def _worker_chunk(frame_range: tuple[int, int]) -> dict[str, np.ndarray]:
    state = _WORKER_STATE
    parts = [frame_crops(render_frame(state["spec"], index, state["body"], state["pool"]), index)
             for index in range(*frame_range)]
    return {field: np.concatenate([part[field] for part in parts]) for field in CROP_FIELDS}


def build_split(name: str, cache: Path, body_model_path: Path, workers: int = 2, frames: int | None = None,
                progress: bool = True) -> Path:
    """Render split `name` into `cache/name` (skipped when it is already there); returns the folder.

    frames: build only the first `frames` frames (tests and smoke runs), in `cache/name-firstN`.
    """
    spec = split(name)
    frames = spec.frames if frames is None else min(frames, spec.frames)
    # A partial build never replaces (or passes for) the whole split.
    out = Path(cache) / (name if frames == spec.frames else f"{name}-first{frames}")
    if (out / "split.json").is_file():
        recorded = json.loads((out / "split.json").read_text())
        if recorded.get("frames") == frames and recorded.get("format_version") == SPLIT_FORMAT_VERSION:
            return out
        shutil.rmtree(out)
    ranges = [(start, min(start + CHUNK_FRAMES, frames)) for start in range(0, frames, CHUNK_FRAMES)]
    return render_crop_cache(out, name, ranges, _worker_start, (spec, str(body_model_path)), _worker_chunk, workers,
                             progress, {**asdict(spec), "frames": frames, "format_version": SPLIT_FORMAT_VERSION})


def render_crop_cache(out: Path, label: str, items: list, worker_start, start_arguments: tuple, worker, workers: int,
                      progress: bool, metadata: dict) -> Path:
    """Renders `items` with `worker` (each returns a dict of CROP_FIELDS arrays) in `workers` spawned processes
    set up by worker_start(*start_arguments) (or in this process for workers <= 1), and writes the crops,
    in item order, as one memory-mapped .npy per field plus split.json (metadata and the crop count) at `out`:
    built in a staging folder and renamed into place, so an interrupted build leaves nothing."""
    from tqdm import tqdm

    staging = staging_folder(out)  # beside out: a killed build's is removed by the next one
    # One BLAS thread per worker: the renderer's small matrix products slow each other down otherwise.
    previous = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        chunk_files = []
        with contextlib.ExitStack() as stack:
            if workers > 1:
                pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers, worker_start,
                                                                                     start_arguments))
                chunks = pool.imap(worker, items)
            else:  # in this process (tests, small builds)
                worker_start(*start_arguments)
                chunks = map(worker, items)
            for number, chunk in enumerate(tqdm(chunks, total=len(items), disable=not progress,
                                                desc=f"render {label}")):
                path = staging / f"chunk{number:05d}.npz"
                np.savez(path, **chunk)
                chunk_files.append(path)
        _merge_chunks(chunk_files, staging)
        (staging / "split.json").write_text(json.dumps(
            {**metadata, "crops": int(np.load(staging / "frame_index.npy", mmap_mode="r").shape[0])}, indent=2))
        move_into_place(staging, out, overwrite=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if previous is None:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = previous
    return out


def _merge_chunks(chunk_files: list[Path], folder: Path) -> None:
    """Concatenate the chunk files field by field into one .npy per field, then delete the chunks."""
    counts = [int(np.load(path)["frame_index"].shape[0]) for path in chunk_files]
    for field, (shape, dtype) in CROP_FIELDS.items():
        merged = np.lib.format.open_memmap(folder / f"{field}.npy", mode="w+", dtype=dtype, shape=(sum(counts),) + shape)
        start = 0
        for path, count in zip(chunk_files, counts):
            merged[start:start + count] = np.load(path)[field]
            start += count
        merged.flush()
        del merged
    for path in chunk_files:
        path.unlink()


@dataclass(frozen=True)
class CropSet:
    """A split's crops as read-only memory maps, one array per CROP_FIELDS entry, first axis = crop."""

    folder: Path
    arrays: dict

    def __len__(self) -> int:
        return int(self.arrays["frame_index"].shape[0])

    @property
    def split_name(self) -> str:
        return json.loads((self.folder / "split.json").read_text())["name"]

    def __getattr__(self, field: str) -> np.ndarray:
        try:
            return self.__dict__["arrays"][field]
        except KeyError:
            raise AttributeError(field) from None


def load_crop_set(folder: Path) -> CropSet:
    """Open a built split; FastHMRError saying how to build it when it is missing or incomplete."""
    folder = Path(folder)
    if not (folder / "split.json").is_file():
        raise FastHMRError(f"{folder} is not a built split; build it with `fasthmr world build --split NAME`")
    return CropSet(folder, {field: np.load(folder / f"{field}.npy", mmap_mode="r") for field in CROP_FIELDS})

"""Rendered synthetic video sequences for the decoder: one person moving in front of a still robot camera.

A sequence is a generated motion (fasthmr_model.data.motion) placed in a sampled robot scene (camera,
boxes, look, lighting of its first frame) and rendered frame by frame at 640x480 and 30 frames/s, with
fresh sensor noise per frame; every frame goes through the run-time preprocessing (the node's crops), as
the frame splits do. The motion's path is centred on the person's sampled spot so that walks stay in
view; a sequence ends early at the first frame where the person comes nearer than MIN_DEPTH or shows
fewer than MIN_VISIBLE_PIXELS (walked out of view). Splits use seeds of their own (no motion, person or
scene is shared with the frame splits or with each other), are cached like the frame splits (memory-mapped
.npy files, `fasthmr_model.data.world.CropSet`) with instance_id = the sequence and frame_index = the frame
within it, and the per-frame encoder outputs of a bundle are cached beside them, keyed by the encoder's
checksum, so that a new encoder (the merged one) needs one command and no new rendering.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.data.world import CROP_FIELDS, FRAME_HEIGHT, FRAME_WIDTH, MOTION_FPS, CropSet, render_crop_cache
from fasthmr_model.errors import FastHMRError

SEQUENCE_FORMAT_VERSION = 1
# A person nearer than this (pelvis depth, m) or showing fewer pixels ends the sequence.
MIN_DEPTH = 1.2
MIN_VISIBLE_PIXELS = 600


@dataclass(frozen=True)
class SequenceSplit:
    """`sequences` rendered sequences of up to `frames` frames each, all drawn from `seed`."""

    name: str
    seed: int
    sequences: int
    frames: int


# 4-5 s per sequence; train: 24k frames (about 12 min to render with 2 processes here).
SEQUENCE_SPLITS = {
    "train": SequenceSplit("sequence-train", seed=11_000, sequences=200, frames=120),
    "val": SequenceSplit("sequence-val", seed=12_000, sequences=48, frames=120),
    "test": SequenceSplit("sequence-test", seed=13_000, sequences=24, frames=150),
}


# Named splits (`fasthmr world sequences --split NAME --seed S --count N`): a plain name, used as a folder name.
SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{0,62}")
NAMED_SPLIT_FRAMES = 150


def sequence_split(name: str) -> SequenceSplit:
    try:
        return SEQUENCE_SPLITS[name]
    except KeyError:
        raise FastHMRError(f"unknown sequence split {name!r}; the sequence splits are {sorted(SEQUENCE_SPLITS)}") from None


def named_sequence_split(name: str, seed: int, sequences: int, frames: int = NAMED_SPLIT_FRAMES) -> SequenceSplit:
    """A sequence split of its own seed (e.g. a fresh test split): `sequences` sequences of up to `frames` frames.

    The name is a plain name (letters, digits, underscores: it names the cache folder), not a built-in
    split's; the seed is none of the built-in splits' (frame or sequence), whose sequences it would repeat."""
    from fasthmr_model.data.world import SPLITS

    if not isinstance(name, str) or not SPLIT_NAME.fullmatch(name):
        raise FastHMRError(f"split name {name!r} must be a plain name of letters, digits and underscores (at most 63, "
                           "no path, no dot, no hyphen)")
    if name in SEQUENCE_SPLITS:
        raise FastHMRError(f"{name!r} is a built-in sequence split with its own seed: give your split another name")
    taken = {spec.seed for spec in SEQUENCE_SPLITS.values()} | {spec.seed for spec in SPLITS.values()}
    if seed in taken:
        raise FastHMRError(f"seed {seed} is a built-in split's (seeds {sorted(taken)}): a new split needs a new seed")
    if not 0 <= seed < 2 ** 63:
        raise FastHMRError(f"the seed must be a non-negative integer below 2^63, got {seed}")
    if sequences < 1 or frames < 2:
        raise FastHMRError(f"a split needs at least one sequence of at least two frames, got {sequences} x {frames}")
    return SequenceSplit(f"sequence-{name}", seed=seed, sequences=sequences, frames=frames)


def render_sequence(spec: SequenceSplit, index: int, body_model: BodyModel) -> list:
    """Sequence `index` of a split: the RenderedFrames until the person leaves the usable view."""
    from fasthmr_model.data.camera import PlacementConfig
    from fasthmr_model.data.motion import generate_sequence
    from fasthmr_model.data.render import PosedBody, ScenePerson, paint_background, render_scene, sample_scene

    motion = generate_sequence([spec.seed, 1, index], spec.frames, MOTION_FPS, body_model=body_model)
    # People stand clear of the image border and of the camera: the path moves them anyway.
    placement = PlacementConfig(distance_range=(2.5, 7.0), out_of_frame_probability=0.0)
    scene = sample_scene([spec.seed, 3, index], body_model, [PosedBody(motion.betas, motion.rotmats[0])],
                         FRAME_WIDTH, FRAME_HEIGHT, placement_config=placement)
    person = scene.people[0]
    turn = person.rotmats[0] @ motion.rotmats[0, 0].T  # the heading sample_scene gave the body
    # The body model turns about its rest pelvis, so a rigid turn of the whole motion about it keeps the form
    # x = R (x_rest - pelvis) + pelvis + transl, with transl_t = turn (m_t - centre) + transl_0.
    centre = motion.translation[0].copy()
    centre[[0, 2]] = motion.translation[:, [0, 2]].mean(axis=0)
    translations = (motion.translation - centre) @ turn.T + person.translation
    background = paint_background(scene)  # the camera stands still: the same room in every frame
    frames = []
    for frame in range(motion.num_frames):
        rotmats = motion.rotmats[frame].copy()
        rotmats[0] = turn @ rotmats[0]
        posed = replace(scene, people=(ScenePerson(motion.betas, rotmats, translations[frame], person.appearance),),
                        style=replace(scene.style, noise_seed=scene.style.noise_seed + frame))
        rendered = render_scene(posed, body_model, background)
        truth = rendered.people[0]
        if truth.joints_3d[0, 2] < MIN_DEPTH or truth.visible_pixels < MIN_VISIBLE_PIXELS:
            break
        frames.append(rendered)
    return frames


def sequence_crops(spec: SequenceSplit, index: int, body_model: BodyModel) -> dict[str, np.ndarray]:
    """The crops of sequence `index` (CROP_FIELDS arrays, one row per frame; instance_id = the sequence)."""
    from fasthmr_model.data.world import frame_crops

    parts = []
    for frame, rendered in enumerate(render_sequence(spec, index, body_model)):
        crops = frame_crops(rendered, frame)
        if len(crops["frame_index"]) != 1:  # the mask lost the person: the sequence ends here
            break
        crops["instance_id"][:] = index
        parts.append(crops)
    if not parts:
        return {field: np.zeros((0,) + shape, dtype) for field, (shape, dtype) in CROP_FIELDS.items()}
    return {field: np.concatenate([part[field] for part in parts]) for field in CROP_FIELDS}


_WORKER_STATE: dict = {}


def _worker_start(spec: SequenceSplit, body_model_path: str) -> None:
    _WORKER_STATE.update(spec=spec, body=BodyModel.from_file(body_model_path))


def _worker_sequence(index: int) -> dict[str, np.ndarray]:
    return sequence_crops(_WORKER_STATE["spec"], index, _WORKER_STATE["body"])


def build_sequence_split(name: str, cache: Path, body_model_path: Path, workers: int = 2, sequences: int | None = None,
                         frames: int | None = None, progress: bool = True, seed: int | None = None) -> Path:
    """Render sequence split `name` into `cache/<split name>` (skipped when already there); returns the folder.

    A built-in split (train, val, test): sequences, frames: only the first N sequences, each cut to its first M
    frames (tests and smoke runs), in `cache/<split name>-firstN` or `-firstNxM`; a partial build never passes
    for the whole split. Another name with a seed: the named split of `sequences` sequences of up to `frames`
    (default NAMED_SPLIT_FRAMES) frames (named_sequence_split) in `cache/sequence-<name>`; a name already
    rendered with other settings is refused, never replaced. Another name without a seed: the named split
    rendered before.
    """
    if name not in SEQUENCE_SPLITS:
        return _named_split_folder(name, Path(cache), body_model_path, workers, sequences, frames, progress, seed)
    if seed is not None:
        raise FastHMRError(f"{name!r} is a built-in sequence split with its own seed: give a split of seed {seed} "
                           "a name of its own")
    spec = sequence_split(name)
    count = spec.sequences if sequences is None else min(sequences, spec.sequences)
    suffix = "" if count == spec.sequences else f"-first{count}"
    if frames is not None and frames < spec.frames:
        spec = replace(spec, frames=frames)
        suffix = f"-first{count}x{frames}"
    out = Path(cache) / (spec.name + suffix)
    if (out / "split.json").is_file():
        recorded = json.loads((out / "split.json").read_text())
        if recorded.get("sequences") == count and recorded.get("format_version") == SEQUENCE_FORMAT_VERSION:
            return out
        shutil.rmtree(out)
    return render_crop_cache(out, spec.name, list(range(count)), _worker_start, (spec, str(body_model_path)),
                             _worker_sequence, workers, progress,
                             {**asdict(spec), "sequences": count, "format_version": SEQUENCE_FORMAT_VERSION})


def _named_split_folder(name: str, cache: Path, body_model_path: Path, workers: int, sequences: int | None,
                        frames: int | None, progress: bool, seed: int | None) -> Path:
    """build_sequence_split for a named split (see there)."""
    if seed is None:
        if sequences is not None or frames is not None:
            raise FastHMRError(f"a named split is scored whole: render one of {sequences} sequences under another name "
                               "instead of cutting this one")
        named_sequence_split(name, seed=0, sequences=1)  # the name's checks (seed 0 is no built-in's)
        out = cache / f"sequence-{name}"
        if not (out / "split.json").is_file():
            raise FastHMRError(f"no sequence split {name!r} in {cache}: render it first with `fasthmr world sequences "
                               f"--split {name} --seed S --count N`")
        return out
    if sequences is None:
        raise FastHMRError(f"a new split needs its number of sequences: --count N (split {name!r}, seed {seed})")
    spec = named_sequence_split(name, seed, sequences, NAMED_SPLIT_FRAMES if frames is None else frames)
    out = cache / spec.name
    wanted = {**asdict(spec), "format_version": SEQUENCE_FORMAT_VERSION}
    if (out / "split.json").is_file():
        recorded = json.loads((out / "split.json").read_text())
        if {key: recorded.get(key) for key in wanted} == wanted:
            return out
        raise FastHMRError(f"{out} holds split {name!r} rendered with seed {recorded.get('seed')}, "
                           f"{recorded.get('sequences')} sequences of {recorded.get('frames')} frames: choose another "
                           "name (a named split is never replaced)")
    return render_crop_cache(out, spec.name, list(range(spec.sequences)), _worker_start, (spec, str(body_model_path)),
                             _worker_sequence, workers, progress, wanted)


def sequence_ranges(crops: CropSet) -> list[slice]:
    """The rows of each sequence in a sequence split (consecutive frames of one person)."""
    starts = np.flatnonzero(np.diff(np.asarray(crops.instance_id), prepend=-1) != 0)
    ends = np.append(starts[1:], len(crops))
    return [slice(int(start), int(end)) for start, end in zip(starts, ends)]


def sequence_intrinsics(crops: CropSet, rows: slice) -> np.ndarray:
    """K (3, 3) of the camera that rendered the sequence in `rows` (a sequence's camera stands still).

    A rendered split stores no K; it is recovered exactly (to float32 rounding) from what it stores: each
    joint's pixel (joints_2d: (pixel - crop centre) / crop side) against its camera-frame position
    (joints_3d), u = fx X / Z + cx and v = fy Y / Z + cy, by least squares. The renderer's cameras have
    no skew."""
    joints = np.asarray(crops.joints_3d[rows], np.float64)
    boxes = np.asarray(crops.crop_boxes[rows], np.float64)
    pixels = np.asarray(crops.joints_2d[rows], np.float64) * boxes[:, None, 2:3] + boxes[:, None, :2]
    intrinsics = np.eye(3)
    for axis in (0, 1):
        projected = (joints[..., axis] / joints[..., 2]).ravel()
        design = np.stack([projected, np.ones_like(projected)], axis=1)
        (intrinsics[axis, axis], intrinsics[axis, 2]), *_ = np.linalg.lstsq(design, pixels[..., axis].ravel(), rcond=None)
    return intrinsics


def split_crop_rays(crops: CropSet) -> np.ndarray:
    """(N, 3) the turn from the optical axis onto each crop's centre ray (data.crop.crop_ray_rotations) over a
    sequence split's crops, with each sequence's recovered K."""
    from fasthmr_model.data.crop import crop_ray_rotations

    rays = np.zeros((len(crops), 3))
    for rows in sequence_ranges(crops):
        rays[rows] = crop_ray_rotations(np.asarray(crops.crop_boxes[rows]), sequence_intrinsics(crops, rows))
    return rays.astype(np.float32)


ENCODER_OUTPUTS = ("pose_6d", "betas", "cam", "feature")


def encoder_outputs(bundle, crops: CropSet, cache: Path | None = None, batch_size: int = 32,
                    progress: bool = True) -> dict[str, np.ndarray]:
    """The bundle encoder's per-frame outputs over a split's crops: {pose_6d, betas, cam, feature}, float32.

    Cached in `cache` (default: a `features` folder beside the split) under the encoder file's SHA-256,
    so another bundle with the same encoder reuses them and a new encoder gets its own.
    """
    from tqdm import tqdm

    from fasthmr_model.data.crop import normalise_windows
    from fasthmr_model.runtime import EncoderSession, RuntimeConfig

    digest = bundle.encoder_sha256[:16]
    folder = Path(cache) if cache is not None else crops.folder.parent / "features"
    path = folder / f"{crops.folder.name}.{digest}.npz"
    if path.is_file():
        with np.load(path) as stored:
            if len(stored["feature"]) == len(crops):
                return {name: stored[name] for name in ENCODER_OUTPUTS}
    session = EncoderSession(bundle, RuntimeConfig(provider="cpu"))
    outputs: dict[str, list] = {name: [] for name in ENCODER_OUTPUTS}
    for start in tqdm(range(0, len(crops), batch_size), disable=not progress, desc=f"encode {crops.folder.name}"):
        rows = slice(start, min(start + batch_size, len(crops)))
        encoded = session.run(normalise_windows(np.asarray(crops.windows[rows])),
                              np.asarray(crops.person_tokens[rows], np.float32))
        for name in ENCODER_OUTPUTS:
            outputs[name].append(getattr(encoded, name))
    arrays = {name: np.concatenate(parts).astype(np.float32) for name, parts in outputs.items()}
    folder.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npz")
    np.savez(temporary, **arrays)
    os.replace(temporary, path)
    return arrays

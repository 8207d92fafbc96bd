"""`fasthmr eval --sequences`: per-frame encoder poses against the offline and the causal decoder and the
filters it has to beat, on rendered sequences, with the decoder's latency per frame next to the encoder's;
and `fasthmr tune-filters`, which chooses those filters' parameters on the val sequences.

Every method keeps the encoder's shape (betas); the pose is the encoder's own (per_frame), the decoder's
through the IK (offline: each frame from the window centred on it; causal: from the window ending at it, as
the node streams; causal_without_features: the same with the frame features zeroed, the encoder's feature
and the crop's ray alike, so that what they add to a smoother of the encoder's poses shows), or the encoder's poses filtered causally (ema, one_euro: decoder.filters, with the
parameters tuned on val, FILTER_PARAMETERS_FILE). Scores use the EMDB convention (24 joints rooted at the mean of the hips; PA-MPJPE after
a similarity fit; PVE with the same roots) averaged over frames, and the acceleration error (mm/frame^2,
root-relative) over each sequence's interior frames. Latency: median milliseconds of one person's frame,
batch 1, the encoder graph and the decoder (graph + IK) alternated in one process, after warm-up.
Run-time module: numpy + onnxruntime (matplotlib only for the plot).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.rotations import rot6d_to_matrix
from fasthmr_model.body.skeleton import NUM_JOINTS
from fasthmr_model.bundle import Bundle
from fasthmr_model.data.crop import crop_ray_rotations, normalise_windows
from fasthmr_model.data.world import MOTION_FPS, CropSet
from fasthmr_model.decoder.filters import (
    FILTER_PARAMETERS_FILE, EmaParameters, FilterParameters, OneEuroParameters, ema_rotations, load_filter_parameters,
    one_euro_rotations,
)
from fasthmr_model.decoder.pose import body_rest_points
from fasthmr_model.decoder.runtime import (
    DecoderSession, decode_causal, decode_offline, frame_inputs, poses_to_rotmats,
)
from fasthmr_model.decoder.config import CROP_RAY_SIZE
from fasthmr_model.decoder.sequences import encoder_outputs, sequence_intrinsics, sequence_ranges, split_crop_rays
from fasthmr_model.metrics import EMDB_ROOT_JOINTS, accel_error, evaluate, mpjpe
from fasthmr_model.runtime import EncoderSession, RuntimeConfig

METHODS = ("per_frame", "causal", "offline", "ema", "one_euro", "causal_without_features")
LATENCY_RUNS = 60
PLOTTED = ("per_frame", "offline", "causal", "ema")


def per_frame_rotmats(bundle: Bundle, crops: CropSet, progress: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The encoder's outputs over a sequence split's frames (cached, decoder.sequences.encoder_outputs) and its
    rotations (N, 24, 3, 3)."""
    encoded = encoder_outputs(bundle, crops, progress=progress)
    return encoded, rot6d_to_matrix(encoded["pose_6d"].reshape(len(crops), NUM_JOINTS, 6).astype(np.float64))


def filtered_rotmats(crops: CropSet, rotmats: np.ndarray, filters: FilterParameters) -> dict[str, np.ndarray]:
    """{ema, one_euro: rotations (N, 24, 3, 3)}: the encoder's rotations (N, 24, 3, 3) filtered per sequence."""
    stacked, ranges = _stack_sequences(crops, rotmats)
    return {"ema": _unstack(ema_rotations(stacked, filters.ema), ranges),
            "one_euro": _unstack(one_euro_rotations(stacked, filters.one_euro, MOTION_FPS), ranges)}


def _stack_sequences(crops: CropSet, rotmats: np.ndarray) -> tuple[np.ndarray, list[slice]]:
    """Rotations (N, 24, 3, 3) -> (T_max, S, 24, 3, 3), sequence s in column s, padded at its end with its last
    frame (the filters are causal: what follows a frame never changes it), so that one pass filters all."""
    ranges = sequence_ranges(crops)
    longest = max(rows.stop - rows.start for rows in ranges)
    indices = np.stack([np.minimum(np.arange(longest) + rows.start, rows.stop - 1) for rows in ranges], axis=1)
    return rotmats[indices], ranges


def _unstack(stacked: np.ndarray, ranges: list[slice]) -> np.ndarray:
    return np.concatenate([stacked[:rows.stop - rows.start, column] for column, rows in enumerate(ranges)])


def predicted_rotmats(bundle: Bundle, crops: CropSet, runtime: RuntimeConfig = RuntimeConfig(), progress: bool = False,
                      filters: FilterParameters | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """{method: rotmats (N, 24, 3, 3)} over a sequence split's frames (every METHODS entry; filters: the ema
    and one_euro parameters, default FILTER_PARAMETERS_FILE), and the encoder's betas (N, 10)."""
    encoded, encoder_rotmats = per_frame_rotmats(bundle, crops, progress)
    body = BodyModel.from_file(bundle.body_model_path)
    session = DecoderSession(bundle, runtime)
    betas = encoded["betas"].astype(np.float64)
    rotmats = {"per_frame": encoder_rotmats}
    rest = body_rest_points(body, betas)
    frames = frame_inputs(rest, encoded["feature"], split_crop_rays(crops), encoder_rotmats)
    without_features = frames.copy()
    without_features[:, :session.config.feature_size + CROP_RAY_SIZE] = 0.0
    for method, decode, inputs in (("offline", decode_offline, frames), ("causal", decode_causal, frames),
                                   ("causal_without_features", decode_causal, without_features)):
        representations = np.concatenate([decode(session, inputs[rows]) for rows in sequence_ranges(crops)])
        rotmats[method] = poses_to_rotmats(rest, representations)
    rotmats.update(filtered_rotmats(crops, encoder_rotmats, filters or load_filter_parameters()))
    return rotmats, betas


def score(body: BodyModel, crops: CropSet, betas: np.ndarray, rotmats: np.ndarray) -> dict[str, float]:
    """{mpjpe, pa_mpjpe, pve, accel} in mm (accel in mm/frame^2) against the split's truth."""
    vertices, joints = body.forward(betas, rotmats)
    true_vertices, true_joints = body.forward(np.asarray(crops.betas, np.float64), np.asarray(crops.rotmats, np.float64))
    means = evaluate("emdb", joints, true_joints, vertices, true_vertices).means()
    accelerations = [accel_error(joints[rows], true_joints[rows], EMDB_ROOT_JOINTS)
                     for rows in sequence_ranges(crops) if rows.stop - rows.start >= 3]
    return {"mpjpe": round(means["mpjpe"], 2), "pa_mpjpe": round(means["pa_mpjpe"], 2), "pve": round(means["pve"], 2),
            "accel": round(float(np.concatenate(accelerations).mean()), 2)}


def latency_ms(bundle: Bundle, crops: CropSet, runtime: RuntimeConfig = RuntimeConfig(), runs: int = LATENCY_RUNS,
               clock=time.perf_counter) -> dict[str, float]:
    """Median ms per person-frame at batch 1: the encoder graph; the decoder's three parts (the encoder's pose,
    as rotations, into the representation; the graph; the IK) and the decoder in all, measured alternately in
    this process. Both sessions run as the node runs them (RuntimeConfig; the decoder's on one thread unless
    threads are set). clock: wall time by default; time.thread_time with one thread for both sessions (ONNX
    Runtime then computes on the calling thread) counts this thread's CPU time only, which other processes on
    a busy machine do not stretch."""
    encoder = EncoderSession(bundle, runtime)
    decoder = DecoderSession(bundle, runtime)
    body = BodyModel.from_file(bundle.body_model_path)
    image = normalise_windows(np.asarray(crops.windows[:1]))
    tokens = np.asarray(crops.person_tokens[:1], np.float32)
    crop_box, intrinsics = np.asarray(crops.crop_boxes[:1]), sequence_intrinsics(crops, sequence_ranges(crops)[0])
    timings: dict[str, list[float]] = {"encoder": [], "frame_pose": [], "decoder_graph": [], "ik": []}
    for run in range(runs + 5):
        start = clock()
        encoded = encoder.run(image, tokens)
        encoded_at = clock()
        # The encoder's rotations are read out for the per-frame pose anyway (the pipeline's result), so the
        # decoder's time starts from them.
        rotmats = rot6d_to_matrix(encoded.pose_6d.reshape(1, NUM_JOINTS, 6))
        started_at = clock()
        rest = body_rest_points(body, encoded.betas.astype(np.float64))  # as StreamingDecoder.step: once for both
        frame = frame_inputs(rest, encoded.feature, crop_ray_rotations(crop_box, intrinsics), rotmats)
        framed_at = clock()
        newest = decoder.run_frames(np.repeat(frame[:, None], decoder.window, axis=1))[:, -1]
        decoded_at = clock()
        poses_to_rotmats(rest, newest)
        end = clock()
        if run >= 5:  # warm-up calls discarded
            timings["encoder"].append(encoded_at - start)
            timings["frame_pose"].append(framed_at - started_at)
            timings["decoder_graph"].append(decoded_at - framed_at)
            timings["ik"].append(end - decoded_at)
    medians = {name: 1000.0 * float(np.median(values)) for name, values in timings.items()}
    medians["decoder"] = medians["frame_pose"] + medians["decoder_graph"] + medians["ik"]
    return {name: round(value, 3) for name, value in medians.items()}


def evaluate_sequences(bundle: Bundle, crops: CropSet, runtime: RuntimeConfig = RuntimeConfig(),
                       progress: bool = False, latency_runs: int = LATENCY_RUNS,
                       filters: FilterParameters | None = None) -> dict:
    """The sequence scores as JSON: {per_frame, causal, offline, ema, one_euro, causal_without_features:
    {mpjpe, pa_mpjpe, pve, accel}, latency_ms, filters (the parameters used), ...}."""
    filters = filters or load_filter_parameters()
    rotmats, betas = predicted_rotmats(bundle, crops, runtime, progress, filters)
    body = BodyModel.from_file(bundle.body_model_path)
    result = {method: score(body, crops, betas, rotmats[method]) for method in METHODS}
    result["filters"] = {"ema": filters.to_dict()["ema"], "one_euro": filters.to_dict()["one_euro"],
                         "tuned_on": filters.provenance.get("split"),
                         "tuned_for_this_encoder": filters.provenance.get("encoder_file_sha256") == bundle.encoder_sha256}
    latency = latency_ms(bundle, crops, runtime, latency_runs)
    result["latency_ms"] = latency
    result["decoder_to_encoder_cost"] = round(latency["decoder"] / latency["encoder"], 3)
    result["window"] = bundle.decoder.window
    result["sequences"] = len(sequence_ranges(crops))
    result["frames"] = len(crops)
    return result


# The grids `fasthmr tune-filters` searches (the One-Euro filter's derivative cutoff stays at its authors'
# recommended 1 Hz).
EMA_ALPHAS = tuple(round(0.05 * step, 2) for step in range(1, 21))
ONE_EURO_MIN_CUTOFFS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # Hz
ONE_EURO_BETAS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)  # s/rad


def tune_filters(bundle: Bundle, crops: CropSet, command: str, progress: bool = False) -> FilterParameters:
    """The ema and one_euro parameters with the lowest MPJPE (EMDB convention, all frames) of the bundle's
    encoder poses filtered over the sequences `crops` (the val sequences: the test sequences never choose), by
    grid search; `command` (the command line that tuned them) and the scores go into the provenance."""
    from tqdm import tqdm

    encoded, rotmats = per_frame_rotmats(bundle, crops, progress)
    body = BodyModel.from_file(bundle.body_model_path)
    betas = encoded["betas"].astype(np.float64)
    _, true_joints = body.forward(np.asarray(crops.betas, np.float64), np.asarray(crops.rotmats, np.float64),
                                  with_vertices=False)
    stacked, ranges = _stack_sequences(crops, rotmats)

    def error(filtered: np.ndarray) -> tuple[float, float]:
        """(MPJPE over all frames, acceleration error over the sequences' interior frames), as score() has them."""
        _, joints = body.forward(betas, _unstack(filtered, ranges), with_vertices=False)
        accelerations = [accel_error(joints[rows], true_joints[rows], EMDB_ROOT_JOINTS)
                         for rows in ranges if rows.stop - rows.start >= 3]
        return (round(float(mpjpe(joints, true_joints, EMDB_ROOT_JOINTS).mean()), 3),
                round(float(np.concatenate(accelerations).mean()), 3))

    candidates = [EmaParameters(alpha) for alpha in EMA_ALPHAS] + [
        OneEuroParameters(cutoff, beta) for cutoff in ONE_EURO_MIN_CUTOFFS for beta in ONE_EURO_BETAS]
    scores = {}
    for candidate in tqdm(candidates, disable=not progress, desc="tune filters"):
        scores[candidate] = error(ema_rotations(stacked, candidate) if isinstance(candidate, EmaParameters)
                                  else one_euro_rotations(stacked, candidate, MOTION_FPS))
    best_ema = min((candidate for candidate in scores if isinstance(candidate, EmaParameters)), key=scores.get)
    best_one_euro = min((candidate for candidate in scores if isinstance(candidate, OneEuroParameters)), key=scores.get)
    per_frame = error(stacked)
    provenance = {
        "command": command, "split": crops.split_name, "sequences": len(ranges), "frames": len(crops),
        "encoder_file_sha256": bundle.encoder_sha256,
        "criterion": "lowest MPJPE (mm, EMDB convention) of the filtered encoder poses over the split's frames",
        "per_frame_mpjpe": per_frame[0], "ema_mpjpe": scores[best_ema][0], "one_euro_mpjpe": scores[best_one_euro][0],
        # Every candidate's (MPJPE, accel), for the trade-off plot (fasthmr tune-filters --plot).
        "scores": {"per_frame": list(per_frame),
                   "ema": [[candidate.alpha, *scores[candidate]] for candidate in candidates
                           if isinstance(candidate, EmaParameters)],
                   "one_euro": [[candidate.min_cutoff, candidate.beta, *scores[candidate]] for candidate in candidates
                                if isinstance(candidate, OneEuroParameters)],
                   "columns": {"ema": ["alpha", "mpjpe", "accel"],
                               "one_euro": ["min_cutoff", "beta", "mpjpe", "accel"]}},
    }
    return FilterParameters(best_ema, best_one_euro, provenance)


def plot_filter_scores(parameters: FilterParameters, out: Path, decoder: dict[str, dict] | None = None) -> Path:
    """A PNG of MPJPE against acceleration error of every filter tune_filters tried (its provenance's scores),
    the chosen ones marked, with the decoder's {method: score()} on the same split when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = parameters.provenance["scores"]
    ema, one_euro = np.asarray(scores["ema"]), np.asarray(scores["one_euro"])
    figure, axis = plt.subplots(figsize=(8, 5.5))
    axis.plot(ema[:, 2], ema[:, 1], "-o", color="tab:orange", markersize=3, label="exponential average (alpha 0.05-1)")
    axis.scatter(one_euro[:, 3], one_euro[:, 2], s=10, color="tab:purple", label="One-Euro (min cutoff x beta grid)")
    chosen = [(parameters.provenance["ema_mpjpe"], row[2]) for row in scores["ema"] if row[0] == parameters.ema.alpha]
    axis.scatter([accel for _, accel in chosen], [mpjpe for mpjpe, _ in chosen], s=90, facecolors="none",
                 edgecolors="black", label=f"chosen (lowest MPJPE): ema alpha {parameters.ema.alpha}, One-Euro "
                                           f"{parameters.one_euro.min_cutoff} Hz, beta {parameters.one_euro.beta}")
    styles = {"per_frame": ("tab:red", "s"), "causal": ("tab:blue", "D"), "offline": ("tab:green", "^")}
    for method, values in (decoder or {}).items():
        colour, marker = styles.get(method, ("grey", "x"))
        axis.scatter(values["accel"], values["mpjpe"], s=60, color=colour, marker=marker,
                     label=f"{method.replace('_', '-')}: {values['mpjpe']} mm, accel {values['accel']}")
    axis.set_xscale("log")
    axis.set_xlabel("acceleration error, mm/frame^2 (log)")
    axis.set_ylabel("MPJPE, mm")
    axis.set_title(f"Filters of the encoder's poses against the decoder, {parameters.provenance['split']} "
                   f"({parameters.provenance['sequences']} sequences)")
    axis.legend(fontsize=7, loc="upper right")
    axis.grid(alpha=0.3, which="both")
    return _save_figure(figure, out)


def _save_figure(figure, out: Path) -> Path:
    """Lay out, write `figure` as a PNG at `out` (its folder made), close it; returns the path."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def write_filter_parameters(parameters: FilterParameters, path: Path = FILTER_PARAMETERS_FILE) -> Path:
    """Write the parameters as JSON at `path` (atomically: a reader never sees half a file)."""
    import json
    import os

    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(parameters.to_dict(), indent=1) + "\n")
    os.replace(temporary, path)
    return path


def plot_trajectory(bundle: Bundle, crops: CropSet, out: Path, sequence: int = 0, joint: int = 20,
                    runtime: RuntimeConfig = RuntimeConfig(), filters: FilterParameters | None = None) -> Path:
    """A PNG of one joint's root-relative trajectory (x, y, z over time) in one sequence: the truth, the
    per-frame encoder, the causal and offline decoders and the exponential average."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fasthmr_model.body.skeleton import JOINT_NAMES

    rotmats, betas = predicted_rotmats(bundle, crops, runtime, filters=filters)
    body = BodyModel.from_file(bundle.body_model_path)
    rows = sequence_ranges(crops)[sequence]

    def trajectory(chosen_betas, chosen_rotmats):
        _, joints = body.forward(chosen_betas[rows], chosen_rotmats[rows], with_vertices=False)
        return 1000.0 * (joints[:, joint] - joints[:, list(EMDB_ROOT_JOINTS)].mean(axis=1))

    lines = {"ground truth": trajectory(np.asarray(crops.betas, np.float64), np.asarray(crops.rotmats, np.float64))}
    lines.update({f"{method.replace('_', '-')}": trajectory(betas, rotmats[method]) for method in PLOTTED})
    styles = {"ground truth": ("black", 2.0), "per-frame": ("tab:red", 1.0), "offline": ("tab:green", 1.2),
              "causal": ("tab:blue", 1.6), "ema": ("tab:orange", 1.0)}
    figure, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    frames = np.arange(rows.stop - rows.start)
    for axis_index, (axis, name) in enumerate(zip(axes, ("x (right)", "y (down)", "z (forward)"))):
        for label, values in lines.items():
            colour, width = styles[label]
            axis.plot(frames, values[:, axis_index], color=colour, linewidth=width, label=label)
        axis.set_ylabel(f"{name}, mm")
    axes[0].set_title(f"{JOINT_NAMES[joint]} relative to the hips, synthetic {crops.split_name} sequence {sequence} "
                      "(camera frame)")
    axes[0].legend(loc="upper right", ncol=5, fontsize=8)
    axes[-1].set_xlabel("frame (30 frames/s)")
    return _save_figure(figure, out)

"""`fasthmr eval --sequences`: per-frame encoder poses against the offline and the causal decoder, on rendered
sequences, with the decoder's latency per frame next to the encoder's.

Every method keeps the encoder's shape (betas); the pose is the encoder's own (per_frame) or the decoder's
through the IK (offline: each frame from the window centred on it; causal: from the window ending at it, as
the node streams). Scores use the EMDB convention (24 joints rooted at the mean of the hips; PA-MPJPE after
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
from fasthmr_model.data.crop import normalise_windows
from fasthmr_model.data.world import CropSet
from fasthmr_model.decoder.pose import body_rest_points
from fasthmr_model.decoder.runtime import (
    DecoderSession, decode_causal, decode_offline, frame_inputs, poses_to_rotmats,
)
from fasthmr_model.decoder.sequences import encoder_outputs, sequence_ranges
from fasthmr_model.metrics import EMDB_ROOT_JOINTS, accel_error, evaluate
from fasthmr_model.runtime import EncoderSession, RuntimeConfig

METHODS = ("per_frame", "offline", "causal")
LATENCY_RUNS = 60


def predicted_rotmats(bundle: Bundle, crops: CropSet, runtime: RuntimeConfig = RuntimeConfig(), progress: bool = False
                      ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """{method: rotmats (N, 24, 3, 3)} over a sequence split's frames, and the encoder's betas (N, 10)."""
    encoded = encoder_outputs(bundle, crops, progress=progress)
    body = BodyModel.from_file(bundle.body_model_path)
    session = DecoderSession(bundle, runtime)
    count = len(crops)
    betas = encoded["betas"].astype(np.float64)
    rotmats = {"per_frame": rot6d_to_matrix(encoded["pose_6d"].reshape(count, NUM_JOINTS, 6))}
    rest = body_rest_points(body, betas)
    frames = frame_inputs(rest, encoded["feature"], rotmats["per_frame"])
    for method, decode in (("offline", decode_offline), ("causal", decode_causal)):
        representations = np.concatenate([decode(session, frames[rows]) for rows in sequence_ranges(crops)])
        rotmats[method] = poses_to_rotmats(rest, representations)
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


def latency_ms(bundle: Bundle, crops: CropSet, runtime: RuntimeConfig = RuntimeConfig(), runs: int = LATENCY_RUNS
               ) -> dict[str, float]:
    """Median ms per person-frame at batch 1: the encoder graph; the decoder's three parts (the encoder's pose,
    as rotations, into the representation; the graph; the IK) and the decoder in all, measured alternately in
    this process. Both sessions run as the node runs them (RuntimeConfig; the decoder's on one thread unless
    threads are set)."""
    encoder = EncoderSession(bundle, runtime)
    decoder = DecoderSession(bundle, runtime)
    body = BodyModel.from_file(bundle.body_model_path)
    image = normalise_windows(np.asarray(crops.windows[:1]))
    tokens = np.asarray(crops.person_tokens[:1], np.float32)
    timings: dict[str, list[float]] = {"encoder": [], "frame_pose": [], "decoder_graph": [], "ik": []}
    for run in range(runs + 5):
        start = time.perf_counter()
        encoded = encoder.run(image, tokens)
        encoded_at = time.perf_counter()
        # The encoder's rotations are read out for the per-frame pose anyway (the pipeline's result), so the
        # decoder's time starts from them.
        rotmats = rot6d_to_matrix(encoded.pose_6d.reshape(1, NUM_JOINTS, 6))
        started_at = time.perf_counter()
        rest = body_rest_points(body, encoded.betas.astype(np.float64))  # as StreamingDecoder.step: once for both
        frame = frame_inputs(rest, encoded.feature, rotmats)
        framed_at = time.perf_counter()
        newest = decoder.run_frames(np.repeat(frame[:, None], decoder.window, axis=1))[:, -1]
        decoded_at = time.perf_counter()
        poses_to_rotmats(rest, newest)
        end = time.perf_counter()
        if run >= 5:  # warm-up calls discarded
            timings["encoder"].append(encoded_at - start)
            timings["frame_pose"].append(framed_at - started_at)
            timings["decoder_graph"].append(decoded_at - framed_at)
            timings["ik"].append(end - decoded_at)
    medians = {name: 1000.0 * float(np.median(values)) for name, values in timings.items()}
    medians["decoder"] = medians["frame_pose"] + medians["decoder_graph"] + medians["ik"]
    return {name: round(value, 3) for name, value in medians.items()}


def evaluate_sequences(bundle: Bundle, crops: CropSet, runtime: RuntimeConfig = RuntimeConfig(),
                       progress: bool = False, latency_runs: int = LATENCY_RUNS) -> dict:
    """The sequence scores as JSON: {per_frame, offline, causal: {mpjpe, pa_mpjpe, pve, accel}, latency_ms, ...}."""
    rotmats, betas = predicted_rotmats(bundle, crops, runtime, progress)
    body = BodyModel.from_file(bundle.body_model_path)
    result = {method: score(body, crops, betas, rotmats[method]) for method in METHODS}
    latency = latency_ms(bundle, crops, runtime, latency_runs)
    result["latency_ms"] = latency
    result["decoder_to_encoder_cost"] = round(latency["decoder"] / latency["encoder"], 3)
    result["window"] = bundle.decoder.window
    result["sequences"] = len(sequence_ranges(crops))
    result["frames"] = len(crops)
    return result


def plot_trajectory(bundle: Bundle, crops: CropSet, out: Path, sequence: int = 0, joint: int = 20,
                    runtime: RuntimeConfig = RuntimeConfig()) -> Path:
    """A PNG of one joint's root-relative trajectory (x, y, z over time) in one sequence: the truth, the
    per-frame encoder and the causal and offline decoders."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fasthmr_model.body.skeleton import JOINT_NAMES

    rotmats, betas = predicted_rotmats(bundle, crops, runtime)
    body = BodyModel.from_file(bundle.body_model_path)
    rows = sequence_ranges(crops)[sequence]

    def trajectory(chosen_betas, chosen_rotmats):
        _, joints = body.forward(chosen_betas[rows], chosen_rotmats[rows], with_vertices=False)
        return 1000.0 * (joints[:, joint] - joints[:, list(EMDB_ROOT_JOINTS)].mean(axis=1))

    lines = {"ground truth": trajectory(np.asarray(crops.betas, np.float64), np.asarray(crops.rotmats, np.float64))}
    lines.update({f"{method.replace('_', '-')}": trajectory(betas, rotmats[method]) for method in METHODS})
    styles = {"ground truth": ("black", 2.0), "per-frame": ("tab:red", 1.0), "offline": ("tab:green", 1.2),
              "causal": ("tab:blue", 1.6)}
    figure, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    frames = np.arange(rows.stop - rows.start)
    for axis_index, (axis, name) in enumerate(zip(axes, ("x (right)", "y (down)", "z (forward)"))):
        for label, values in lines.items():
            colour, width = styles[label]
            axis.plot(frames, values[:, axis_index], color=colour, linewidth=width, label=label)
        axis.set_ylabel(f"{name}, mm")
    axes[0].set_title(f"{JOINT_NAMES[joint]} relative to the hips, synthetic test sequence {sequence} (camera frame)")
    axes[0].legend(loc="upper right", ncol=4, fontsize=8)
    axes[-1].set_xlabel("frame (30 frames/s)")
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out

"""`fasthmr replay BAG`: a recorded bag through the node's frame path, its outputs into a new bag, and the
latency, drops and (with ground truth in the bag) the accuracy.

In-process (default): the bag's messages go, in bag order and as fast as possible, through the same code
the node runs (StampPairer with the node's parameters, frame_intrinsics, FrameProcessor with its tracker
and markers), so results equal the node's for the same frames. The pairer's mask timeout counts bag time
here. Without a mask topic in the bag, every frame is processed without a mask (the node's mask-less
rule); otherwise images that find no mask follow `unmatched_images` as in the node.

Ground truth: fasthmr_msgs/SmplBodyArray on the ground-truth topic, stamped like the images it belongs to.
Predicted and true bodies of a frame are matched greedily by box overlap (IoU >= MATCH_MIN_IOU); a true
body with no match counts as missed. MPJPE, PA-MPJPE and PVE use the EMDB convention (24 joints rooted at
the mean of the hips, as `fasthmr eval`); the acceleration error is taken over runs of at least 3
consecutive processed frames in which a true track stays matched.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.rotations import axis_angle_to_matrix
from fasthmr_model.body.skeleton import NUM_JOINTS
from fasthmr_model.metrics import evaluate
from fasthmr_model.pipeline import FramePipeline
from fasthmr_ros.bags import BODIES_TYPE, MARKERS_TYPE, PEOPLE_TYPE, BagReader, BagTopics, BagWriter
from fasthmr_ros.frame_processor import (FrameProcessor, FrameRejected, frame_intrinsics, stamp_nanoseconds,
                                         stamp_seconds)
from fasthmr_ros.pairing import Pair, StampPairer
from fasthmr_ros.parameters import build_config, load_defaults

MATCH_MIN_IOU = 0.3
# Output topics in the written bag: the node's (`~/bodies` etc. of a node named fasthmr).
OUTPUT_TOPICS = {"bodies": ("/fasthmr/bodies", BODIES_TYPE), "people": ("/fasthmr/people", PEOPLE_TYPE),
                 "markers": ("/fasthmr/markers", MARKERS_TYPE)}


def default_topics() -> BagTopics:
    """The node's input topics (config/fasthmr.yaml) and the ground-truth topic."""
    values = load_defaults()
    return BagTopics(values["image_topic"], values["camera_info_topic"], values["mask_topic"])


def _box_edges(body) -> np.ndarray:
    """(x0, y0, x1, y1) of a SmplBody's RegionOfInterest."""
    box = body.box
    return np.array([box.x_offset, box.y_offset, box.x_offset + box.width, box.y_offset + box.height], np.float64)


def _iou(first: np.ndarray, second: np.ndarray) -> float:
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (first[2] - first[0]) * (first[3] - first[1]) + (second[2] - second[0]) * (second[3] - second[1]) - inter
    return inter / union if union > 0 else 0.0


def match_bodies(predicted: list, truth: list) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by box IoU (highest first, at least MATCH_MIN_IOU): [(pred, true)]."""
    candidates = sorted(((_iou(_box_edges(p), _box_edges(t)), i, j) for i, p in enumerate(predicted)
                         for j, t in enumerate(truth)), reverse=True)
    used_pred, used_true, pairs = set(), set(), []
    for overlap, i, j in candidates:
        if overlap < MATCH_MIN_IOU:
            break
        if i not in used_pred and j not in used_true:
            used_pred.add(i)
            used_true.add(j)
            pairs.append((i, j))
    return pairs


def _posed(body_model: BodyModel, bodies: list) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (B, V, 3), joints (B, 24, 3)) of SmplBody messages posed by the body model."""
    betas = np.array([body.betas for body in bodies], np.float64)
    rotmats = axis_angle_to_matrix(np.array([body.pose for body in bodies], np.float64).reshape(-1, NUM_JOINTS, 3))
    translation = np.array([[body.translation.x, body.translation.y, body.translation.z] for body in bodies])
    return body_model.forward(betas, rotmats, translation)


@dataclass
class AccuracyTally:
    """Matched (prediction, truth) joints and vertices per true track, in processed-frame order."""

    body_model: BodyModel
    tracks: dict = field(default_factory=lambda: defaultdict(list))  # true track -> [(frame, pj, tj, pv, tv)]
    truths: int = 0
    missed: int = 0

    def add(self, frame: int, predicted: list, truth: list) -> None:
        self.truths += len(truth)
        pairs = match_bodies(predicted, truth)
        self.missed += len(truth) - len(pairs)
        if not pairs:
            return
        pred_vertices, pred_joints = _posed(self.body_model, [predicted[i] for i, _ in pairs])
        true_vertices, true_joints = _posed(self.body_model, [truth[j] for _, j in pairs])
        for row, (_, j) in enumerate(pairs):
            self.tracks[truth[j].track_id].append(
                (frame, pred_joints[row], true_joints[row], pred_vertices[row], true_vertices[row]))

    def metrics(self) -> dict | None:
        sums, counts = Counter(), Counter()
        for entries in self.tracks.values():
            # Runs of consecutive processed frames: the acceleration needs neighbours.
            runs, current = [], [entries[0]]
            for entry in entries[1:]:
                if entry[0] == current[-1][0] + 1:
                    current.append(entry)
                else:
                    runs.append(current)
                    current = [entry]
            runs.append(current)
            for run in runs:
                arrays = [np.stack([entry[k] for entry in run]) for k in range(1, 5)]
                errors = evaluate("emdb", *arrays)
                for name in ("mpjpe", "pa_mpjpe", "pve", "accel"):
                    values = getattr(errors, name)
                    sums[name] += float(np.sum(values))
                    counts[name] += len(values)
        if not counts["mpjpe"]:
            return None
        return {name: round(sums[name] / counts[name], 2) if counts[name] else None
                for name in ("mpjpe", "pa_mpjpe", "pve", "accel")}


def latency_percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2),
            "max": round(float(np.max(values)), 2)}


def replay_bag(bag: str | Path, bundle: str | Path | None = None, out: str | Path | None = None,
               topics: BagTopics | None = None, progress: bool = True, out_storage: str = "mcap") -> dict:
    """Replays `bag` in-process; returns the report (see module docstring and `format_report`).

    Raises InputError for a bag that cannot be opened or lacks the image or camera-info topic; a bag that
    ends early (truncated, corrupt) gives the frames read so far with `error` set in the report.
    """
    from tqdm import tqdm

    topics = topics or default_topics()
    values = load_defaults()
    pipeline = FramePipeline(bundle, build_config("runtime", values), build_config("preprocess", values))
    processor = FrameProcessor(pipeline, build_config("tracking", values), build_config("markers", values),
                               build_config("", values))
    processor.warm_up()
    pairer = StampPairer(build_config("sync", values))
    counters: Counter = Counter()
    latencies: list[float] = []
    stages: defaultdict = defaultdict(list)
    truth_by_stamp: dict[int, list] = {}
    predicted_by_stamp: dict[int, list] = {}  # matched with the truth at the end: it may come after its frame
    accuracy = AccuracyTally(pipeline.body_model)
    persons = frames = 0
    camera_info = None
    last_stamp = None
    with BagReader(bag, topics) as reader:
        writer = BagWriter(out, out_storage) if out is not None else None
        try:
            bar = tqdm(total=reader.message_count, disable=not progress, desc="replay", unit="msg")

            def run(pairs):
                nonlocal persons, frames
                for pair in pairs:
                    if pair.mask is None and reader.has_masks and values["unmatched_images"] == "drop":
                        counters["dropped_without_mask"] += 1
                        continue
                    start = time.perf_counter()
                    try:
                        intrinsics = frame_intrinsics(camera_info, pair.image)
                        outputs = processor.process(pair.image, pair.mask, intrinsics, markers_wanted=writer is not None)
                    except FrameRejected as error:
                        counters[error.reason] += 1
                        continue
                    latencies.append((time.perf_counter() - start) * 1000.0)
                    for stage, milliseconds in outputs.timings_ms.items():
                        stages[stage].append(milliseconds)
                    stamp_ns = stamp_nanoseconds(pair.image.header)
                    persons += len(outputs.bodies.bodies)
                    predicted_by_stamp[stamp_ns] = (frames, list(outputs.bodies.bodies))
                    frames += 1
                    if writer is not None:
                        writer.write(*OUTPUT_TOPICS["bodies"], stamp_ns, outputs.bodies)
                        writer.write(*OUTPUT_TOPICS["people"], stamp_ns, outputs.people)
                        if outputs.markers is not None:
                            writer.write(*OUTPUT_TOPICS["markers"], stamp_ns, outputs.markers)

            for item in reader.messages():
                bar.update(1)
                if item.role == "camera_info":
                    camera_info = item.message
                elif item.role == "ground_truth":
                    truth_by_stamp[stamp_nanoseconds(item.message.header)] = list(item.message.bodies)
                elif item.role == "mask":
                    stamp = stamp_seconds(item.message.header)
                    run(pairer.add_mask(stamp, item.message, stamp))
                else:
                    stamp = stamp_seconds(item.message.header)
                    if last_stamp is not None and stamp < last_stamp:
                        counters["time_jumped_back"] += 1
                    last_stamp = stamp
                    counters["images"] += 1
                    if reader.has_masks:
                        run(pairer.add_image(stamp, item.message, stamp))
                    else:
                        run([Pair(item.message, None)])
            run(pairer.expire(math.inf))
            bar.close()
            for stamp_ns, (frame, predicted) in predicted_by_stamp.items():
                if stamp_ns in truth_by_stamp:
                    accuracy.add(frame, predicted, truth_by_stamp[stamp_ns])
        except BaseException:
            if writer is not None:
                writer.close(keep=False)
            raise
        if writer is not None:
            writer.close()
        counters["masks_unpaired"] = pairer.masks_dropped
        counters["dropped_time_jump"] = pairer.images_dropped
        dropped = sum(value for name, value in counters.items() if name not in ("images", "time_jumped_back"))
        return {
            "frames": frames,
            "persons": persons,
            "dropped": dropped,
            "latency_ms": latency_percentiles(latencies),
            "metrics": accuracy.metrics(),
            "bag": str(bag),
            "out": str(out) if out is not None else None,
            "images": counters["images"],
            "drops": {name: value for name, value in sorted(counters.items())
                      if name not in ("images", "time_jumped_back") and value},
            "time_jumped_back": counters["time_jumped_back"],
            "has_masks": reader.has_masks,
            "ground_truth": {"persons": accuracy.truths, "missed": accuracy.missed} if reader.has_ground_truth else None,
            "stages_ms": {stage: round(float(np.median(values)), 2) for stage, values in stages.items()},
            "undecodable": reader.undecodable,
            "error": reader.error,
            "provider": pipeline.provider,
            "bundle": str(pipeline.bundle.path),
        }


def format_report(report: dict) -> str:
    """The report as lines for a person."""
    lines = [f"{report['bag']}: {report['frames']} frames processed of {report['images']} images, "
             f"{report['persons']} persons, {report['dropped']} dropped"
             + (f" ({', '.join(f'{k} {v}' for k, v in report['drops'].items())})" if report["drops"] else "")]
    if not report["has_masks"]:
        lines.append("  the bag has no mask topic: every frame ran without a mask (the whole image as one person)")
    latency = report["latency_ms"]
    if latency["p50"] is not None:
        lines.append(f"  latency per frame: p50 {latency['p50']} ms, p95 {latency['p95']} ms, max {latency['max']} ms "
                     f"({report['provider']})" + ("; stage medians: " + ", ".join(
                         f"{stage} {value} ms" for stage, value in report["stages_ms"].items())
                         if report["stages_ms"] else ""))
    metrics = report["metrics"]
    if metrics is not None:
        truth = report["ground_truth"]
        lines.append(f"  accuracy (mm): MPJPE {metrics['mpjpe']}, PA-MPJPE {metrics['pa_mpjpe']}, PVE {metrics['pve']}, "
                     f"accel {metrics['accel']} mm/frame^2; {truth['persons']} true persons, {truth['missed']} missed")
    elif report["ground_truth"] is None:
        lines.append("  no ground truth in the bag: no accuracy")
    if report["time_jumped_back"]:
        lines.append(f"  time jumped back {report['time_jumped_back']} times (tracks and pairing were reset)")
    if report["undecodable"]:
        lines.append(f"  {report['undecodable']} messages could not be decoded and were skipped")
    if report["error"]:
        lines.append(f"  the bag ended early: {report['error']}; the figures above cover what was read")
    if report["out"]:
        lines.append(f"  outputs written to {report['out']}")
    return "\n".join(lines)

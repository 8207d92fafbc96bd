"""`fasthmr replay BAG`: a recorded bag through the node's frame path, its outputs into a new bag, and the
latency, drops and (with ground truth in the bag) the accuracy.

In-process (default): the bag's messages go, in bag order and as fast as possible, through the objects the
node runs: InputRules with the node's parameters (pairing, the CameraInfo of the moment, unmatched images,
time jumps, drop counts) and FrameProcessor with the library's StreamPipeline (tracks, the temporal
decoder) and the markers, so results equal the node's for the same frames. The pairer's mask timeout
counts bag time here. A bag without a mask topic has every image processed without a mask.

Ground truth: fasthmr_msgs/SmplBodyArray on the ground-truth topic, stamped like the images it belongs to,
scored by the library's StreamAccuracy (box matching, the EMDB convention). `fasthmr replay --realtime`
(fasthmr_ros.realtime) gives the same ReplayReport from the real node over DDS.

Offline (`--offline`): a recording has the future, so besides the causal stream (what the node publishes,
and what --out writes) each track is decoded again with windows centred on each frame, the paper's mode
(fasthmr_model.decoder.runtime.decode_tracks_offline, on the encoder's outputs the stream gave), and scored
against the same truth.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.rotations import axis_angle_to_matrix
from fasthmr_model.body.skeleton import NUM_JOINTS
from fasthmr_model.metrics import StreamAccuracy
from fasthmr_model.errors import InputError
from fasthmr_model.stream import StreamPipeline, StreamResult
from fasthmr_ros.bags import BODIES_TYPE, MARKERS_TYPE, PEOPLE_TYPE, BagReader, BagTopics, BagWriter
from fasthmr_ros.diagnostics import DROP_COUNTERS
from fasthmr_ros.frame_processor import FrameProcessor, FrameRejected
from fasthmr_ros.inputs import COMPRESSED_SUFFIX, InputRules
from fasthmr_ros.parameters import INPUT_OPTIONS, build_config, load_defaults
from fasthmr_ros.stamps import stamp_nanoseconds, stamp_seconds

# Output topics in the written bag: the node's (`~/bodies` etc. of a node named fasthmr).
OUTPUT_TOPICS = {"bodies": ("/fasthmr/bodies", BODIES_TYPE), "people": ("/fasthmr/people", PEOPLE_TYPE),
                 "markers": ("/fasthmr/markers", MARKERS_TYPE)}


@dataclass
class ReplayReport:
    """What a replay measured; `fasthmr replay --json` prints as_dict().

    frames: frames answered with bodies; persons: bodies in them; images: images in the bag (sent, for
    --realtime); dropped: the sum of drops, by counter name (fasthmr_ros.diagnostics.DROP_COUNTERS, and for
    --realtime "unanswered": images the node's counters do not account for);
    time_jumped_back: images older than the one before; latency_ms: p50, p95, max per frame; stages_ms:
    median per stage (in-process only); metrics: mpjpe, pa_mpjpe, pve (mm), accel (mm/frame^2), or None;
    ground_truth: {"persons", "missed"} or None without a ground-truth topic; has_masks: the bag has a mask
    topic; undecodable: messages skipped; error: why the bag ended early, if it did; provider: where the
    encoder ran; node_exit_code: the node process's (--realtime only); offline (--offline only, else None):
    {"tracks": tracks decoded, "frames": person-frames decoded offline, "metrics": as metrics, or None}.
    """

    bag: str
    out: str | None
    bundle: str
    provider: str
    frames: int
    persons: int
    images: int
    drops: dict[str, int]
    time_jumped_back: int
    latency_ms: dict
    stages_ms: dict[str, float]
    metrics: dict | None
    ground_truth: dict | None
    has_masks: bool
    undecodable: int
    error: str | None
    node_exit_code: int | None = None
    offline: dict | None = None

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    def as_dict(self) -> dict:
        return dict(dataclasses.asdict(self), dropped=self.dropped)

    def nothing_replayed_reason(self) -> str:
        """Why no frame was answered (for a report with frames == 0)."""
        if self.images == 0:
            return ("the bag has no image on its image topic" + (f", and {self.undecodable} messages could not be "
                    "decoded" if self.undecodable else "") + (f"; {self.error}" if self.error else ""))
        if self.drops:
            return f"every image was dropped ({', '.join(f'{k} {v}' for k, v in self.drops.items())})"
        return f"{self.images} images read, none answered" + (f"; {self.error}" if self.error else "")

    def format(self) -> str:
        """The report as lines for a person."""
        lines = [f"{self.bag}: {self.frames} frames processed of {self.images} images, {self.persons} persons, "
                 f"{self.dropped} dropped" + (f" ({', '.join(f'{k} {v}' for k, v in self.drops.items())})"
                                              if self.drops else "")]
        if not self.has_masks:
            lines.append("  the bag has no mask topic: every frame ran without a mask (the whole image as one person)")
        latency = self.latency_ms
        if latency["p50"] is not None:
            stages = ", ".join(f"{stage} {value} ms" for stage, value in self.stages_ms.items())
            lines.append(f"  latency per frame: p50 {latency['p50']} ms, p95 {latency['p95']} ms, max {latency['max']} "
                         f"ms ({self.provider})" + (f"; stage medians: {stages}" if stages else ""))
        if self.metrics is not None:
            metrics, truth = self.metrics, self.ground_truth
            lines.append(f"  accuracy (mm): MPJPE {metrics['mpjpe']}, PA-MPJPE {metrics['pa_mpjpe']}, PVE "
                         f"{metrics['pve']}, accel {metrics['accel']} mm/frame^2; {truth['persons']} true persons, "
                         f"{truth['missed']} missed" + ("; causal (the stream)" if self.offline else ""))
        if self.offline is not None:
            offline = self.offline
            scored = offline["metrics"]
            lines.append(f"  offline (windows centred on each frame; {offline['tracks']} tracks, {offline['frames']} "
                         "person-frames): " + (f"MPJPE {scored['mpjpe']}, PA-MPJPE {scored['pa_mpjpe']}, PVE "
                                               f"{scored['pve']}, accel {scored['accel']} mm/frame^2"
                                               if scored else "no ground truth to score"))
        elif self.ground_truth is None:
            lines.append("  no ground truth in the bag: no accuracy")
        if self.time_jumped_back:
            lines.append(f"  time jumped back {self.time_jumped_back} times (tracks and pairing were reset)")
        if self.undecodable:
            lines.append(f"  {self.undecodable} messages could not be decoded and were skipped")
        if self.error:
            lines.append(f"  the bag ended early: {self.error}; the figures above cover what was read")
        if self.out:
            lines.append(f"  outputs written to {self.out}")
        return "\n".join(lines)


def default_topics() -> BagTopics:
    """The node's input topics (config/fasthmr.yaml) as a node in the root namespace resolves them (bags hold
    absolute names; `<topic>/compressed` where its transport is compressed), and the ground-truth topic. A raw
    topic that the bag lacks is also looked for as `<topic>/compressed`."""
    values = load_defaults()

    def absolute(name: str) -> str:
        return "/" + values[name].lstrip("/")

    image, mask = (absolute(f"{role}_topic") + (COMPRESSED_SUFFIX if values[f"{role}_transport"] == "compressed" else "")
                   for role in ("image", "mask"))
    return BagTopics(image, absolute("camera_info_topic"), mask)


def body_arrays(body_model: BodyModel, bodies: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (B, 4) (x0, y0, x1, y1), joints (B, 24, 3) and vertices (B, V, 3) of SmplBody messages, posed by
    the body model."""
    boxes = np.array([[body.box.x_offset, body.box.y_offset, body.box.x_offset + body.box.width,
                       body.box.y_offset + body.box.height] for body in bodies], np.float64).reshape(-1, 4)
    betas = np.array([body.betas for body in bodies], np.float64).reshape(len(bodies), -1)
    rotmats = axis_angle_to_matrix(np.array([body.pose for body in bodies], np.float64).reshape(-1, NUM_JOINTS, 3))
    translation = np.array([[body.translation.x, body.translation.y, body.translation.z] for body in bodies]
                           ).reshape(-1, 3)
    vertices, joints = body_model.forward(betas, rotmats, translation)
    return boxes, joints, vertices


def score(body_model: BodyModel, predicted: dict[int, tuple[int, list]], truth: dict[int, list]) -> StreamAccuracy:
    """The accuracy of predicted bodies {stamp ns: (frame number, [SmplBody])} against the true ones
    {stamp ns: [SmplBody]} of the same stamps."""
    return score_arrays(body_model, predicted, truth)


def score_arrays(body_model: BodyModel, predicted: dict[int, tuple[int, object]], truth: dict[int, list]
                 ) -> StreamAccuracy:
    """score() of predictions given per stamp as [SmplBody] or as arrays (boxes (B, 4), joints (B, 24, 3),
    vertices (B, V, 3))."""
    accuracy = StreamAccuracy()
    for stamp_ns, (frame, bodies) in sorted(predicted.items(), key=lambda item: item[1][0]):
        if stamp_ns in truth and truth[stamp_ns]:
            true_boxes, true_joints, true_vertices = body_arrays(body_model, truth[stamp_ns])
            if isinstance(bodies, tuple):
                boxes, joints, vertices = bodies
            elif bodies:
                boxes, joints, vertices = body_arrays(body_model, bodies)
            else:
                boxes, joints, vertices = np.zeros((0, 4)), np.zeros((0,) + true_joints.shape[1:]), None
            accuracy.add(frame, boxes, joints, vertices, true_boxes, [body.track_id for body in truth[stamp_ns]],
                         true_joints, true_vertices)
    return accuracy


class OfflineRecorder:
    """What offline decoding needs of each answered frame's persons (the stream's results), and the decoding
    of it all at the end of the bag (decode_tracks_offline)."""

    def __init__(self, stream: StreamPipeline) -> None:
        if stream.decoder is None:
            raise InputError(f"--offline decodes with the bundle's temporal decoder, and {stream.bundle.path} has "
                             "none: train one (`fasthmr train decoder`) or replay without --offline")
        self.stream = stream
        self.rows: list[tuple[int, int, StreamResult]] = []  # (stamp ns, frame number, result)

    def add(self, stamp_ns: int, frame: int, result: StreamResult) -> None:
        self.rows.append((stamp_ns, frame, result))

    def decode(self) -> tuple[dict, dict]:
        """-> ({stamp ns: (frame number, (boxes, joints, vertices))}, {"tracks", "frames"})."""
        from fasthmr_model.decoder.runtime import decode_tracks_offline

        results = [result for _, _, result in self.rows]
        if not results or not sum(len(result.track_ids) for result in results):
            return {}, {"tracks": 0, "frames": 0}
        track_ids = np.concatenate([result.track_ids for result in results])
        fields = {name: np.concatenate([getattr(result, name) for result in results])
                  for name in ("feature", "crop_rays", "encoder_rotmats", "betas", "translation", "boxes")}
        rotmats = decode_tracks_offline(self.stream.decoder.session, self.stream.body_model, track_ids,
                                        fields["feature"], fields["crop_rays"], fields["encoder_rotmats"],
                                        fields["betas"])
        vertices, joints = self.stream.body_model.forward(fields["betas"], rotmats, fields["translation"])
        predicted, start = {}, 0
        for stamp_ns, frame, result in self.rows:
            rows = slice(start, start + len(result.track_ids))
            predicted[stamp_ns] = (frame, (fields["boxes"][rows], joints[rows], vertices[rows]))
            start = rows.stop
        window = self.stream.decoder.session.window
        counts = np.unique(track_ids, return_counts=True)[1]
        return predicted, {"tracks": int((counts >= window).sum()), "frames": int(counts[counts >= window].sum())}


def latency_percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2),
            "max": round(float(np.max(values)), 2)}


def replay_bag(bag: str | Path, bundle: str | Path | None = None, out: str | Path | None = None,
               topics: BagTopics | None = None, progress: bool = True, out_storage: str = "mcap",
               offline: bool = False) -> ReplayReport:
    """Replays `bag` in-process through the node's path (see the module docstring); with `offline`, decodes
    every track again with windows centred on each frame and reports that beside the causal result.

    Raises InputError for a bag that cannot be opened or lacks the image or camera-info topic; a bag that
    ends early (truncated, corrupt) gives the frames read so far with `error` set in the report.
    """
    from tqdm import tqdm

    topics = topics or default_topics()
    values = load_defaults()
    stream = StreamPipeline(bundle, runtime=build_config("runtime", values),
                            preprocess=build_config("preprocess", values), stream=build_config("tracking", values))
    stream.warm_up()
    processor = FrameProcessor(stream, build_config("markers", values), build_config(INPUT_OPTIONS, values))
    recorder = OfflineRecorder(stream) if offline else None
    counters: Counter = Counter()
    latencies: list[float] = []
    stages: defaultdict = defaultdict(list)
    truth_by_stamp: dict[int, list] = {}
    predicted_by_stamp: dict[int, tuple[int, list]] = {}  # scored at the end: the truth may come after its frame
    persons = frames = 0
    with BagReader(bag, topics) as reader:
        inputs = InputRules(build_config("sync", values), build_config(INPUT_OPTIONS, values),
                            lambda name, amount: counters.update({name: amount}), masks_expected=reader.has_masks)
        writer = BagWriter(out, out_storage) if out is not None else None
        try:
            bar = tqdm(total=reader.message_count, disable=not progress, desc="replay", unit="msg")

            def run(ready):
                nonlocal persons, frames
                for frame in ready:
                    start = time.perf_counter()
                    try:
                        outputs = processor.process(frame, markers_wanted=writer is not None)
                    except FrameRejected as error:
                        counters[error.reason] += 1
                        continue
                    latencies.append((time.perf_counter() - start) * 1000.0)
                    counters["persons_over_cap"] += outputs.result.persons_over_cap
                    for stage, milliseconds in outputs.timings_ms.items():
                        stages[stage].append(milliseconds)
                    stamp_ns = stamp_nanoseconds(frame.image.header)
                    persons += len(outputs.bodies.bodies)
                    predicted_by_stamp[stamp_ns] = (frames, list(outputs.bodies.bodies))
                    if recorder is not None:
                        recorder.add(stamp_ns, frames, outputs.result)
                    frames += 1
                    if writer is not None:
                        writer.write(*OUTPUT_TOPICS["bodies"], stamp_ns, outputs.bodies)
                        writer.write(*OUTPUT_TOPICS["people"], stamp_ns, outputs.people)
                        if outputs.markers is not None:
                            writer.write(*OUTPUT_TOPICS["markers"], stamp_ns, outputs.markers)

            for item in reader.messages():
                bar.update(1)
                if item.role == "camera_info":
                    inputs.on_camera_info(item.message)
                elif item.role == "ground_truth":
                    truth_by_stamp[stamp_nanoseconds(item.message.header)] = list(item.message.bodies)
                elif item.role == "mask":
                    run(inputs.on_mask(item.message, stamp_seconds(item.message.header)))
                else:
                    counters["images"] += 1
                    run(inputs.on_image(item.message, stamp_seconds(item.message.header)))
            run(inputs.expire(math.inf))
            bar.close()
        except BaseException:
            if writer is not None:
                writer.close(keep=False)
            raise
        if writer is not None:
            writer.close()
        accuracy = score(stream.body_model, predicted_by_stamp, truth_by_stamp)
        offline_report = None
        if recorder is not None:
            offline_predicted, offline_report = recorder.decode()
            offline_report["metrics"] = score_arrays(stream.body_model, offline_predicted, truth_by_stamp).metrics()
        return ReplayReport(
            bag=str(bag), out=str(out) if out is not None else None, bundle=str(stream.bundle.path),
            provider=stream.provider, frames=frames, persons=persons, images=counters["images"],
            drops={name: counters[name] for name in DROP_COUNTERS if counters[name]},
            time_jumped_back=counters["time_jumped_back"], latency_ms=latency_percentiles(latencies),
            stages_ms={stage: round(float(np.median(values)), 2) for stage, values in stages.items()},
            metrics=accuracy.metrics(), has_masks=reader.has_masks,
            ground_truth={"persons": accuracy.truths, "missed": accuracy.missed} if reader.has_ground_truth else None,
            undecodable=reader.undecodable, error=reader.error, offline=offline_report)

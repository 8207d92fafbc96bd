"""`python -m fasthmr_ros.bench` (or `fasthmr_node_bench`): the node's own cost per frame, everything except
the model's ONNX Runtime session, at 640x480 with one and with three people.

Frames come from the synthetic world's renderer. Each frame goes the node's way without DDS: the image and
mask messages are deserialised from CDR bytes (as rclpy hands them to the callbacks), paired, converted,
preprocessed, run through the encoder session, posed by the body model, tracked, given velocities, turned
into output messages (bodies, people, TF, people_msgs, REP-155; `--joint-frames` adds every joint's TF frame),
and serialised (what rclpy does on publish). The session's time is measured around the session call and
subtracted; the rest is the overhead, in wall time (mean, and the quietest pass) and in CPU time of the node's
thread (the session runs on one thread here, on the caller's, and its CPU time is subtracted too): on a machine
shared with other jobs the wall time also counts the time they take. Stamps advance as from a 30 Hz camera;
three marker settings are timed: skeletons only (mesh_rate 0), the default 2 Hz mesh rate per track (the node
spreads the tracks' meshes over frames), and every track's mesh on every frame (the most a frame can cost). The
slowest frame kind of a setting shows in the p95 column.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np

CAMERA_RATE_HZ = 30.0
IMAGE_WIDTH, IMAGE_HEIGHT = 640, 480
STAGES = ("deserialise", "pairing", "convert", "preprocess", "body_model", "decoder", "velocity", "outputs",
          "serialise")


def synthetic_frames(body_model, people: int, count: int, seed: int = 0, width: int = IMAGE_WIDTH,
                     height: int = IMAGE_HEIGHT):
    """`count` rendered frames (640x480 by default) with exactly `people` visible persons: (image, instance
    mask, K)."""
    from fasthmr_model.data.render import _bench_bodies, render_scene, sample_scene

    frames, rng = [], np.random.default_rng(seed)
    while len(frames) < count:
        scene = sample_scene(rng, body_model, _bench_bodies(rng, people), width, height)
        frame = render_scene(scene, body_model)
        if len(np.unique(frame.instance_mask)) == people + 1:  # nobody fully hidden
            frames.append((frame.image, frame.instance_mask, frame.camera.intrinsics))
    return frames


def clip_frames(body_model, people: int, count: int, seed: int = 0):
    """`count` consecutive 640x480 frames of a rendered clip (30 frames/s) of `people` persons moving on the
    spot: (image, instance mask, K). Tracks continue from frame to frame, as from a camera."""
    from fasthmr_model.data.clips import render_clip

    return [(frame.image, frame.instance_mask, frame.camera.intrinsics)
            for frame in render_clip(seed, people, count, body_model, IMAGE_WIDTH, IMAGE_HEIGHT, CAMERA_RATE_HZ)]


def frame_messages(image: np.ndarray, mask: np.ndarray, intrinsics: np.ndarray, stamp: float):
    """A Frame (fasthmr_ros.inputs) of an rgb8 image, its mono8 mask and its CameraInfo, stamped `stamp` (s)."""
    from fasthmr_ros.image_conversion import array_to_image
    from fasthmr_ros.inputs import Frame
    from fasthmr_ros.recordings import camera_info_message, header_at

    header = header_at(round(stamp * 1e9))
    messages = array_to_image(image, "rgb8"), array_to_image(mask, "mono8")
    for message in messages:
        message.header = header
    return Frame(*messages, camera_info_message(header, intrinsics, image.shape[1], image.shape[0]))


class CpuTimedEncoder:
    """Wraps the stream's encoder session to record the process's CPU time of each run (with one
    intra-op thread, ONNX Runtime computes on the calling thread only)."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self.provider = encoder.provider
        self.last_cpu_ms = 0.0

    def run(self, images, person_tokens):
        start = time.process_time()
        output = self.encoder.run(images, person_tokens)
        self.last_cpu_ms = (time.process_time() - start) * 1e3
        return output


def published_messages(outputs) -> list:
    """The message objects the node publishes for a frame's FrameOutputs (the markers, TF and the REP-155 bodies'
    messages are serialised bytes already)."""
    messages = [outputs.bodies, outputs.people, outputs.people_msgs]
    if outputs.rep155 is not None:
        messages.append(outputs.rep155.tracked)
    return messages


MESH_RATES = {"skeleton": 0.0, "mesh 2 Hz": 2.0, "mesh every frame": 1000.0}


def time_frames(processor, frames, mesh_rate: float, repeats: int) -> dict[str, list[float]]:
    """Stage -> milliseconds per frame, over `repeats` passes over `frames` (after one untimed pass)."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from fasthmr_ros.inputs import InputOptions, InputRules
    from fasthmr_ros.pairing import PairingConfig
    from fasthmr_ros.stamps import stamp_from_seconds

    processor.markers.config = dataclasses.replace(processor.markers.config, mesh_rate=mesh_rate)
    timings: dict[str, list[float]] = {stage: [] for stage in STAGES + ("encoder", "overhead", "overhead cpu")}
    messages = [frame_messages(image, mask, intrinsics, 0.0) for image, mask, intrinsics in frames]
    serialised = [(serialize_message(message.image), serialize_message(message.mask)) for message in messages]
    inputs = InputRules(PairingConfig(), InputOptions(), lambda name, amount: None)
    stamp = 0.0
    for repeat in range(repeats + 1):
        for (image_bytes, mask_bytes), message in zip(serialised, messages):
            stamp += 1.0 / CAMERA_RATE_HZ
            inputs.on_camera_info(message.camera_info)
            start, start_cpu = time.perf_counter(), time.process_time()
            image_message = deserialize_message(image_bytes, Image)
            mask_message = deserialize_message(mask_bytes, Image)
            image_message.header.stamp = mask_message.header.stamp = stamp_from_seconds(stamp)
            deserialised = time.perf_counter()
            inputs.on_image(image_message, deserialised)
            (frame,) = inputs.on_mask(mask_message, deserialised)
            paired = time.perf_counter()
            outputs = processor.process(frame, markers_wanted=True)
            processed = time.perf_counter()
            for message in published_messages(outputs):
                serialize_message(message)
            done, done_cpu = time.perf_counter(), time.process_time()
            if repeat == 0:
                continue
            stage_ms = dict(outputs.timings_ms, deserialise=(deserialised - start) * 1e3,
                            pairing=(paired - deserialised) * 1e3, serialise=(done - processed) * 1e3)
            total = (done - start) * 1e3
            for stage in STAGES + ("encoder",):
                timings[stage].append(stage_ms[stage])
            timings["overhead"].append(total - stage_ms["encoder"])
            # CPU time of the process (the crop threads included): what the node itself spends, however busy the
            # machine is.
            timings["overhead cpu"].append((done_cpu - start_cpu) * 1e3 - processor.stream.frames.encoder.last_cpu_ms)
    return timings


def run(bundle_path: Path | None, frames_per_case: int, repeats: int, provider: str = "cpu",
        precision: str = "fp32", joint_frames: bool = False) -> None:
    from fasthmr_model.runtime import RuntimeConfig
    from fasthmr_model.stream import StreamPipeline
    from fasthmr_ros.frame_processor import FrameProcessor
    from fasthmr_ros.standard_outputs import StandardOutputsConfig

    stream = StreamPipeline(bundle_path, runtime=RuntimeConfig(provider=provider, precision=precision, threads=1))
    runtime_summary = stream.runtime_summary()  # before the encoder is wrapped
    stream.frames.encoder = CpuTimedEncoder(stream.frames.encoder)
    stream.warm_up()
    processor = FrameProcessor(stream, standard_outputs=StandardOutputsConfig(joint_frames=joint_frames))
    rows = []
    for people in (1, 3):
        frames = clip_frames(stream.body_model, people, frames_per_case, seed=people)
        for markers, mesh_rate in MESH_RATES.items():
            timings = time_frames(processor, frames, mesh_rate, repeats)
            # Means, not medians: the frames differ (crop sizes), and the stages of a frame add up to its overhead.
            means = {stage: float(np.mean(values)) for stage, values in timings.items()}
            # The quietest pass: what a frame costs when no other process takes the CPU away.
            means["best pass"] = float(np.reshape(timings["overhead"], (repeats, len(frames))).mean(axis=1).min())
            means["p95"] = float(np.percentile(timings["overhead"], 95))
            rows.append((people, markers, means))
    # Other processes on the machine slow every stage: the load says how busy it was.
    print(f"node overhead per frame, {IMAGE_WIDTH}x{IMAGE_HEIGHT}, mean ms over a {frames_per_case}-frame clip x "
          f"{repeats} passes (best pass: the lowest mean of one pass; p95 over frames); bundle {stream.bundle.path} "
          f"on {runtime_summary}{'; per-joint TF frames' if joint_frames else ''}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    header = ["people", "markers"] + list(STAGES) + ["overhead", "best pass", "p95", "CPU", "encoder (excluded)"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for people, markers, means in rows:
        cells = [str(people), markers] + [f"{means[stage]:.2f}" for stage in STAGES]
        cells += [f"**{means['overhead']:.2f}**", f"{means['best pass']:.2f}", f"{means['p95']:.2f}",
                  f"{means['overhead cpu']:.2f}", f"{means['encoder']:.1f}"]
        print(" | ".join(cells))


def main(argv: list[str] | None = None) -> None:
    from fasthmr_model.providers import PRECISIONS
    from fasthmr_model.runtime import PROVIDER_CHOICES

    parser = argparse.ArgumentParser(prog="fasthmr_node_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="model bundle (default: the shipped one, else an untrained "
                                                    "tiny bundle written to a temporary folder)")
    parser.add_argument("--frames", type=int, default=30, help="frames of each rendered clip (default 30)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the clip (default 5)")
    parser.add_argument("--provider", default="cpu", choices=PROVIDER_CHOICES,
                        help="the sessions' ONNX Runtime provider (default: %(default)s)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="(default: %(default)s)")
    parser.add_argument("--joint-frames", action="store_true", help="also every joint's TF frame "
                        "(the node's outputs.joint_frames)")
    args = parser.parse_args(argv)
    from fasthmr_model.errors import FastHMRError

    try:
        _bench(args)
    except FastHMRError as error:  # e.g. a provider that cannot load: one line, as `fasthmr` prints it
        parser.exit(2, f"{parser.prog}: error: {error}\n")


def _bench(args: argparse.Namespace) -> None:
    from fasthmr_model.bundle import default_bundle_path

    if args.bundle is not None or (default_bundle_path() / "manifest.json").is_file():
        run(args.bundle, args.frames, args.repeats, args.provider, args.precision, args.joint_frames)
        return
    from fasthmr_model.export import write_untrained_bundle

    with tempfile.TemporaryDirectory(prefix="fasthmr-bench-") as folder:
        print("no default bundle is shipped yet: timing with an untrained tiny bundle (the overhead does not "
              "depend on the weights)")
        run(write_untrained_bundle("tiny", Path(folder) / "tiny", seed=0).path, args.frames, args.repeats,
            args.provider, args.precision, args.joint_frames)


if __name__ == "__main__":
    main()

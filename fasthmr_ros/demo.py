"""`fasthmr demo` (`make demo`): the project's main job on its embedded default, in a few minutes.

1. If absent, writes the demo bag: synthetic clips (fasthmr_model.data.clips) of one, two and three people in
   front of a still robot camera, 640x480 at 30 frames/s, with instance masks, CameraInfo and ground truth,
   on the node's default topics (one second of silence between clips, so tracks end).
2. Replays it through the node's frame path (fasthmr_ros.replay) with the default bundle, writing the
   outputs into a bag in the report folder.
3. Writes the report folder: README.md (frames, persons, drops, latency, accuracy), latency.png (per-frame
   latency against MPJPE, the replay's throughput-vs-accuracy point), and frames with the recovered meshes
   drawn over the camera images.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fasthmr_model.data.world import default_cache

if TYPE_CHECKING:
    from fasthmr_ros.replay import ReplayReport

# (seed, people, frames) of each clip.
DEMO_CLIPS = ((101, 1, 45), (102, 2, 45), (103, 3, 45))
CLIP_GAP_NS = 10**9
OVERLAY_FRAMES = 6  # frames with meshes in the report


def demo_folder() -> Path:
    return default_cache().parent / "demo"


def write_demo_bag(path: Path) -> int:
    """The demo bag at `path` (see the module docstring); returns its frame count."""
    from fasthmr_model.data.motion import synthetic_body_model
    from fasthmr_ros.recordings import synthetic_clip_frames, write_recording
    from fasthmr_ros.replay import default_topics

    body = synthetic_body_model()

    def frames():
        start = 0
        for seed, people, count in DEMO_CLIPS:
            last = None
            for frame in synthetic_clip_frames(seed, people, count, body, start_ns=start):
                last = frame.stamp_ns
                yield frame
            start = last + CLIP_GAP_NS

    return write_recording(path, frames(), body, default_topics())


def _overlay_images(bag: Path, outputs: Path, folder: Path, body_model) -> list[Path]:
    """OVERLAY_FRAMES frames spread over the bag, with the replay's meshes drawn over the camera images."""
    from PIL import Image as PilImage

    from fasthmr_model.body.rotations import axis_angle_to_matrix
    from fasthmr_model.body.skeleton import NUM_JOINTS
    from fasthmr_model.figures import overlay_mesh
    from fasthmr_ros.bags import BagReader, read_topic
    from fasthmr_ros.stamps import stamp_nanoseconds
    from fasthmr_ros.image_conversion import image_to_rgb
    from fasthmr_ros.replay import OUTPUT_TOPICS, default_topics

    bodies = {}
    for _, message in read_topic(outputs, OUTPUT_TOPICS["bodies"][0]):
        bodies[stamp_nanoseconds(message.header)] = message.bodies
    wanted = set(sorted(bodies)[:: max(1, len(bodies) // OVERLAY_FRAMES)][:OVERLAY_FRAMES])
    written, camera_info = [], None
    with BagReader(bag, default_topics()) as reader:
        for item in reader.messages():
            if item.role == "camera_info":
                camera_info = item.message
            if item.role != "image":
                continue
            stamp = stamp_nanoseconds(item.message.header)
            if stamp not in wanted:
                continue
            image = image_to_rgb(item.message)
            intrinsics = np.array(camera_info.k).reshape(3, 3)
            for body in bodies[stamp]:
                rotmats = axis_angle_to_matrix(np.array(body.pose, np.float64).reshape(1, NUM_JOINTS, 3))
                translation = np.array([[body.translation.x, body.translation.y, body.translation.z]])
                vertices, _ = body_model.forward(np.array([body.betas], np.float64), rotmats, translation)
                image = overlay_mesh(image, vertices[0], body_model.faces, intrinsics)
            path = folder / f"frame_{len(written):02d}.jpg"
            PilImage.fromarray(image).save(path, quality=85)
            written.append(path)
    return written


def _latency_plot(report: ReplayReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latency = report.latency_ms
    throughput = 1000.0 / latency["p50"]
    figure, axis = plt.subplots(figsize=(5, 3.5), dpi=100)
    axis.scatter([throughput], [report.metrics["mpjpe"]], s=60)
    axis.annotate("default tiny bundle", (throughput, report.metrics["mpjpe"]), textcoords="offset points",
                  xytext=(6, 6))
    axis.set_xlabel("frames per second (1 / median latency, this machine)")
    axis.set_ylabel("MPJPE (mm, synthetic demo bag)")
    axis.set_xlim(0, throughput * 1.5)
    axis.set_ylim(0, report.metrics["mpjpe"] * 1.5)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _summary(report: ReplayReport, images: list[Path], seconds: float) -> str:
    metrics, latency = report.metrics, report.latency_ms
    lines = [
        "# FastHMR demo report",
        "",
        f"Bag `{report.bag}` (synthetic: {len(DEMO_CLIPS)} clips of 1-3 people, 640x480, 30 frames/s, with ground "
        f"truth), replayed through the node's frame path with `{report.bundle}` on {report.provider}.",
        "",
        "| frames | persons | dropped | latency p50 | p95 | max |",
        "|---|---|---|---|---|---|",
        f"| {report.frames} | {report.persons} | {report.dropped} | {latency['p50']} ms | {latency['p95']} ms "
        f"| {latency['max']} ms |",
        "",
        "| MPJPE | PA-MPJPE | PVE | acceleration error |",
        "|---|---|---|---|",
        f"| {metrics['mpjpe']} mm | {metrics['pa_mpjpe']} mm | {metrics['pve']} mm | {metrics['accel']} mm/frame^2 |",
        "",
        "Median per stage: " + ", ".join(f"{stage} {value} ms" for stage, value in report.stages_ms.items()) + ".",
        "",
        f"Whole demo: {seconds:.0f} s. Outputs: `{report.out}` (open it in Foxglove or replay it into RViz).",
        "",
        "![throughput against MPJPE](latency.png)",
        "",
    ] + [f"![{path.stem}]({path.name})" for path in images]
    return "\n".join(lines) + "\n"


def run_demo(bundle: str | None = None, out: Path | None = None) -> Path:
    """Runs the demo; returns the report folder (printed too)."""
    import time

    from fasthmr_model.body.lbs import BodyModel
    from fasthmr_model.bundle import load_bundle
    from fasthmr_ros.replay import replay_bag

    start = time.perf_counter()
    folder = demo_folder()
    bag = folder / "demo_bag"
    if not bag.exists():
        print(f"writing the demo bag {bag} (synthetic clips, rendered here) ...")
        count = write_demo_bag(bag)
        print(f"  {count} frames")
    out = out or folder / "report"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    report = replay_bag(bag, bundle, out / "outputs", progress=True)
    print(report.format())
    body_model = BodyModel.from_file(load_bundle(bundle).body_model_path)
    images = _overlay_images(bag, out / "outputs", out, body_model)
    _latency_plot(report, out / "latency.png")
    (out / "report.json").write_text(json.dumps(report.as_dict(), indent=1))
    (out / "README.md").write_text(_summary(report, images, time.perf_counter() - start))
    print(f"report: {out / 'README.md'}")
    return out

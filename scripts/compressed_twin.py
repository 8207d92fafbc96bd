"""A compressed bag against its raw twin: `python scripts/compressed_twin.py [--frames 10] [--quality 95]`.

Writes the same synthetic clip (two people, 640x480) twice, raw (rgb8 images, mono8 masks) and as
image_transport would record it compressed (JPEG images at --quality, PNG masks on `<topic>/compressed`),
replays both in-process through the node's path (`fasthmr replay`), and prints their sizes, the replays'
MPJPE against the truth, and how far the compressed twin's joints are from the raw one's (mean and max over
persons of the mean joint distance, camera frame, translation included).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from fasthmr_model.data.motion import synthetic_body_model
from fasthmr_ros.bags import read_topic
from fasthmr_ros.recordings import synthetic_clip_frames, write_recording
from fasthmr_ros.replay import OUTPUT_TOPICS, default_topics, replay_bag


def folder_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality (1-100)")
    args = parser.parse_args()
    body = synthetic_body_model()
    clip = list(synthetic_clip_frames(7, 2, args.frames, body))
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_recording(folder / "raw", clip, body, default_topics())
        write_recording(folder / "compressed", clip, body, default_topics(), image_codec="jpeg", mask_codec="png",
                        image_quality=args.quality)
        bodies, reports = {}, {}
        for name in ("raw", "compressed"):
            reports[name] = replay_bag(folder / name, out=folder / f"{name}_out", progress=False)
            bodies[name] = dict(read_topic(folder / f"{name}_out", OUTPUT_TOPICS["bodies"][0]))
        distances = []
        for stamp, message in bodies["raw"].items():
            twin = bodies["compressed"][stamp].bodies
            assert [body.track_id for body in message.bodies] == [body.track_id for body in twin]
            joints = [np.reshape([body.joints for body in group], (-1, 24, 3)) for group in (message.bodies, twin)]
            distances.append(np.linalg.norm(joints[0] - joints[1], axis=-1).mean(axis=-1))
        distances = np.concatenate(distances) * 1000.0
        for name, report in reports.items():
            print(f"{name}: {folder_bytes(folder / name)} bytes, {report.frames} frames, {report.persons} persons, "
                  f"MPJPE {report.metrics['mpjpe']} mm, PA-MPJPE {report.metrics['pa_mpjpe']} mm")
        print(f"compressed vs raw joints: mean {distances.mean():.2f} mm, max {distances.max():.2f} mm over "
              f"{len(distances)} persons (same track ids)")


if __name__ == "__main__":
    main()

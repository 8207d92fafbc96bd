"""What a crowded frame costs the node: `python scripts/crowd_frame.py [--instances 1000] [--repeats 5]`.

Runs the node's frame path (FrameProcessor over the library's StreamPipeline, the shipped bundle, the
default parameters) on 640x480 frames with a 16UC1 instance mask, side by side: a frame with exactly
preprocess.max_persons persons, a frame with `--instances` small instances (the probe's 600 kB mask), and
the ordinary frame that follows it. Prints the median wall time of each, the persons encoded and skipped,
and the process's resident memory after each kind (and its peak).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path
from statistics import median

import numpy as np


def resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def grid_mask(instances: int, side: int, shape=(480, 640)) -> np.ndarray:
    """`instances` square persons of side x side pixels on a grid, instance ids 1.. (16-bit)."""
    mask = np.zeros(shape, np.uint16)
    per_row = shape[1] // (side + 2)
    for index in range(instances):
        top, left = (index // per_row) * (side + 2), (index % per_row) * (side + 2)
        mask[top:top + side, left:left + side] = index + 1
    return mask


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    from fasthmr_model.stream import StreamPipeline
    from fasthmr_ros.bench import frame_messages
    from fasthmr_ros.frame_processor import FrameProcessor
    from fasthmr_ros.image_conversion import array_to_image

    stream = StreamPipeline()
    stream.warm_up()
    processor = FrameProcessor(stream)
    cap = stream.preprocess.max_persons
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    intrinsics = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    masks = {f"{cap} persons (the cap)": grid_mask(cap, 90), f"{args.instances} instances": grid_mask(args.instances, 14),
             "the next frame": grid_mask(2, 150)}
    times = {kind: [] for kind in masks}
    memory, persons = {}, {}
    stamp = 0.0
    for _ in range(args.repeats):
        for kind, mask in masks.items():
            stamp += 1.0
            frame = frame_messages(image, np.zeros(mask.shape, np.uint8), intrinsics, stamp)
            mask_message = array_to_image(mask, "mono16")
            mask_message.header = frame.image.header
            start = time.perf_counter()
            outputs = processor.process(frame._replace(mask=mask_message), markers_wanted=False)
            times[kind].append((time.perf_counter() - start) * 1000)
            memory[kind] = resident_mb()
            persons[kind] = (len(outputs.result.ids), outputs.result.persons_over_cap)
    print(f"node frame path, 640x480, 16UC1 masks, shipped bundle on {stream.provider}, max_persons {cap}; "
          f"median of {args.repeats}")
    print("frame | ms | persons encoded | skipped over the cap | resident MB after")
    print("--- | --- | --- | --- | ---")
    for kind in masks:
        print(f"{kind} | {median(times[kind]):.1f} | {persons[kind][0]} | {persons[kind][1]} | {memory[kind]:.0f}")
    print(f"peak resident memory of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

"""The stream's velocity against the truth on rendered walks, per velocity window (docs/node.md, "Outputs").

    python scripts/walk_velocity.py [--windows 0.5 1.0] [--seeds 4 5 6]

For each seed, one person walks in a rendered 320x240 clip at 30 frames/s (fasthmr_model.data.clips, motion
"walk"); frames 30-65 (the walk at its speed) go through StreamPipeline with the shipped bundle, once per
velocity window. Printed per seed and window: the largest and the median error (m/s) from 0.5 s on, against the
true pelvis joint's displacement over the same window divided by its duration, and the largest error per axis.
"""

from __future__ import annotations

import argparse

import numpy as np

FPS = 30.0
FIRST_FRAME, FRAMES = 30, 36


def main() -> None:
    from fasthmr_model.data.clips import render_clip
    from fasthmr_model.data.motion import synthetic_body_model
    from fasthmr_model.stream import StreamConfig, StreamPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[4, 5, 6])
    args = parser.parse_args()
    body = synthetic_body_model()
    bundle = StreamPipeline().bundle
    print("seed | window (s) | walking speed (m/s) | max error (m/s) | median error (m/s) | max error x, y, z")
    for seed in args.seeds:
        frames = render_clip(seed, 1, FIRST_FRAME + FRAMES, body, 320, 240, FPS, motion_names=("walk",))[FIRST_FRAME:]
        truth = np.array([body.forward(frame.people[0].betas[None], frame.people[0].rotmats[None],
                                       frame.people[0].translation[None], with_vertices=False)[1][0, 0]
                          for frame in frames])
        speed = np.linalg.norm(truth[-1] - truth[0]) / ((FRAMES - 1) / FPS)
        for window in args.windows:
            stream = StreamPipeline(bundle, stream=StreamConfig(velocity_window=window))
            errors = []
            for index, frame in enumerate(frames):
                result = stream.process(frame.image, frame.instance_mask, frame.camera.intrinsics, index / FPS)
                if index >= FPS / 2 and len(result.track_ids):
                    first = max(0, index - int(round(window * FPS)))
                    true_velocity = (truth[index] - truth[first]) / ((index - first) / FPS)
                    errors.append(np.abs(result.velocity[0] - true_velocity))
            errors = np.array(errors)
            norms = np.linalg.norm(errors, axis=1)
            print(f"{seed} | {window:g} | {speed:.2f} | {norms.max():.3f} | {np.median(norms):.3f} | "
                  + ", ".join(f"{value:.2f}" for value in errors.max(axis=0)), flush=True)


if __name__ == "__main__":
    main()

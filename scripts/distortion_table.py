"""Lens distortion, measured: `python scripts/distortion_table.py [--clips 6] [--frames 24] [--json] [--cost-only]`.

Renders synthetic clips (fasthmr_model.data.clips, 640x480), warps each frame's image and instance mask through
a known plumb_bob lens (fasthmr_model.data.lens.distorted_view, the clip's own K), and runs the shipped bundle's
stream (StreamPipeline: crops, encoder, tracks, temporal decoder) three ways, side by side:

    undistorted render   the render itself with K (the reference)
    D honoured           the distorted frames with CameraModel(K, "plumb_bob", D)
    D ignored            the distorted frames with K alone (what the node did before it read D)

and prints, per way, MPJPE (mm, EMDB convention: hips-centred) and the translation error (mm, the pelvis
joint's position in the camera frame) over the persons found in each frame (matched to the truth by instance id),
and what cropping costs per person on the first clip's first frame, pinhole path and through the lens side by
side (median of interleaved rounds).
"""

from __future__ import annotations

import argparse
import json
import time
from statistics import median

import numpy as np

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.data.clips import render_clip
from fasthmr_model.data.crop import prepare_persons
from fasthmr_model.data.lens import CameraModel, distorted_view
from fasthmr_model.metrics import EMDB_ROOT_JOINTS, mpjpe
from fasthmr_model.stream import StreamPipeline

# A wide-angle robot camera's barrel distortion (k1, k2, p1, p2, k3): the image corners move about 60 px
# inward at a 90-degree field of view.
PLUMB_BOB = (-0.28, 0.08, 0.0005, -0.0003, 0.0)
WAYS = ("undistorted render", "D honoured", "D ignored")


def measure(clips: int, frames: int, seed: int = 2026) -> dict:
    stream = StreamPipeline()
    body_model = BodyModel.from_file(stream.bundle.body_model_path)
    errors = {way: {"mpjpe": [], "translation": []} for way in WAYS}
    for clip in range(clips):
        rendered = render_clip([seed, clip], 1 + clip % 3, frames, body_model)
        camera = CameraModel(rendered[0].camera.intrinsics, "plumb_bob", PLUMB_BOB)
        inputs = {way: [] for way in WAYS}
        for frame in rendered:
            image, mask = distorted_view(frame.image, frame.instance_mask, camera)
            inputs["undistorted render"].append((frame.image, frame.instance_mask, camera.intrinsics))
            inputs["D honoured"].append((image, mask, camera))
            inputs["D ignored"].append((image, mask, camera.intrinsics))
        for way in WAYS:
            stream.reset()
            for index, (frame, (image, mask, lens)) in enumerate(zip(rendered, inputs[way])):
                result = stream.process(image, mask, lens, index / 30.0)
                truth = {person.instance_id: person for person in frame.people if person.visible_pixels > 0}
                for row, instance in enumerate(result.ids.tolist()):
                    if instance not in truth:
                        continue
                    true_joints = truth[instance].joints_3d
                    errors[way]["mpjpe"].append(float(mpjpe(result.joints[row], true_joints, EMDB_ROOT_JOINTS)))
                    errors[way]["translation"].append(
                        1000.0 * float(np.linalg.norm(result.joints[row, 0] - true_joints[0])))
    return {way: {"persons": len(values["mpjpe"]), "mpjpe_mm": round(float(np.mean(values["mpjpe"])), 1),
                  "translation_mm": round(float(np.mean(values["translation"])), 1)}
            for way, values in errors.items()}


def crop_cost_ms(seed: int = 2026, repeats: int = 30) -> dict:
    """ms per person of prepare_persons on a distorted frame, the pinhole path (D ignored) and the lens's: the
    median and the fastest of interleaved rounds (the fastest is the one a busy machine disturbs least)."""
    stream = StreamPipeline()
    frame = render_clip([seed, 0], 1, 1, BodyModel.from_file(stream.bundle.body_model_path))[0]
    camera = CameraModel(frame.camera.intrinsics, "plumb_bob", PLUMB_BOB)
    image, mask = distorted_view(frame.image, frame.instance_mask, camera)
    times = {"pinhole": [], "lens": []}
    for _ in range(repeats):
        for way, lens in (("pinhole", None), ("lens", camera)):
            start = time.perf_counter()
            crops = prepare_persons(image, mask, camera=lens)
            times[way].append((time.perf_counter() - start) * 1000.0 / max(len(crops.ids), 1))
    return {way: {"median": round(median(values), 2), "fastest": round(min(values), 2)}
            for way, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6, help="clips of 1, 2, 3, 1, ... people")
    parser.add_argument("--frames", type=int, default=24, help="frames per clip")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cost-only", action="store_true", help="only the crop's cost per person")
    args = parser.parse_args()
    cost = crop_cost_ms()
    table = {} if args.cost_only else measure(args.clips, args.frames)
    if args.json:
        print(json.dumps({"plumb_bob": PLUMB_BOB, "results": table, "crop_ms_per_person": cost}, indent=2))
        return
    if table:
        print(f"plumb_bob D = {PLUMB_BOB}; {args.clips} clips x {args.frames} frames, 640x480")
        print("| input | persons | MPJPE (mm) | translation error (mm) |")
        print("|---|---|---|---|")
        for way, row in table.items():
            print(f"| {way} | {row['persons']} | {row['mpjpe_mm']} | {row['translation_mm']} |")
    print("crop per person (median / fastest): " + ", ".join(
        f"{way} {values['median']} / {values['fastest']} ms" for way, values in cost.items()))


if __name__ == "__main__":
    main()

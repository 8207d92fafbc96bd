"""The measurements behind ECLM's and Mask-ToMe's choices (validation split) and the README's tables (test split).

    python -m fasthmr_model.merge_study --bundle B --out study.json [--device cuda] [--frames N]

Every choice is compared on `val` with the trained encoder (merging is training-free: the encoder was trained
without it): the similarity features, where in the block tokens merge, proportional attention, the
schedule, the mask->token rule, the crowd policy (accuracy by person-token count), and which tensors ECLM
merges. Then, on `test`: ECLM at several tau (like the paper's Tab. 2, windows calibrated on `val`) and
base / ECLM / Mask-ToMe / plain ToMe without a mask / both (like Tab. 11). Numbers are MPJPE in mm
(EMDB convention), scored in PyTorch; `fasthmr bench` scores the exported graphs in ONNX Runtime.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import torch

from fasthmr_model.bench import DEFAULT_TAU_MM
from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.bundle import load_bundle
from fasthmr_model.data import world
from fasthmr_model.data.crop import crop_mask, person_token_fraction, prepare_persons
from fasthmr_model.encoder.eclm import search_merge_windows
from fasthmr_model.encoder.merge_plan import PAPER_TOKEN_SCHEDULE, MergePlan, encoder_macs, schedule_for
from fasthmr_model.merging import PlanEvaluator, original_encoder

TAUS_MM = (1.0, 5.0, 10.0, 15.0, 20.0, 30.0)
SECTIONS = ("tokens", "crowds", "eclm", "tau", "test")
MASK_RULE_FRACTIONS = (0.0, 0.25, 0.5)
PERSON_TOKEN_BINS = ((0, 60), (61, 90), (91, 102), (103, 120), (121, 192))
SCHEDULES = ((40, 40, 22), (22, 40, 40), (96, 6), (30, 30, 30, 12), (20, 20, 20, 20, 20, 2))
REMAINING_TOKENS = (152, 130, 110, 90, 70, 50)


def _fraction_worker(args: tuple) -> list[np.ndarray]:
    spec, body_path, frame_range = args
    body = BodyModel.from_file(body_path)
    pool = world.motion_pool(spec, body)
    rows = []
    for index in range(*frame_range):
        frame = world.render_frame(spec, index, body, pool)
        crops = prepare_persons(frame.image, frame.instance_mask)
        for instance_id, crop_box in zip(crops.ids, crops.crop_boxes):
            rows.append(person_token_fraction(crop_mask(frame.instance_mask == instance_id, crop_box)))
    return rows


def token_fractions(crops, body_path: Path, workers: int) -> np.ndarray:
    """Per crop of a built split, the fraction of each token's footprint that the person covers (N, 192).

    The split caches only the flags (any overlap); the fractions come from rendering its frames again
    (deterministic), in the same order, and are checked against the cached flags.
    """
    recorded = json.loads((crops.folder / "split.json").read_text())
    spec = dataclasses.replace(world.split(recorded["name"]), frames=recorded["frames"])
    step = max(1, -(-spec.frames // max(1, workers * 4)))
    jobs = [(spec, str(body_path), (start, min(start + step, spec.frames))) for start in range(0, spec.frames, step)]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_fraction_worker, jobs)
    else:
        parts = [_fraction_worker(job) for job in jobs]
    fractions = np.array([row for part in parts for row in part], np.float32)
    if fractions.shape != (len(crops), 192) or not np.array_equal(fractions > 0, np.asarray(crops.person_tokens) > 0):
        raise RuntimeError(f"re-rendering {crops.folder} did not reproduce its crops; rebuild the split")
    return fractions


def run_study(bundle_path: str | None, world_cache: Path, frames: int | None, device: str, workers: int,
              sections: tuple[str, ...] = SECTIONS, progress=print) -> dict:
    bundle = load_bundle(bundle_path)
    body_path = world.synthetic_body_path(world_cache)
    splits = {name: world.load_crop_set(world.build_split(name, world_cache, body_path, workers=workers,
                                                          frames=frames, progress=False)) for name in ("val", "test")}
    original = original_encoder(bundle)
    body = BodyModel.from_file(bundle.body_model_path)
    val = PlanEvaluator(original, splits["val"], body, device=device)
    test = PlanEvaluator(original, splits["test"], body, device=device)
    config = original.config
    default = MergePlan(token_schedule=PAPER_TOKEN_SCHEDULE)
    result: dict = {"bundle": str(bundle.path), "val_persons": len(splits["val"]), "test_persons": len(splits["test"])}

    def row(plan: MergePlan, evaluator: PlanEvaluator = val, flags=None) -> dict:
        scores = evaluator.per_person(plan, flags)
        return {"mpjpe": round(float(scores["mpjpe"].mean()), 2), "pa_mpjpe": round(float(scores["pa_mpjpe"].mean()), 2),
                "macs_ratio": round(encoder_macs(config) / encoder_macs(config, plan), 3)}

    result["val_base"] = row(MergePlan())
    if "tokens" in sections:
        result.update(_token_choices(row, default))
        progress("val: mask->token rule (re-rendering the split for the coverage fractions)")
        fractions = token_fractions(splits["val"], body_path, workers)
        result["val_mask_rule"] = []
        for threshold in MASK_RULE_FRACTIONS:
            flags = (fractions > 0) if threshold == 0 else (fractions >= threshold)
            result["val_mask_rule"].append({"min_fraction": threshold, "mean_person_tokens":
                                            round(float(flags.sum(1).mean()), 1), **row(default, flags=flags)})
    if "crowds" in sections:
        result.update(_crowds(val, row, default))
    if "eclm" in sections:
        progress("val: ECLM tensors (each pair of neighbouring blocks merged alone)")
        result["val_eclm_pairs"] = [
            {"blocks": [first, first + 1], **{tensors: row(MergePlan(merged_windows=((first, first + 1),),
                                                                     eclm_tensors=tensors))["mpjpe"]
                                              for tensors in ("all", "linear")}}
            for first in range(config.depth - 1)]

    def calibrated(tau: float) -> MergePlan:
        search = search_merge_windows(config.depth, lambda w: val.mpjpe(MergePlan(merged_windows=tuple(w))), tau)
        return MergePlan(merged_windows=tuple(search.windows))

    if "tau" in sections:
        progress("ECLM: calibration on val at each tau, scored on test")
        result["tau_table"] = []
        for tau in TAUS_MM:
            plan = calibrated(tau)
            result["tau_table"].append({"tau_mm": tau, "blocks": len(plan.block_groups(config.depth)),
                                        "merged_blocks": [list(range(a, b + 1)) for a, b in plan.merged_windows],
                                        "val_mpjpe": round(val.mpjpe(plan), 2), **row(plan, test)})
    if "test" in sections:
        progress(f"test: base / ECLM (tau {DEFAULT_TAU_MM} mm) / Mask-ToMe / plain ToMe / both")
        eclm = calibrated(DEFAULT_TAU_MM)
        both = dataclasses.replace(eclm, token_schedule=PAPER_TOKEN_SCHEDULE)
        test_zeros = np.zeros((len(splits["test"]), 192), np.float32)
        result["test_table"] = {
            "eclm_merged_blocks": [list(range(a, b + 1)) for a, b in eclm.merged_windows],
            "base": row(MergePlan(), test), "eclm": row(eclm, test), "mask_tome": row(default, test),
            "plain_tome_no_mask": row(default, test, test_zeros), "both": row(both, test),
            "both_no_mask": row(both, test, test_zeros)}
    return result


def _token_choices(row, default: MergePlan) -> dict:
    """Similarity features x merge point x proportional attention; schedules at M' = 90; token budgets."""
    result = {}
    result["val_token_options"] = [
        {"similarity": similarity, "merge_point": point, "proportional_attention": proportional,
         **row(dataclasses.replace(default, similarity=similarity, merge_point=point,
                                   proportional_attention=proportional))}
        for similarity in ("keys", "tokens") for point in ("after_attention", "after_mlp")
        for proportional in (True, False)]
    result["val_schedules"] = [{"schedule": list(s), **row(dataclasses.replace(default, token_schedule=s))}
                               for s in SCHEDULES]
    result["val_token_budgets"] = [{"remaining": m, "schedule": list(schedule_for(m)),
                                    **row(dataclasses.replace(default, token_schedule=schedule_for(m)))}
                                   for m in REMAINING_TOKENS]
    return result


def _crowds(val: PlanEvaluator, row, default: MergePlan) -> dict:
    """MPJPE by person-token count for the base model, Mask-ToMe's two crowd policies and plain ToMe; and
    every token flagged as person (the extreme crowd)."""
    result = {}
    counts = np.asarray(val.crops.person_tokens).sum(1)
    zeros = np.zeros((len(counts), 192), np.float32)
    ones = np.ones((len(counts), 192), np.float32)
    per_bin = {"base": val.per_person(MergePlan())["mpjpe"],
               "tiers": val.per_person(default)["mpjpe"],
               "exclude": val.per_person(dataclasses.replace(default, crowd_policy="exclude"))["mpjpe"],
               "plain_tome": val.per_person(default, zeros)["mpjpe"]}
    result["val_crowds"] = []
    for low, high in PERSON_TOKEN_BINS:
        chosen = (counts >= low) & (counts <= high)
        if chosen.any():
            result["val_crowds"].append({"person_tokens": f"{low}-{high}", "persons": int(chosen.sum()),
                                         **{name: round(float(v[chosen].mean()), 2) for name, v in per_bin.items()}})
    result["val_all_person_flags"] = {
        policy: row(dataclasses.replace(default, crowd_policy=policy), flags=ones)["mpjpe"]
        for policy in ("tiers", "exclude")}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fasthmr_model.merge_study", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", help="unmerged bundle (default: the shipped default bundle)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--cache", type=Path, default=world.default_cache())
    parser.add_argument("--frames", type=int, help="only the first N frames of each split (smoke runs)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args(argv)
    # Full float32 on GPUs too (cuDNN would otherwise run the patch convolution in TF32).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    result = run_study(args.bundle, args.cache, args.frames, args.device, args.workers, tuple(args.sections),
                       progress=lambda line: print(line, file=sys.stderr, flush=True))
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

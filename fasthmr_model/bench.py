"""`fasthmr bench`: the encoder's four variants side by side in ONNX Runtime: base, ECLM, Mask-ToMe, both.

Two models, each in the four variants:
- `hmr2-vith`: HMR2.0's geometry (ViT-H, 32 blocks, 192 tokens) with random weights, for speed: ECLM as the
  paper's 32 -> 28 blocks, Mask-ToMe as 40/40/22 to M' = 90 tokens. The exported graphs (2.7 GB each) are
  cached in `<cache>/hmr2-vith-<variant>/`, so a second run does not export again.
- `tiny`: the shipped default (or `--bundle`), merged by `fasthmr merge` at `--tau` on the validation split
  (cached likewise, keyed by the bundle's checksum), each variant scored on the test split.

Timing: real-looking inputs, `--warmup` runs discarded, then `--repeats` rounds that run every variant once
in turn (so that load from other processes falls on all of them alike); medians are reported. Latency is
one image per call; throughput is images/s with `--batch` images per call (a frame's persons go through the
encoder as one batch). The speed-up is variant / base throughput from the same rounds (the latency speed-up
is given too), the FLOP ratio the theoretical multiply-accumulate count of base / variant (`encoder_macs`).

Where: `--provider cpu|cuda|tensorrt|auto` and `--precision fp32|fp16|auto` (RuntimeConfig); the JSON's
"runtime" says the provider each session obtained (an explicit one not obtained stops the bench), the
device (the GPU's name or `cpu`), the precision and the batch sizes. `--placement` adds, per model, which
provider runs which nodes of the Mask-ToMe graph (fasthmr_model.placement).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from fasthmr_model.bundle import Bundle, load_bundle
from fasthmr_model.encoder.config import preset
from fasthmr_model.encoder.merge_plan import PAPER_TOKEN_SCHEDULE, MergePlan, encoder_macs
from fasthmr_model.errors import BundleError
from fasthmr_model.runtime import RuntimeConfig, check_provider

VARIANTS = ("base", "eclm", "mask_tome", "both")
# ViT-H: the paper's HMR2.0 result, 32 -> 28 blocks. Which blocks does not change the cost; these are the top
# four pairs, where calibration merges first (it searches from the last block down).
VITH_ECLM_WINDOWS = ((24, 25), (26, 27), (28, 29), (30, 31))
DEFAULT_TAU_MM = 10.0


def default_bench_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fasthmr" / "bench"


def variant_plans(merged: MergePlan) -> dict[str, MergePlan]:
    """The four variants of a fully merged plan: none, its layers only, its tokens only, all of it."""
    return {
        "base": MergePlan(),
        "eclm": MergePlan(merged_windows=merged.merged_windows, eclm_tensors=merged.eclm_tensors),
        "mask_tome": MergePlan(**{**merged.to_dict(), "merged_windows": ()}),
        "both": merged,
    }


def vith_bundles(cache: Path, progress=print, variants=VARIANTS, depth: int | None = None) -> dict[str, Bundle]:
    """The hmr2-vith variants (all four by default) with random weights, exported once into `cache`. depth: fewer
    blocks than ViT-H's 32 at its width (a quick stand-in for dry runs: ECLM merges its last two blocks)."""
    config = preset("hmr2-vith")
    windows, prefix = VITH_ECLM_WINDOWS, "hmr2-vith"
    if depth is not None and depth != config.depth:
        config, windows, prefix = replace(config, depth=depth), ((depth - 2, depth - 1),), f"hmr2-vith-depth{depth}"
    merged = MergePlan(merged_windows=windows, token_schedule=PAPER_TOKEN_SCHEDULE)
    plans = variant_plans(merged)
    bundles = {}
    for name in variants:
        folder = cache / f"{prefix}-{name}"
        bundle = _cached_bundle(folder, plans[name])
        if bundle is None:
            from fasthmr_model.encoder.model import build_encoder
            from fasthmr_model.export import build_bundle

            progress(f"exporting the random-weight {prefix} {name} encoder to {folder} (once)")
            provenance = {"source": "untrained", "description": f"random-weight {prefix} {name} encoder (bench)"}
            bundle = build_bundle(build_encoder(config, seed=0, plan=plans[name]), folder, provenance=provenance,
                                  camera_anchor="body_origin", overwrite=True,
                                  preset_name="hmr2-vith" if prefix == "hmr2-vith" else None)
        bundles[name] = bundle
    return bundles


def tiny_bundles(bundle: Bundle, cache: Path, tau_mm: float, world_cache: Path, frames: int | None,
                 progress=print) -> dict[str, Bundle]:
    """The four variants of `bundle`'s encoder: the original (unmerged; `bundle` itself when it is unmerged) and
    three exports of its `fasthmr merge` plan, cached by checksum."""
    from fasthmr_model.data.world import build_split, load_crop_set, synthetic_body_path

    digest = bundle.encoder_sha256[:12]
    key = f"tiny-{digest}-tau{tau_mm:g}" + (f"-first{frames}" if frames else "")
    merged_folder = cache / f"{key}-both"
    if _cached_bundle(merged_folder, None) is None:
        from fasthmr_model.merging import merge_bundle

        progress(f"calibrating ECLM at tau {tau_mm} mm on the validation split (once) into {merged_folder}")
        calibration = load_crop_set(build_split("val", world_cache, synthetic_body_path(world_cache), frames=frames,
                                                progress=False))
        merge_bundle(bundle, merged_folder, calibration, tau_mm,
                     MergePlan(token_schedule=PAPER_TOKEN_SCHEDULE), overwrite=True, progress=progress)
    merged_bundle = load_bundle(merged_folder)
    plans = variant_plans(merged_bundle.merge_plan)
    unmerged = bundle.merge is None
    bundles = {"base": bundle if unmerged else None, "both": merged_bundle}
    original = None
    for name in ("base", "eclm", "mask_tome"):
        folder = cache / f"{key}-{name}"
        bundles[name] = bundles.get(name) or _cached_bundle(folder, plans[name])
        if bundles[name] is None:
            from fasthmr_model.export import build_bundle
            from fasthmr_model.merging import merged_encoder, original_encoder

            original = original or original_encoder(bundle)
            bundles[name] = build_bundle(merged_encoder(original, plans[name]), folder,
                                         provenance={**bundle.provenance, "bench_variant": name},
                                         camera_anchor=bundle.camera_anchor, body_model=bundle.body_model_path,
                                         preset_name=bundle.preset, overwrite=True)
    return bundles


def _cached_bundle(folder: Path, plan: MergePlan | None) -> Bundle | None:
    """The bundle in `folder` when it is there, intact, and (unless plan is None) merged by `plan`."""
    try:
        bundle = load_bundle(folder, verify_checksums=False)
    except BundleError:
        return None
    if plan is not None and bundle.merge_plan != plan:
        return None
    return bundle


def time_variants(bundles: dict[str, Bundle], batch: int, warmup: int, repeats: int,
                  runtime: RuntimeConfig) -> tuple[dict[str, list[float]], dict]:
    """Latencies (ms) per variant (time_sessions), and where the sessions ran ({"provider": obtained, "device",
    "precision"}; an explicit provider not obtained raises)."""
    from fasthmr_model.runtime import EncoderSession

    sessions = {name: EncoderSession(bundle, replace(runtime, max_batch=max(runtime.max_batch, batch)))
                for name, bundle in bundles.items()}
    opened = next(iter(sessions.values())).opened
    return (time_sessions(sessions, batch, warmup, repeats),
            {"provider": opened.provider, "device": opened.device, "precision": opened.precision})


def time_sessions(sessions: dict, batch: int, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Latencies (ms) per EncoderSession of `batch` real-looking images, measured in interleaved rounds after
    `warmup` discarded runs each."""
    from fasthmr_model.export import parity_inputs

    images, person_tokens = parity_inputs(batch, seed=1)
    for session in sessions.values():
        for _ in range(warmup):
            session.run(images, person_tokens)
    latencies = {name: [] for name in sessions}
    for _ in range(repeats):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(images, person_tokens)
            latencies[name].append(1e3 * (time.perf_counter() - start))
    return latencies


def summarise(bundles: dict[str, Bundle], single: dict[str, list[float]], batched: dict[str, list[float]],
              batch: int) -> dict[str, dict]:
    """Per variant: median latency of one image (ms), throughput (images/s at `batch` images per call), the
    FLOP ratio and the measured speed-up (throughput) against base, and the latency speed-up."""
    latency = {name: statistics.median(values) for name, values in single.items()}
    throughput = {name: 1e3 * batch / statistics.median(values) for name, values in batched.items()}
    macs = {name: encoder_macs(bundle.encoder_config, bundle.merge_plan) for name, bundle in bundles.items()}
    return {name: {"latency_ms": round(latency[name], 2), "throughput": round(throughput[name], 2),
                   "flops_ratio": round(macs["base"] / macs[name], 3),
                   "speedup": round(throughput[name] / throughput["base"], 3),
                   "latency_speedup": round(latency["base"] / latency[name], 3), "batch": batch}
            for name in bundles}


def run_bench(models: list[str], bundle_path: str | None, tau_mm: float, batch: int, warmup: int, repeats: int,
              cache: Path, world_cache: Path, frames: int | None, runtime: RuntimeConfig, progress=print,
              score: bool = True) -> dict:
    """The whole bench; returns the JSON-able result {"runtime": {provider obtained, device, precision, batches},
    model: {variant: {...}}}. score: the tiny variants' test MPJPE (renders the test split once)."""
    check_provider(runtime.provider)
    result = {"runtime": {"provider_requested": runtime.provider, "batches": sorted({1, batch})}}
    if "hmr2-vith" in models:
        bundles = vith_bundles(cache, progress)
        result["hmr2-vith"] = _timed(bundles, batch, warmup, repeats, runtime, "hmr2-vith", progress, result)
    if "tiny" in models:
        bundles = tiny_bundles(load_bundle(bundle_path), cache, tau_mm, world_cache, frames, progress)
        summary = _timed(bundles, batch, warmup, repeats, runtime, "tiny", progress, result)
        if score:
            from fasthmr_model.data.world import build_split, load_crop_set, synthetic_body_path
            from fasthmr_model.evaluation import evaluate_bundle

            test = load_crop_set(build_split("test", world_cache, synthetic_body_path(world_cache), frames=frames,
                                             progress=False))
            for name, bundle in bundles.items():
                progress(f"scoring tiny {name} on the test split ({len(test)} persons)")
                summary[name]["mpjpe"] = evaluate_bundle(bundle, test, runtime)["model"]["mpjpe"]
        progress(f"tiny ECLM windows: {list(bundles['both'].merge_plan.merged_windows)}")
        result["tiny"] = summary
    return result


def _timed(bundles: dict[str, Bundle], batch: int, warmup: int, repeats: int, runtime, model: str, progress,
           result: dict) -> dict[str, dict]:
    progress(f"timing {model}: batches of 1 and {batch}, {warmup} warm-up + {repeats} interleaved runs per variant "
             f"(provider {runtime.provider}, precision {runtime.precision})")
    single, where = time_variants(bundles, 1, warmup, repeats, runtime)
    batched = single if batch == 1 else time_variants(bundles, batch, warmup, repeats, runtime)[0]
    result["runtime"].update(where)
    return summarise(bundles, single, batched, batch)


def placement(bundle: Bundle, runtime: RuntimeConfig, batch: int = 1) -> dict:
    """Which provider runs which nodes of the bundle's encoder (fasthmr_model.placement), at `batch`."""
    from fasthmr_model.export import parity_inputs
    from fasthmr_model.placement import placement_report
    from fasthmr_model.runtime import ENCODER_INPUTS

    images, person_tokens = parity_inputs(batch, seed=1)
    return placement_report(bundle.encoder_path, runtime, {"image": images, "person_tokens": person_tokens},
                            sha256=bundle.encoder_sha256, batch_inputs=ENCODER_INPUTS)


def plot(result: dict, out: Path) -> Path:
    """Throughput vs test MPJPE of the tiny variants (the paper's Figure 1), with hmr2-vith's speed-ups beside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [name for name in ("tiny", "hmr2-vith") if name in result]
    device = result.get("runtime", {}).get("device", "cpu")
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for axis, model in zip(axes[0], panels):
        variants = {name: values for name, values in result[model].items() if name in VARIANTS}
        if "mpjpe" in variants["base"]:
            for name, values in variants.items():
                axis.scatter(values["throughput"], values["mpjpe"], s=60)
                axis.annotate(name, (values["throughput"], values["mpjpe"]), textcoords="offset points", xytext=(6, 4))
            axis.set_xlabel(f"throughput (images/s, ONNX Runtime, {device})")
            axis.set_ylabel("test MPJPE (mm)")
            axis.set_title("tiny default: speed vs accuracy")
        else:
            names = list(variants)
            axis.bar(names, [variants[n]["speedup"] for n in names], label="measured")
            axis.plot(names, [variants[n]["flops_ratio"] for n in names], "o--", color="black", label="FLOP ratio")
            axis.set_ylabel("speed-up over base")
            axis.set_title("hmr2-vith geometry (random weights)")
            axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def format_table(result: dict) -> str:
    where = result.get("runtime", {})
    lines = [f"ONNX Runtime {where.get('provider', '?')} on {where.get('device', '?')}, {where.get('precision', '?')}"]
    for model in (name for name in ("hmr2-vith", "tiny") if name in result):
        variants = result[model]
        lines.append(f"{model}:")
        for name in VARIANTS:
            values = variants[name]
            mpjpe = f"  test MPJPE {values['mpjpe']:6.1f} mm" if "mpjpe" in values else ""
            lines.append(f"  {name:<10} {values['latency_ms']:9.1f} ms  {values['throughput']:8.2f} img/s "
                         f"(batch {values['batch']})  FLOP ratio {values['flops_ratio']:5.2f}x  speed-up "
                         f"{values['speedup']:5.2f}x (latency {values['latency_speedup']:4.2f}x){mpjpe}")
    return "\n".join(lines)


def dumps(result: dict) -> str:
    return json.dumps(result, default=lambda value: np.asarray(value).tolist())

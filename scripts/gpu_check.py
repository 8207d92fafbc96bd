"""The lent GPU machine's measurements in one run: scripts/gpu_check.sh runs this there (docs/gpu.md).

It uses the library only (no ROS on that machine) and writes one JSON file, rewritten after every step, so
that a run cut short by the device's time limit still returns what it measured. Steps, essentials first,
each skipped (and said so) when the time budget left is too short:

    environment     onnxruntime's build and providers, the GPU
    obtained        the shipped bundle's encoder on the GPU provider: obtained, or the run stops
    parity          GPU fp32 vs CPU fp32 of the shipped bundle (encoder within 1e-3, decoder within 1e-3), GPU
                    fp16 vs CPU fp32 within test_providers.FP16_BOUNDS
    fp16_accuracy   MPJPE of the shipped bundle fp32 vs fp16 on the GPU, first --val-frames of the val split
    vith            hmr2-vith geometry (random weights) base and both (ECLM 32 -> 28 + Mask-ToMe to 90 tokens):
                    exported, timed at batch 1 and 4, fp32 and fp16, one interleaved run each
    stream          StreamPipeline with the merged ViT-H fp16 on a rendered 30 Hz clip of three people: p95
    bindings        merged ViT-H fp16 batch 1: plain, IO binding, CUDA graph (interleaved)
    decoder         the temporal decoder's call on the CPU and on the GPU (batch 1 and 3)
    vith_all        the ECLM-only and Mask-ToMe-only variants too (all four at fp16)
    placement       which provider runs which nodes of the Mask-ToMe graph (fp16)

--cpu-dry-run runs every step with the CPU provider in place of the GPU's, and ViT-H's width at 4 blocks
(--vith-depth), so that the whole script is tried where no GPU is.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np

# Parity bounds: fp32 on the GPU against the CPU; fp16 as in test/test_providers.py (measured there on the CPU).
FP32_BOUND = 1e-3
FP16_BOUNDS = {"pose_6d": 0.04, "betas": 0.003, "cam": 0.002, "feature": 0.012}


class Check:
    """The JSON result, written after every step, and the time budget."""

    def __init__(self, out: Path, budget_s: float, dry_run: bool) -> None:
        self.out, self.deadline, self.start = out, time.monotonic() + budget_s, time.monotonic()
        self.result = {"dry_run": dry_run, "budget_s": budget_s, "steps": {}}

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def step(self, name: str, function, needs_s: float = 0.0) -> dict | None:
        if self.left_s() < needs_s:
            self.result["steps"][name] = {"skipped": f"{self.left_s():.0f} s left, the step needs about {needs_s:.0f}"}
            print(f"[{name}] skipped: {self.result['steps'][name]['skipped']}", flush=True)
            self.write()
            return None
        started = time.monotonic()
        print(f"[{name}] ...", flush=True)
        try:
            value = function()
            entry = {"ok": True, **value}
        except Exception as error:  # noqa: BLE001 - one failed step is recorded; the others still run
            entry = {"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
            value = None
        entry["seconds"] = round(time.monotonic() - started, 1)
        self.result["steps"][name] = entry
        print(f"[{name}] {json.dumps(entry, default=str)[:1500]}", flush=True)
        self.write()
        return value

    def write(self) -> None:
        self.result["elapsed_s"] = round(time.monotonic() - self.start, 1)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.out.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.result, indent=1, default=str))
        temporary.replace(self.out)


def max_differences(produced, reference) -> dict[str, float]:
    return {name: float(np.abs(np.asarray(a) - np.asarray(b)).max()) for name, a, b in
            zip(reference._fields, produced, reference)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--cpu-dry-run", action="store_true", help="the CPU provider in place of the GPU's")
    parser.add_argument("--budget-s", type=float, default=480.0, help="stop starting steps after this")
    parser.add_argument("--cache", type=Path, required=True, help="exports, fp16 graphs, engines, rendered frames")
    parser.add_argument("--vith-depth", type=int, help="ViT-H blocks (default 32; the dry run: 4)")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds per measurement")
    parser.add_argument("--val-frames", type=int, default=60)
    parser.add_argument("--clip-frames", type=int, default=90)
    args = parser.parse_args(argv)
    dry = args.cpu_dry_run
    depth = args.vith_depth or (4 if dry else None)
    gpu = "cpu" if dry else "cuda"
    check = Check(args.out, args.budget_s, dry)

    import onnxruntime as ort

    from fasthmr_model.bench import placement, summarise, time_sessions, vith_bundles
    from fasthmr_model.bundle import load_bundle
    from fasthmr_model.decoder.runtime import DecoderSession
    from fasthmr_model.export import parity_inputs
    from fasthmr_model.runtime import EncoderSession, RuntimeConfig

    runtime_cache = str(args.cache / "runtime")
    on_gpu = RuntimeConfig(provider=gpu, precision="fp32", cache_dir=runtime_cache)
    on_gpu16 = replace(on_gpu, precision="fp16")
    on_cpu = RuntimeConfig(provider="cpu", precision="fp32", cache_dir=runtime_cache)
    shipped = load_bundle()
    vith = {}

    def environment():
        from fasthmr_model.providers import gpu_name

        return {"python": platform.python_version(), "numpy": np.__version__, "onnxruntime": ort.__version__,
                "onnxruntime_file": ort.__file__, "available": ort.get_available_providers(),
                "gpu": gpu_name(0), "cpus": __import__("os").cpu_count()}

    def obtained():
        session = EncoderSession(shipped, on_gpu)
        return {"provider": session.provider, "device": session.device}

    def parity():
        images, person_tokens = parity_inputs(4, seed=3)
        reference = EncoderSession(shipped, on_cpu).run(images, person_tokens)
        fp32 = max_differences(EncoderSession(shipped, on_gpu).run(images, person_tokens), reference)
        fp16 = max_differences(EncoderSession(shipped, on_gpu16).run(images, person_tokens), reference)
        decoder_cpu, decoder_gpu = (DecoderSession(shipped, replace(on_cpu, decoder_provider=provider))
                                    for provider in ("cpu", gpu))
        rng = np.random.default_rng(0)
        frames = rng.normal(0, 0.5, (3, decoder_cpu.window, decoder_cpu.frame_size)).astype(np.float32)
        decoder = float(np.abs(decoder_gpu.run_frames(frames) - decoder_cpu.run_frames(frames)).max())
        return {"encoder_fp32": fp32, "encoder_fp16": fp16, "decoder_fp32": decoder,
                "fp32_within": max(fp32.values()) <= FP32_BOUND and decoder <= FP32_BOUND,
                "fp16_within": all(fp16[name] <= bound for name, bound in FP16_BOUNDS.items()),
                "bounds": {"fp32": FP32_BOUND, "fp16": FP16_BOUNDS}}

    def fp16_accuracy():
        from fasthmr_model.data.world import build_split, load_crop_set, synthetic_body_path
        from fasthmr_model.evaluation import evaluate_bundle

        world = args.cache / "world"
        crops = load_crop_set(build_split("val", world, synthetic_body_path(world), workers=8, frames=args.val_frames,
                                          progress=False))
        scores = {precision: evaluate_bundle(shipped, crops, config)["model"]
                  for precision, config in (("fp32", on_gpu), ("fp16", on_gpu16))}
        return {"persons": len(crops), **scores,
                "mpjpe_increase_mm": round(scores["fp16"]["mpjpe"] - scores["fp32"]["mpjpe"], 2)}

    def bench_variants(bundles, configs):
        """{precision: {batch 1 latency and batch 4 throughput summary}} in one interleaved run per precision."""
        out = {}
        for precision, config in configs.items():
            sessions = {name: EncoderSession(bundle, config) for name, bundle in bundles.items()}
            single = time_sessions(sessions, 1, 3, args.repeats)
            batched = time_sessions(sessions, 4, 3, args.repeats)
            opened = next(iter(sessions.values())).opened
            out[precision] = {"provider": opened.provider, "device": opened.device, "precision": opened.precision,
                              **summarise(bundles, single, batched, 4)}
            del sessions
        return out

    def vith_base_both():
        vith.update(vith_bundles(args.cache / "bench", print, ("base", "both"), depth))
        return bench_variants({name: vith[name] for name in ("base", "both")}, {"fp32": on_gpu, "fp16": on_gpu16})

    def stream():
        from fasthmr_model.data.clips import render_clip
        from fasthmr_model.stream import StreamPipeline

        pipeline = StreamPipeline(vith["both"], runtime=on_gpu16)
        pipeline.warm_up()
        clip = render_clip(7, 3, args.clip_frames, pipeline.body_model, 640, 480, 30.0)
        times, stages = [], []
        for index, frame in enumerate(clip):
            start = time.perf_counter()
            result = pipeline.process(frame.image, frame.instance_mask, frame.camera.intrinsics, index / 30.0)
            times.append(1e3 * (time.perf_counter() - start))
            stages.append(result.timings_ms)
        persons = [int(len(np.unique(frame.instance_mask)) - 1) for frame in clip]
        return {"frames": len(times), "persons_median": statistics.median(persons),
                "p50_ms": round(float(np.percentile(times, 50)), 2),
                "p95_ms": round(float(np.percentile(times, 95)), 2),
                "encoder_p95_ms": round(float(np.percentile([s["encoder"] for s in stages], 95)), 2),
                "provider": pipeline.provider, "device": pipeline.device}

    def bindings():
        settings = {"plain": on_gpu16, "io_binding": replace(on_gpu16, io_binding=True)}
        if not dry:
            settings["cuda_graph"] = replace(on_gpu16, io_binding=True, cuda_graph=True)
        out = {}
        sessions = {}
        for name, config in settings.items():
            try:
                sessions[name] = EncoderSession(vith["both"], config)
            except Exception as error:  # noqa: BLE001 - e.g. a node the CUDA graph cannot capture
                out[name] = {"error": f"{type(error).__name__}: {error}"}
        latencies = time_sessions(sessions, 1, 5, args.repeats)
        out.update({name: {"latency_ms": round(statistics.median(values), 3)} for name, values in latencies.items()})
        return out

    def decoder():
        sessions = {provider: DecoderSession(shipped, replace(on_cpu, decoder_provider=provider))
                    for provider in ("cpu", gpu)}
        rng = np.random.default_rng(1)
        out = {}
        for batch in (1, 3):
            frames = rng.normal(0, 0.5, (batch, sessions["cpu"].window, sessions["cpu"].frame_size)).astype(np.float32)
            timings = {name: [] for name in sessions}
            for _ in range(max(args.repeats, 50)):
                for name, session in sessions.items():
                    start = time.perf_counter()
                    session.run_frames(frames)
                    timings[name].append(1e3 * (time.perf_counter() - start))
            out[f"batch{batch}"] = {name: round(statistics.median(values), 3) for name, values in timings.items()}
        return out

    def vith_all():
        vith.update(vith_bundles(args.cache / "bench", print, ("eclm", "mask_tome"), depth))
        return bench_variants({name: vith[name] for name in ("base", "eclm", "mask_tome", "both")},
                              {"fp16": on_gpu16})

    def mask_tome_placement():
        return placement(vith["mask_tome"], on_gpu16)

    check.step("environment", environment)
    if check.step("obtained", obtained) is None:
        print("the GPU provider was not obtained: nothing else to measure", file=sys.stderr)
        return 1
    check.step("parity", parity)
    check.step("fp16_accuracy", fp16_accuracy, needs_s=60)
    if check.step("vith", vith_base_both, needs_s=150) is not None:
        check.step("stream", stream, needs_s=45)
        check.step("bindings", bindings, needs_s=30)
    check.step("decoder", decoder, needs_s=10)
    if "both" in vith and check.step("vith_all", vith_all, needs_s=150) is not None:
        check.step("placement", mask_tome_placement, needs_s=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())

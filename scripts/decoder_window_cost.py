"""The decoder's cost per person-frame against the merged encoder's at batch 1, for several windows W and latent
token counts L, side by side in one process.

Each decoder has the shipped sizes otherwise and untrained weights (a graph's cost does not depend on its
weights), on the shipped bundle's encoder; the measurement is `fasthmr eval --sequences`' latency_ms (the
encoder graph and the decoder's three parts alternated, medians after warm-up), repeated in interleaved
rounds; the table gives the median over rounds. By default it counts CPU time of the measuring thread with
one thread for both sessions (--clock cpu): on a busy machine the scheduler stretches a niced process's wall
time by whatever else runs (a 4 ms encoder call measured 100 ms and more there), not its cost; --clock wall
times as `fasthmr eval` does. Prints one Markdown table. Needs torch (the export). Run:

    python scripts/decoder_window_cost.py [--windows 8 16 32] [--latent-tokens 8 16] [--rounds 3] [--runs 60]
        [--clock cpu|wall] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fasthmr_model.bundle import load_bundle
from fasthmr_model.data.world import default_cache, load_crop_set
from fasthmr_model.decoder.config import DecoderConfig
from fasthmr_model.decoder.evaluation import latency_ms
from fasthmr_model.decoder.export import bundle_with_decoder
from fasthmr_model.decoder.model import Denoiser, MotionVAE, OneStepDecoder
from fasthmr_model.decoder.sequences import build_sequence_split
from fasthmr_model.runtime import RuntimeConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--latent-tokens", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=60, help="timed calls per measurement")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: this thread's CPU time, one thread for both sessions (default); wall: wall time")
    parser.add_argument("--threads", type=int, default=0,
                        help="with --clock wall: ONNX Runtime threads of both sessions (0: the node's settings)")
    parser.add_argument("--cache", type=Path, default=default_cache())
    args = parser.parse_args()
    threads, clock = (1, time.thread_time) if args.clock == "cpu" else (args.threads, time.perf_counter)
    shipped = load_bundle(None)
    sizes = DecoderConfig.from_dict(shipped.decoder.config)
    # One crop to time the encoder on: the val sequences' first frames (rendered if missing, 8 frames).
    crops = load_crop_set(build_sequence_split("val", args.cache, shipped.body_model_path, workers=1, sequences=1,
                                               frames=8, progress=False))
    configs = [(window, tokens) for window in args.windows for tokens in args.latent_tokens if tokens <= window]
    with tempfile.TemporaryDirectory() as folder:
        bundles = {}
        for window, tokens in configs:
            config = DecoderConfig(**{**sizes.to_dict(), "window": window, "latent_tokens": tokens})
            torch.manual_seed(0)
            model = OneStepDecoder(MotionVAE(config), Denoiser(config), 1.0).eval()
            bundles[window, tokens] = bundle_with_decoder(shipped, model, Path(folder) / f"w{window}-l{tokens}",
                                                          {"source": "untrained, for timing"})
        rounds = {key: [] for key in configs}
        for _ in range(args.rounds):
            for key in configs:
                rounds[key].append(latency_ms(bundles[key], crops, RuntimeConfig(threads=threads), args.runs, clock))
    print(f"| W (frames) | L (latent tokens) | encoder ms | decoder ms (frame pose + graph + IK) | graph ms | "
          f"decoder / encoder |")
    print("|---|---|---|---|---|---|")
    for (window, tokens), measured in rounds.items():
        def median(name):
            return float(np.median([values[name] for values in measured]))

        ratio = float(np.median([values["decoder"] / values["encoder"] for values in measured]))
        print(f"| {window} | {tokens} | {median('encoder'):.2f} | {median('decoder'):.2f} | "
              f"{median('decoder_graph'):.2f} | {ratio:.3f} |")
    setting = ("CPU time of the one thread both sessions run on" if args.clock == "cpu" else
               f"wall time, {threads} thread(s) for both sessions" if threads else
               "wall time, the node's runtime settings: the encoder on ONNX Runtime's threads, the decoder graph on one")
    print(f"(medians of {args.rounds} interleaved rounds of {args.runs} calls each; batch 1; {setting})")


if __name__ == "__main__":
    main()

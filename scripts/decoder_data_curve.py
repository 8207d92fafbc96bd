"""The denoiser's data-size curve: its val error against the number of rendered training sequences.

For each count N, `fasthmr train decoder --sequence-count N` (the first N sequences of the training splits, the
same VAE, recipe and seed) in RUNS/denoiser-N, which validates the start and every checkpoint on the val
sequences as the stream decodes them (train.loop: the mean over sequences of each frame's 24-joint error of the
decoder's own root-relative points, mm; the start is the VAE's encoder reading the encoder's poses, the same
for every N). Finished runs are read, not trained again. Prints a Markdown table (the start; per N the best
trained checkpoint's val error, its gain over the start and the margin a gain must exceed to be kept: twice
the standard error of the per-sequence gains; and the last checkpoint's gain) and plots the gains against N.
Run:

    python scripts/decoder_data_curve.py --vae-run VAE_RUN --runs RUNS --counts 25 50 100 200
        [--sequences train MORE] [--threads 1] [--plot docs/decoder_data_curve.png]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from fasthmr_model.data.world import default_cache
from fasthmr_model.train.loop import LOG_NAME
from fasthmr_model.train.recipes import DENOISER_RECIPE


def validations(run: Path) -> list[dict]:
    """The run's validation records, {step, validation[, gain, margin]}, in order (a resumed run's last ones)."""
    records = [json.loads(line) for line in (run / LOG_NAME).read_text().splitlines()]
    by_step = {record["step"]: record for record in records if "validation" in record}
    return [by_step[step] for step in sorted(by_step)]


def summary(count: int, records: list[dict]) -> dict:
    trained = [record for record in records if "gain" in record]
    best = min(trained, key=lambda record: record["validation"])
    return {"sequences": count, "start": records[0]["validation"], "best_step": best["step"],
            "best": best["validation"], "gain": best["gain"], "margin": best["margin"],
            "final_gain": trained[-1]["gain"], "kept": best["gain"] > best["margin"]}


def plot(rows: list[dict], path: Path, frames: dict[int, int]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [row["sequences"] for row in rows]
    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    axis.errorbar(counts, [row["gain"] for row in rows], yerr=[row["margin"] for row in rows], marker="o",
                  capsize=4, label="best checkpoint: gain over the start (bar: the margin to keep it)")
    axis.plot(counts, [row["final_gain"] for row in rows], marker="s", linestyle="--",
              label="last checkpoint (3,000 steps): gain over the start")
    axis.axhline(0.0, color="grey", linewidth=1, label="the start (the VAE's encoder reading the encoder's poses)")
    axis.set_xscale("log")
    # Frames in thousands under each count (close counts on the log axis would overlap longer labels).
    axis.set_xticks(counts, [f"{count}\n{frames[count] // 1000}k" for count in counts], fontsize=8)
    axis.minorticks_off()
    axis.set_xlabel("rendered training sequences (frames)")
    axis.set_ylabel("val gain, mm (joint error, higher better)")
    axis.set_title("The denoiser against its training data (val sequences)")
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def main() -> None:
    from fasthmr_model.decoder.export import train_and_bundle_decoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae-run", type=Path, required=True)
    parser.add_argument("--runs", type=Path, required=True, help="folder of the denoiser runs and their bundles")
    parser.add_argument("--counts", type=int, nargs="+", required=True)
    parser.add_argument("--sequences", nargs="+", default=["train"], help="training splits (as train decoder's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=default_cache())
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    config = replace(DENOISER_RECIPE, threads=args.threads)
    rows, frames = [], {}
    for count in sorted(args.counts):
        run = args.runs / f"denoiser-{count}"
        records = validations(run) if (run / LOG_NAME).is_file() else []
        if not records or records[-1]["step"] < config.steps:
            train_and_bundle_decoder(run, args.vae_run, None, args.runs / f"bundle-{count}", args.cache, config,
                                     progress=False, splits=tuple(args.sequences), sequence_count=count)
            records = validations(run)
        manifest = json.loads((args.runs / f"bundle-{count}" / "manifest.json").read_text())
        frames[count] = manifest["decoder"]["provenance"]["denoiser"]["frames"]
        rows.append(summary(count, records))
    print("| training sequences (frames) | start | best trained checkpoint (step) | its gain | margin | kept | "
          "last checkpoint's gain |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['sequences']} ({frames[row['sequences']]:,}) | {row['start']:.2f} | {row['best']:.2f} "
              f"({row['best_step']}) | {row['gain']:+.2f} | {row['margin']:.2f} | {'yes' if row['kept'] else 'no'} | "
              f"{row['final_gain']:+.2f} |")
    print("(val joint error of the decoder's own root-relative points, mm, mean over the val sequences)")
    if args.plot:
        print(f"wrote {plot(rows, args.plot, frames)}")


if __name__ == "__main__":
    main()

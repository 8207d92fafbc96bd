"""The one training loop (the encoder, the motion VAE and the latent denoiser all run it): AdamW with linear
warm-up and cosine decay, gradient clipping, resume from a run folder, atomic checkpoints, the loss log, and
optionally the choice of the weights kept by validation.

A run folder holds two files. checkpoint.pt: everything a resumed run needs (weights, optimiser, step, wall
time, config, validation state, plus what the caller adds). log.jsonl: per log interval one JSON line
{"step", "lr", "wall_s", "<samples>_per_s", and the interval's mean of each loss term}, per validation one
{"step", "validation", "gain", "margin"} (no gain and margin for the start). A resumed run continues the
log, so the records that an interrupted run wrote after its last checkpoint appear twice.

Every step's randomness comes from (seed, step) alone: the callers draw their batches from
`np.random.default_rng([seed, step])`, and the loop seeds torch's generators per step (step_seed), so a
resumed run takes the steps an uninterrupted one would have taken.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from tqdm import tqdm

from fasthmr_model.torch_files import load_torch_checkpoint
from fasthmr_model.errors import FastHMRError

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
# Both loops clipped the global gradient norm at 1 before they were merged; the recipes were tuned with it.
GRADIENT_CLIP_NORM = 1.0
# Encoder checkpoints written before the loops were merged carry no "kind".
UNLABELLED_KIND = "encoder"


class LoopConfig(Protocol):
    """What the loop reads of a training config (EncoderTrainingConfig and TrainingConfig have it all; the
    config must be a dataclass, since the checkpoint stores it as a dict)."""

    steps: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_steps: int
    checkpoint_every: int
    log_every: int
    seed: int
    threads: int
    device: str


def learning_rate_at(step: int, config: LoopConfig) -> float:
    """The learning rate of step `step` (0-based): linear warm-up to config.learning_rate over
    config.warmup_steps, then cosine decay to 0 at config.steps."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def step_seed(seed: int, step: int) -> int:
    """The seed of torch's generators for step `step` of a run seeded `seed` (a stream apart from the numpy
    generator the callers seed with [seed, step])."""
    return int(np.random.SeedSequence([seed, step], spawn_key=(1,)).generate_state(1, np.uint64)[0])


def training_device(config: LoopConfig) -> torch.device:
    """The torch device of config.device, after setting config.threads (0: torch's default).

    Raises FastHMRError for a CUDA device when torch sees no CUDA GPU."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FastHMRError(f"training device {config.device!r} asked for, but torch sees no CUDA GPU; use --device cpu")
    return device


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to `path` so that `path` always holds a whole checkpoint: written to a temporary file
    in the same folder, synced to disk, then renamed over `path` (an atomic replace on one file system).
    If writing fails, the previous checkpoint stays and the temporary file is removed."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    # The rename is durable once the folder's entry is on disk too.
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def significant_gain(start_scores: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Per-item validation scores (S,) of the start and of a checkpoint, lower better -> (the mean gain over
    the start, the margin it must exceed): twice the standard error of the per-item gains (0 for one item).
    Few validation sequences vary a lot from one to the next, and a gain smaller than that did not carry
    over to other sequences."""
    gains = start_scores - scores
    margin = 2.0 * gains.std(ddof=1) / np.sqrt(len(gains)) if len(gains) > 1 else 0.0
    return float(gains.mean()), float(margin)


def train_loop(*, kind: str, run: Path, modules: dict[str, torch.nn.Module], config: LoopConfig,
               loss_of_step: Callable[[int], dict[str, torch.Tensor]], samples: str,
               extra_state: dict | None = None, same_config: Sequence[str] = (),
               validation_scores: Callable[[], Sequence[float]] | None = None,
               postfix: Callable[[dict], dict] | None = None, progress: bool = True) -> None:
    """Train (or resume) `modules` in `run` up to config.steps optimiser steps; they end in eval mode.

    Args:
        kind: what the run trains ("encoder", "vae", "denoiser"): stored in the checkpoint, and a run folder
            of another kind is refused.
        run: the run folder (created if missing); resumes from its checkpoint when there is one.
        modules: checkpoint key -> module, on the training device already; all their parameters are
            optimised and clipped together.
        config: steps, the optimiser, the schedule, checkpoint and log intervals, the seed (LoopConfig).
        loss_of_step: step -> loss terms (0-dim tensors), "total" among them, which is minimised. Runs in
            training mode, with torch's generators seeded by step_seed(config.seed, step).
        samples: what a batch holds, for the log's throughput ("images" -> "images_per_s").
        extra_state: more entries for the checkpoint (plain data: load_torch_checkpoint loads weights only).
        same_config: config fields that a resumed run must share with its checkpoint (e.g. the preset).
        validation_scores: with it, per-item scores (S,), lower better, of the modules as they are, called
            in eval mode without gradients at the start and at every checkpoint. The modules end as the
            weights that scored lowest on average, where a trained checkpoint counts only if it beats the
            start significantly (significant_gain).
        postfix: log record -> the progress bar's postfix (default: the total loss).
        progress: show a progress bar.

    Raises FastHMRError when the run folder holds another kind of run or another config.
    """
    run.mkdir(parents=True, exist_ok=True)
    parameters = [parameter for module in modules.values() for parameter in module.parameters()]
    optimiser = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    checkpoint = run / CHECKPOINT_NAME
    step, wall_s = 0, 0.0
    best, start_scores = None, None
    if checkpoint.is_file():
        state = load_torch_checkpoint(checkpoint)
        stored_kind = state.get("kind", UNLABELLED_KIND)
        if stored_kind != kind:
            raise FastHMRError(f"{checkpoint} is a {stored_kind} run, not {kind}; use another run folder")
        for name in same_config:
            if state["config"][name] != getattr(config, name):
                raise FastHMRError(f"{checkpoint} trains {name} {state['config'][name]!r}, not "
                                   f"{getattr(config, name)!r}; use another run folder")
        for key, module in modules.items():
            module.load_state_dict(state[key])
        optimiser.load_state_dict(state["optimiser"])  # moved to the parameters' device
        step, wall_s = state["step"], state["wall_s"]
        best = state.get("best")
        start_scores = None if state.get("start_scores") is None else np.asarray(state["start_scores"])
    cuda_devices = sorted({parameter.device.index or 0 for parameter in parameters if parameter.device.type == "cuda"})

    def set_mode(training: bool) -> None:
        for module in modules.values():
            module.train(training)

    def validate() -> dict:
        """Score the modules, keep them if they are the best so far; the log record."""
        nonlocal best, start_scores
        set_mode(False)
        with torch.no_grad():
            scores = np.asarray(validation_scores(), np.float64)
        set_mode(True)
        mean = float(scores.mean())
        record = {"step": step, "validation": round(mean, 6)}
        if start_scores is None:
            start_scores = scores  # the start is a candidate too, and what training must beat
        else:
            gain, margin = significant_gain(start_scores, scores)
            record.update(gain=round(gain, 6), margin=round(margin, 6))
            if gain <= margin:
                mean = math.inf  # not significantly better than the start: never kept
        if best is None or mean < best["validation"]:
            best = {"step": step, "validation": mean,
                    **{key: {name: value.detach().cpu().clone() for name, value in module.state_dict().items()}
                       for key, module in modules.items()}}
        return record

    set_mode(True)
    bar = tqdm(total=config.steps, initial=step, disable=not progress, desc=f"train {kind}", unit="step")
    sums: dict[str, torch.Tensor] = {}
    interval_steps, interval_start = 0, time.perf_counter()
    with open(run / LOG_NAME, "a") as log:

        def write(record: dict) -> None:
            log.write(json.dumps(record) + "\n")
            log.flush()

        if validation_scores is not None and step == 0:
            write(validate())
        while step < config.steps:
            for group in optimiser.param_groups:
                group["lr"] = learning_rate_at(step, config)
            # Forked, so that the caller's torch generators are as they were after training.
            with torch.random.fork_rng(devices=cuda_devices):
                torch.manual_seed(step_seed(config.seed, step))
                terms = loss_of_step(step)
            optimiser.zero_grad(set_to_none=True)
            terms["total"].backward()
            torch.nn.utils.clip_grad_norm_(parameters, GRADIENT_CLIP_NORM)
            optimiser.step()
            step += 1
            interval_steps += 1
            bar.update(1)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.detach()  # summed on the device: no sync per step
            if step % config.log_every == 0 or step == config.steps:
                elapsed = time.perf_counter() - interval_start
                wall_s += elapsed
                # Counted, not step % log_every: the first interval of a resumed run may be shorter.
                record = {"step": step, "lr": learning_rate_at(step - 1, config), "wall_s": round(wall_s, 1),
                          f"{samples}_per_s": round(interval_steps * config.batch_size / elapsed, 1),
                          **{name: round(float(total) / interval_steps, 6) for name, total in sums.items()}}
                write(record)
                bar.set_postfix(postfix(record) if postfix else {"loss": record["total"]})
                sums, interval_steps, interval_start = {}, 0, time.perf_counter()
            if step % config.checkpoint_every == 0 or step == config.steps:
                if validation_scores is not None:
                    write(validate())
                save_checkpoint(checkpoint, {
                    "kind": kind, **{key: module.state_dict() for key, module in modules.items()},
                    "optimiser": optimiser.state_dict(), "step": step, "wall_s": wall_s, "config": asdict(config),
                    "best": best, "start_scores": None if start_scores is None else start_scores.tolist(),
                    **(extra_state or {})})
    bar.close()
    if best is not None:
        for key, module in modules.items():
            module.load_state_dict(best[key])
    set_mode(False)

"""The shared training loop on a tiny model (resume, atomic checkpoints, clipping, schedule), and the shipped
recipes that `fasthmr train` takes its defaults from."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from fasthmr_model.bundle import default_bundle_path
from fasthmr_model.cli import _training_config, build_parser
from fasthmr_model.errors import FastHMRError
from fasthmr_model.torch_files import load_torch_checkpoint as read_checkpoint
from fasthmr_model.train.loop import (CHECKPOINT_NAME, GRADIENT_CLIP_NORM, LOG_NAME, learning_rate_at, save_checkpoint,
                                      train_loop)
from fasthmr_model.train.recipes import DENOISER_RECIPE, VAE_RECIPE, EncoderTrainingConfig, TrainingConfig

SHORT = TrainingConfig(steps=6, batch_size=4, learning_rate=0.05, warmup_steps=2, checkpoint_every=3, log_every=2)


class Interrupted(Exception):
    pass


def probe_model() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1)


def probe_loss(model: torch.nn.Module, config, interrupt_at: int | None = None):
    """A regression loss whose batch comes from numpy's (seed, step) generator and whose noise from torch's
    generator, as the real runs draw them."""

    def loss_of_step(step: int) -> dict[str, torch.Tensor]:
        if step == interrupt_at:
            raise Interrupted
        rng = np.random.default_rng([config.seed, step])
        inputs = torch.from_numpy(rng.standard_normal((config.batch_size, 3)).astype(np.float32))
        targets = inputs.sum(dim=1, keepdim=True) + 0.1 * torch.randn(config.batch_size, 1)
        error = (model(inputs) - targets).square().mean()
        return {"total": error, "error": error}

    return loss_of_step


def run_probe(run, config=SHORT, interrupt_at=None, **options) -> torch.nn.Linear:
    model = probe_model()
    train_loop(kind="probe", run=run, modules={"model": model}, config=config,
               loss_of_step=probe_loss(model, config, interrupt_at), samples="rows", progress=False, **options)
    return model


def test_a_resumed_run_ends_exactly_as_an_uninterrupted_one(tmp_path):
    whole = run_probe(tmp_path / "whole")
    with pytest.raises(Interrupted):
        run_probe(tmp_path / "resumed", interrupt_at=3)  # right after the checkpoint at step 3
    assert read_checkpoint(tmp_path / "resumed" / CHECKPOINT_NAME)["step"] == 3
    generator_state = torch.random.get_rng_state()
    resumed = run_probe(tmp_path / "resumed")
    assert torch.equal(torch.random.get_rng_state(), generator_state)  # the steps' seeding is forked
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)
    finished = [read_checkpoint(tmp_path / folder / CHECKPOINT_NAME) for folder in ("whole", "resumed")]
    assert finished[0]["step"] == finished[1]["step"] == 6
    for moments in ("exp_avg", "exp_avg_sq"):
        for index, state in finished[0]["optimiser"]["state"].items():
            torch.testing.assert_close(finished[1]["optimiser"]["state"][index][moments], state[moments],
                                       rtol=0, atol=0)
    logs = [[json.loads(line) for line in (tmp_path / folder / LOG_NAME).read_text().splitlines()]
            for folder in ("whole", "resumed")]
    assert [record["step"] for record in logs[1]] == [record["step"] for record in logs[0]] == [2, 4, 6]
    assert logs[1][-1]["error"] == logs[0][-1]["error"]  # steps 5 and 6 in both
    assert set(logs[0][0]) == {"step", "lr", "wall_s", "rows_per_s", "total", "error"}


def test_every_step_draws_its_own_torch_noise_from_the_seed_and_step(tmp_path):
    def noise_of_run(run, seed):
        model, draws = probe_model(), []

        def loss_of_step(_step):
            draws.append(float(torch.randn(())))
            return {"total": model(torch.ones(1, 3)).sum()}

        train_loop(kind="probe", run=run, modules={"model": model}, config=dataclasses.replace(SHORT, seed=seed),
                   loss_of_step=loss_of_step, samples="rows", progress=False)
        return draws

    first = noise_of_run(tmp_path / "first", 0)
    assert len(set(first)) == SHORT.steps
    assert noise_of_run(tmp_path / "again", 0) == first
    assert noise_of_run(tmp_path / "other", 1) != first


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(path, {"step": 1, "weights": torch.ones(3)})

    def half_written(state, file):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2, "weights": torch.zeros(3)})
    state = read_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["weights"], torch.ones(3))
    assert [entry.name for entry in tmp_path.iterdir()] == [CHECKPOINT_NAME]  # no temporary file left


def test_a_run_whose_checkpoint_write_fails_resumes_from_the_one_before(tmp_path, monkeypatch):
    run_probe(tmp_path / "run", config=dataclasses.replace(SHORT, steps=3))
    real_save = torch.save

    def failing_save(state, file):
        real_save({"partial": True}, file)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        run_probe(tmp_path / "run")  # trains steps 4-6, then fails writing step 6's checkpoint
    monkeypatch.undo()
    assert read_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)["step"] == 3


def test_clipping_bounds_the_gradient_norm(tmp_path):
    """A loss with a gradient of norm 1000 sqrt(4): the step's gradients (left on the parameters) are clipped
    to norm GRADIENT_CLIP_NORM."""
    model = probe_model()

    def steep(_step):
        total = 1000.0 * sum(parameter.sum() for parameter in model.parameters())
        return {"total": total}

    train_loop(kind="probe", run=tmp_path, modules={"model": model}, config=dataclasses.replace(SHORT, steps=1),
               loss_of_step=steep, samples="rows", progress=False)
    norm = torch.linalg.vector_norm(torch.cat([parameter.grad.reshape(-1) for parameter in model.parameters()]))
    assert float(norm) == pytest.approx(GRADIENT_CLIP_NORM, rel=1e-5)


def test_the_schedule_warms_up_linearly_then_decays_to_zero_on_a_cosine(tmp_path):
    config = TrainingConfig(steps=12, learning_rate=1.0, warmup_steps=4)
    rates = [learning_rate_at(step, config) for step in (0, 1, 3, 4, 8, 11, 12, 20)]
    assert rates == pytest.approx([0.25, 0.5, 1.0, 1.0, 0.5, 0.5 * (1 + np.cos(np.pi * 7 / 8)), 0.0, 0.0])
    run_probe(tmp_path, config=dataclasses.replace(SHORT, log_every=1))
    logged = [json.loads(line)["lr"] for line in (tmp_path / LOG_NAME).read_text().splitlines()]
    assert logged == [learning_rate_at(step, SHORT) for step in range(SHORT.steps)]  # the rate each step used


def test_a_run_folder_of_another_kind_or_config_is_refused(tmp_path):
    run_probe(tmp_path / "run", config=dataclasses.replace(SHORT, steps=1))
    model = probe_model()
    with pytest.raises(FastHMRError, match="is a probe run, not vae"):
        train_loop(kind="vae", run=tmp_path / "run", modules={"model": model}, config=SHORT,
                   loss_of_step=probe_loss(model, SHORT), samples="rows", progress=False)
    with pytest.raises(FastHMRError, match="trains seed 0, not 1"):
        run_probe(tmp_path / "run", config=dataclasses.replace(SHORT, seed=1), same_config=("seed",))


def test_encoder_checkpoints_from_before_the_shared_loop_still_resume(tmp_path):
    """They carry no kind; resuming one as an encoder run continues it."""
    model = probe_model()
    heatmap = torch.nn.Linear(2, 2)
    optimiser = torch.optim.AdamW(list(model.parameters()) + list(heatmap.parameters()))
    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / CHECKPOINT_NAME, {
        "model": model.state_dict(), "token_heatmap": heatmap.state_dict(), "optimiser": optimiser.state_dict(),
        "step": 5, "config": dataclasses.asdict(SHORT), "wall_s": 1.0})
    train_loop(kind="encoder", run=tmp_path / "run", modules={"model": model, "token_heatmap": heatmap},
               config=SHORT, loss_of_step=probe_loss(model, SHORT), samples="images", progress=False)
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / LOG_NAME).read_text().splitlines()] == [6]


def test_the_recipes_are_what_the_default_bundle_was_trained_with():
    """threads and device say where a run trained, not what it learnt: the recipes leave them at their defaults."""
    provenance = json.loads((default_bundle_path() / "manifest.json").read_text())["decoder"]["provenance"]
    machine = ("threads", "device")
    for recipe, run in ((VAE_RECIPE, "vae"), (DENOISER_RECIPE, "denoiser")):
        shipped = provenance[run]["config"]
        assert {key: value for key, value in dataclasses.asdict(recipe).items() if key not in machine} == \
            {key: value for key, value in shipped.items() if key not in machine}


@pytest.mark.parametrize("command, config", [
    (["train", "vae", "--run", "R"], VAE_RECIPE),
    (["train", "decoder", "--run", "R", "--vae-run", "V", "--out", "B"], DENOISER_RECIPE),
    (["train", "encoder", "--run", "R", "--out", "B"], EncoderTrainingConfig()),
])
def test_training_flags_default_to_the_recipe_and_set_its_fields(command, config):
    assert _training_config(config, build_parser().parse_args(command)) == config
    changed = build_parser().parse_args(command + ["--steps", "7", "--learning-rate", "0.25"])
    assert _training_config(config, changed) == dataclasses.replace(config, steps=7, learning_rate=0.25)


def test_the_vae_flags_set_the_motion_sequences_and_the_jitter():
    args = build_parser().parse_args(["train", "vae", "--run", "R", "--sequences", "3", "--jitter-scale", "0"])
    assert _training_config(VAE_RECIPE, args) == dataclasses.replace(VAE_RECIPE, motion_sequences=3, jitter_scale=0.0)

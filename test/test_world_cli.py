"""The world, training, evaluation and figure commands end to end, on a few frames."""

from __future__ import annotations

import json

from PIL import Image

from fasthmr_model.cli import main


def test_build_train_evaluate_and_draw(tmp_path, capsys):
    cache, run, bundle = tmp_path / "cache", tmp_path / "run", tmp_path / "bundle"
    assert main(["world", "build", "--split", "val", "--frames", "3", "--workers", "1", "--cache", str(cache)]) == 0
    assert "val:" in capsys.readouterr().out
    assert main(["train", "encoder", "--run", str(run), "--out", str(bundle), "--steps", "2", "--batch-size", "4",
                 "--frames", "3", "--cache", str(cache), "--quiet"]) == 0
    assert (run / "checkpoint.pt").is_file()
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["provenance"]["source"] == "synthetic-trained" and manifest["provenance"]["steps"] == 2
    # Data and run by name: a manifest never records this machine's paths.
    assert manifest["provenance"]["run"] == "run" and "/" not in manifest["provenance"]["data"]
    capsys.readouterr()
    assert main(["eval", "--bundle", str(bundle), "--split", "test", "--frames", "3", "--cache", str(cache),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"model", "mean_pose_baseline", "frames", "persons", "provider", "device", "precision"}
    # No GPU asked for: the report says the encoder ran on the CPU, in fp32.
    assert (result["provider"], result["device"], result["precision"]) == ("CPUExecutionProvider", "cpu", "fp32")
    assert set(result["model"]) == {"mpjpe", "pa_mpjpe", "pve"} and result["frames"] == 3
    figure = tmp_path / "grid.png"
    assert main(["figure", "--bundle", str(bundle), "--split", "test", "--frames", "3", "--cache", str(cache),
                 "--count", "4", "--out", str(figure)]) == 0
    assert Image.open(figure).size == (4 * 192, 256)


def test_missing_bundle_is_one_clear_error(tmp_path, capsys):
    assert main(["eval", "--bundle", str(tmp_path / "none"), "--cache", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err

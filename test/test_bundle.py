"""Bundles: atomic writes, and a clear BundleError for every way a bundle can be broken."""

from __future__ import annotations

import json
import os

import pytest

from fasthmr_model.bundle import MANIFEST_NAME, describe_bundle, load_bundle, sha256_of, write_bundle
from fasthmr_model.cli import main
from fasthmr_model.encoder.config import PRESETS
from fasthmr_model.encoder.merge_plan import MergePlan
from fasthmr_model.errors import BundleError


def manifest_fields() -> dict:
    return {"encoder": {"file": "encoder.onnx", "config": PRESETS["tiny"].to_dict(), "merge": None,
                        "camera_anchor": "pelvis"},
            "body_model": {"file": "body_model.npz", "name": "test body"},
            "provenance": {"source": "test"}}


@pytest.fixture
def sources(tmp_path):
    folder = tmp_path / "sources"
    folder.mkdir()
    (folder / "encoder.onnx").write_bytes(b"graph bytes")
    (folder / "body_model.npz").write_bytes(b"body bytes")
    return {name: folder / name for name in ("encoder.onnx", "body_model.npz")}


@pytest.fixture
def bundle_path(tmp_path, sources):
    return write_bundle(tmp_path / "bundle", sources, manifest_fields()).path


def test_written_bundle_loads_and_describes(bundle_path):
    bundle = load_bundle(bundle_path)
    assert bundle.encoder_config == PRESETS["tiny"]
    assert bundle.feature_size == PRESETS["tiny"].head_width
    assert set(bundle.file_names) == {"encoder.onnx", "body_model.npz"}
    text = describe_bundle(bundle)
    assert "12 blocks x 128" in text and "test body" in text


def test_accessors_of_an_unmerged_bundle_without_a_decoder(bundle_path):
    bundle = load_bundle(bundle_path)
    assert bundle.merge is None and bundle.merge_plan == MergePlan()
    assert not bundle.has_decoder and bundle.decoder is None
    assert bundle.preset is None and bundle.mean_parameters is None
    assert bundle.provenance == {"source": "test"}
    assert bundle.encoder_sha256 == sha256_of(bundle.encoder_path)


def test_a_decoder_section_missing_keys_is_refused(tmp_path, sources):
    fields = dict(manifest_fields(), decoder={"file": "encoder.onnx", "window": 8})
    bundle = write_bundle(tmp_path / "bundle", sources, fields)
    assert bundle.has_decoder
    with pytest.raises(BundleError, match="decoder section lacks"):
        bundle.decoder


def test_written_bundle_is_readable_by_other_users(bundle_path):
    """mkdtemp's private 0700 staging folder must not become the bundle's mode."""
    umask = os.umask(0)
    os.umask(umask)
    assert bundle_path.stat().st_mode & 0o777 == 0o777 & ~umask


def test_info_command_prints_the_manifest(bundle_path, capsys):
    assert main(["info", str(bundle_path)]) == 0
    assert '"format_version": 1' in capsys.readouterr().out


def _corrupt_json(path):
    (path / MANIFEST_NAME).write_text("{not json")


def _other_version(path):
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    manifest["format_version"] = 99
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))


def _no_encoder_section(path):
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    del manifest["encoder"]
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))


def _bad_config(path):
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    manifest["encoder"]["config"]["width"] = -1
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / MANIFEST_NAME).unlink(), "manifest.json is missing"),
    (_corrupt_json, "not valid JSON"),
    (_other_version, "format version 99"),
    (_no_encoder_section, "lacks encoder.file"),
    (_bad_config, "width must be a positive integer"),
    (lambda p: (p / "encoder.onnx").unlink(), "encoder.onnx is listed in the manifest but missing"),
    (lambda p: (p / "body_model.npz").write_bytes(b"changed"), "body_model.npz does not match its checksum"),
])
def test_broken_bundles_say_which_file_and_what_to_do(bundle_path, damage, message):
    damage(bundle_path)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_path)


def test_missing_folder(tmp_path, capsys):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_existing_bundle_is_not_overwritten_by_accident(bundle_path, sources):
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(bundle_path, sources, manifest_fields())
    fields = manifest_fields()
    fields["provenance"] = {"source": "second"}
    assert write_bundle(bundle_path, sources, fields, overwrite=True).provenance["source"] == "second"
    assert sorted(p.name for p in bundle_path.parent.iterdir()) == ["bundle", "sources"]


def test_failed_write_leaves_nothing_behind(tmp_path, sources):
    sources = dict(sources, **{"extra.bin": tmp_path / "does-not-exist"})
    with pytest.raises(FileNotFoundError):
        write_bundle(tmp_path / "bundle", sources, manifest_fields())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sources"]

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
    with pytest.raises(BundleError, match="decoder section lacks"):
        write_bundle(tmp_path / "bundle", sources, fields)


def test_written_bundle_is_readable_by_other_users(bundle_path):
    """The staging folder's mode becomes the bundle's: readable as the umask allows (a node's service account)."""
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
    (lambda p: (p / "body_model.npz").write_bytes(b"changed"), "body_model.npz does not match its size or checksum"),
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


def _edit_manifest(path, edit):
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    edit(manifest)
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))


def _outside_graph(path):
    """encoder.file names a graph outside the bundle, listed with its real checksum."""
    outside = path.parent / "outside.onnx"
    outside.write_bytes((path / "encoder.onnx").read_bytes())

    def edit(manifest):
        manifest["encoder"]["file"] = "../outside.onnx"
        manifest["files"]["../outside.onnx"] = dict(manifest["files"]["encoder.onnx"])
    _edit_manifest(path, edit)


def _absolute_graph(path):
    def edit(manifest):
        manifest["encoder"]["file"] = str((path / "encoder.onnx").resolve())
    _edit_manifest(path, edit)


def _unlisted_graph(path):
    """A changed graph dropped from `files`, so that no checksum covers it."""
    (path / "other.onnx").write_bytes(b"not checked")

    def edit(manifest):
        manifest["encoder"]["file"] = "other.onnx"
    _edit_manifest(path, edit)


def _symlink_outside(path):
    outside = path.parent / "elsewhere.onnx"
    (path / "encoder.onnx").rename(outside)
    (path / "encoder.onnx").symlink_to(outside)


@pytest.mark.parametrize("damage, message", [
    (_outside_graph, "not a plain file name inside the bundle folder"),
    (_absolute_graph, "is not among the checksummed files"),
    (_unlisted_graph, "is not among the checksummed files"),
    (lambda p: _edit_manifest(p, lambda m: m["files"].update({"../../etc/passwd": {"sha256": "0", "bytes": 1}})),
     "not a plain file name"),
    (_symlink_outside, "links outside the bundle"),
    (lambda p: _edit_manifest(p, lambda m: m.update(files=["encoder.onnx"])), "lists no files"),
    (lambda p: _edit_manifest(p, lambda m: m["files"]["encoder.onnx"].pop("bytes")), "needs a sha256 and a byte count"),
    (lambda p: _edit_manifest(p, lambda m: m.update(encoder=5)), "lacks encoder.file"),
    (lambda p: _edit_manifest(p, lambda m: m.update(decoder=[1])), "decoder section is not an object"),
    (lambda p: (p / MANIFEST_NAME).write_text("[" * 100_000 + "]" * 100_000), "not valid JSON"),
    (lambda p: (p / MANIFEST_NAME).write_text(" " * (5 * 1024 * 1024) + "{}"), "a manifest is at most"),
    (lambda p: (p / "encoder.onnx").write_bytes(b""), "does not match its size or checksum"),
])
def test_unsealed_bundles_are_refused(bundle_path, damage, message, capsys):
    """Nothing outside the folder, nothing unlisted, nothing unchecked loads; `fasthmr info` says why too."""
    from fasthmr_model.cli import main

    damage(bundle_path)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_path)
    assert main(["info", str(bundle_path)]) == 2
    assert message.split()[0] in capsys.readouterr().err

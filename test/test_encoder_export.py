"""Encoder export and runtime: ONNX Runtime matches PyTorch to 1e-4, the graph contract holds, providers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from fasthmr_model.bundle import ENCODER_CONTRACT, load_bundle
from fasthmr_model.encoder.config import NUM_TOKENS, PRESETS, EncoderConfig
from fasthmr_model.errors import FastHMRError, InputError
from fasthmr_model.export import build_bundle, encoder_reference_outputs, parity_inputs
from fasthmr_model.runtime import EncoderSession, RuntimeConfig, create_session
from tiny_encoders import perturbed_tiny_encoder


@pytest.fixture(scope="module")
def tiny_model():
    return perturbed_tiny_encoder(3, 4)


@pytest.fixture(scope="module")
def tiny_bundle(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    return build_bundle(tiny_model, out, provenance={"source": "untrained"}, camera_anchor="pelvis", preset_name="tiny")


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_pytorch(tiny_model, tiny_bundle, batch):
    images, person_tokens = parity_inputs(batch, seed=batch)
    reference = encoder_reference_outputs(tiny_model, images, person_tokens)
    produced = EncoderSession(tiny_bundle, RuntimeConfig(provider="cpu")).run(images, person_tokens)
    for name, value in produced._asdict().items():
        assert value.shape == reference[name].shape
        np.testing.assert_allclose(value, reference[name], atol=1e-4, rtol=0, err_msg=name)


def test_graph_follows_the_contract(tiny_bundle):
    graph = onnx.load(str(tiny_bundle.encoder_path))
    assert [node.name for node in graph.graph.input] == list(ENCODER_CONTRACT["inputs"])
    assert [node.name for node in graph.graph.output] == list(ENCODER_CONTRACT["outputs"])
    manifest = tiny_bundle.manifest
    assert manifest["encoder"]["contract"] == ENCODER_CONTRACT
    assert EncoderConfig.from_dict(manifest["encoder"]["config"]) == PRESETS["tiny"]
    feature = EncoderSession(tiny_bundle).run(*parity_inputs(2)).feature
    assert feature.shape == (2, PRESETS["tiny"].head_width)


def test_backbone_tokens_reach_the_head_unreshaped(tiny_model):
    """The head reads (B, N, C) tokens of any N, so token merging can shrink N without touching it."""
    tokens = tiny_model.backbone(torch.from_numpy(parity_inputs(2)[0]))
    assert tokens.shape == (2, NUM_TOKENS, PRESETS["tiny"].width)
    fewer = tiny_model.head(tokens[:, :90])
    assert fewer.pose_6d.shape == (2, 144) and torch.isfinite(fewer.pose_6d).all()


def test_large_graphs_keep_weights_outside(tiny_model, tmp_path):
    """Graphs over protobuf's 2 GB limit (ViT-H) are written with an external data file; forced here."""
    bundle = build_bundle(tiny_model, tmp_path / "external", provenance={"source": "untrained"}, camera_anchor="pelvis",
                          preset_name="tiny", external_data=True)
    assert "encoder.onnx.data" in bundle.file_names
    files = bundle.manifest["files"]
    assert files["encoder.onnx.data"]["bytes"] > 20 * files["encoder.onnx"]["bytes"]  # the weights sit beside it
    images, person_tokens = parity_inputs(2)
    reference = encoder_reference_outputs(tiny_model, images, person_tokens)
    produced = EncoderSession(load_bundle(bundle.path)).run(images, person_tokens)
    np.testing.assert_allclose(produced.pose_6d, reference["pose_6d"], atol=1e-4, rtol=0)


def test_sessions_do_not_spin(tiny_bundle):
    session = create_session(tiny_bundle.encoder_path, RuntimeConfig(provider="cpu")).session
    entries = session.get_session_options().get_session_config_entry
    assert entries("session.intra_op.allow_spinning") == "0"
    assert entries("session.inter_op.allow_spinning") == "0"


def test_session_rejects_malformed_inputs(tiny_bundle):
    session = EncoderSession(tiny_bundle)
    with pytest.raises(InputError, match="256, 192"):
        session.run(np.zeros((1, 3, 128, 96), np.float32), np.zeros((1, NUM_TOKENS), np.float32))
    with pytest.raises(InputError, match="person_tokens"):
        session.run(np.zeros((2, 3, 256, 192), np.float32), np.zeros((1, NUM_TOKENS), np.float32))

"""The library's stream on numpy arrays: per-frame poses while a track's window fills, then the decoder's; one
RuntimeConfig for every session; one gap setting for tracks and windows; time jumping back; confidence;
vertices only when asked; and no torch or smplx at run time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fasthmr_model.errors import InputError
from fasthmr_model.runtime import RuntimeConfig
from fasthmr_model.stream import POSE_PER_FRAME, POSE_TEMPORAL, StreamConfig, StreamPipeline

REPOSITORY = Path(__file__).resolve().parent.parent
K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])


def frame(columns=((40, 90), (160, 210)), rows=(30, 200)):
    """A 320x240 random image with rectangular persons 1, 2, ... at the given column ranges."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    mask = np.zeros((240, 320), np.uint8)
    for instance, (left, right) in enumerate(columns, start=1):
        mask[rows[0]:rows[1], left:right] = instance
    return image, mask


@pytest.fixture(scope="module")
def decoder_bundle(untrained_tiny_bundle, tmp_path_factory):
    """The untrained tiny encoder with an untrained tiny decoder (window 6)."""
    import torch

    from fasthmr_model.decoder.export import bundle_with_decoder
    from fasthmr_model.decoder.model import Denoiser, MotionVAE, OneStepDecoder
    from test_decoder_model import TINY

    torch.manual_seed(0)
    model = OneStepDecoder(MotionVAE(TINY).eval(), Denoiser(TINY).eval(), latent_scale=1.7).eval()
    return bundle_with_decoder(untrained_tiny_bundle, model, tmp_path_factory.mktemp("stream") / "with-decoder",
                               {"source": "test"})


def test_pose_sources_are_the_body_message_constants():
    from fasthmr_msgs.msg import SmplBody

    assert (POSE_PER_FRAME, POSE_TEMPORAL) == (SmplBody.POSE_PER_FRAME, SmplBody.POSE_TEMPORAL)


def test_the_decoder_replaces_the_pose_once_a_track_has_its_window(decoder_bundle):
    """Per-frame poses during the warm-up, then the decoder's, with the joints posed from them; shape and
    translation stay the encoder's. The reference is the decoder's streaming step on the per-frame results."""
    from fasthmr_model.decoder.runtime import StreamingDecoder

    stream = StreamPipeline(decoder_bundle)
    reference = StreamingDecoder(decoder_bundle, stream.body_model, RuntimeConfig())
    image, mask = frame(columns=((40, 90),))
    window = reference.session.window
    for index in range(window + 1):
        result = stream.process(image, mask, K, 1.0 + index / 30)
        per_frame = stream.frames.process(image, mask, K, with_vertices=False)
        decoded = reference.step(result.track_ids, per_frame.feature, per_frame.crop_rays, per_frame.rotmats,
                                 per_frame.betas)
        assert result.track_ids.tolist() == [1]
        np.testing.assert_array_equal(result.betas, per_frame.betas)
        np.testing.assert_array_equal(result.translation, per_frame.translation)
        if index < window - 1:
            assert result.pose_source.tolist() == [POSE_PER_FRAME]
            np.testing.assert_allclose(result.joints, per_frame.joints, atol=1e-6)
        else:
            assert result.pose_source.tolist() == [POSE_TEMPORAL]
            np.testing.assert_allclose(result.rotmats, decoded.rotmats, atol=1e-6)
            joints = stream.body_model.forward(per_frame.betas, decoded.rotmats, per_frame.translation,
                                               with_vertices=False)[1]
            np.testing.assert_allclose(result.joints, joints, atol=1e-6)
            assert not np.allclose(result.joints, per_frame.joints, atol=1e-4)


def test_one_gap_setting_restarts_the_track_and_its_window(decoder_bundle):
    stream = StreamPipeline(decoder_bundle, stream=StreamConfig(max_gap=0.5))
    image, mask = frame(columns=((40, 90),))
    window = stream.decoder.session.window
    stamps = [1.0 + index / 30 for index in range(window)]
    results = [stream.process(image, mask, K, stamp) for stamp in stamps]
    assert results[-1].pose_source.tolist() == [POSE_TEMPORAL]
    later = stream.process(image, mask, K, stamps[-1] + 0.6)  # unseen for longer than max_gap
    assert later.ended_tracks == [1] and later.track_ids.tolist() == [2]
    assert later.pose_source.tolist() == [POSE_PER_FRAME]  # its window starts over
    assert len(stream.decoder.windows) == 1
    back = stream.process(image, mask, K, 0.5)  # time jumps back: every track ends
    assert back.time_jumped_back and back.ended_tracks == [2] and back.track_ids.tolist() == [3]
    assert len(stream.decoder.windows) == 1


def test_every_session_obeys_the_runtime_config(decoder_bundle):
    """provider and threads reach the encoder's session and the decoder's (the decoder alone runs on one thread
    when the choice is left to ONNX Runtime: its operators are too small to split)."""
    stream = StreamPipeline(decoder_bundle, runtime=RuntimeConfig(provider="cpu", threads=1))
    sessions = [stream.frames.encoder.session, stream.decoder.session.session]
    for session in sessions:
        assert session.get_providers() == ["CPUExecutionProvider"]
        assert session.get_session_options().intra_op_num_threads == 1
    two = StreamPipeline(decoder_bundle, runtime=RuntimeConfig(provider="cpu", threads=2))
    assert two.decoder.session.session.get_session_options().intra_op_num_threads == 2
    assert two.frames.encoder.session.get_session_options().intra_op_num_threads == 2
    left_to_ort = StreamPipeline(decoder_bundle, runtime=RuntimeConfig(provider="cpu", threads=0))
    assert left_to_ort.decoder.session.session.get_session_options().intra_op_num_threads == 1


def test_confidence_is_the_visible_share_of_the_encoder_window(untrained_tiny_bundle):
    stream = StreamPipeline(untrained_tiny_bundle)
    image, mask = frame(columns=((130, 170), (0, 30)))  # in the middle; cut by the left edge
    result = stream.process(image, mask, K, 1.0)
    assert result.confidence[0] == pytest.approx(1.0)
    assert 0.0 < result.confidence[1] < 0.9


def test_vertices_only_when_asked_and_as_published(untrained_tiny_bundle):
    stream = StreamPipeline(untrained_tiny_bundle)
    image, mask = frame()
    assert stream.process(image, mask, K, 1.0).vertices is None
    result = stream.process(image, mask, K, 1.1, with_vertices=True)
    assert result.vertices.shape == (2, stream.body_model.num_vertices, 3)
    np.testing.assert_allclose(stream.vertices(result, np.array([1])), result.vertices[[1]], atol=1e-9)


def test_bad_input_is_refused_and_leaves_the_stream_as_it_was(untrained_tiny_bundle):
    stream = StreamPipeline(untrained_tiny_bundle)
    image, mask = frame()
    assert stream.process(image, mask, K, 1.0).track_ids.tolist() == [1, 2]
    with pytest.raises(InputError, match="stamp"):
        stream.process(image, mask, K, float("nan"))
    with pytest.raises(InputError, match="intrinsics"):
        stream.process(image, mask, np.zeros((3, 3)), 1.1)
    assert stream.process(image, mask, K, 1.2).track_ids.tolist() == [1, 2]


RUNTIME_ONLY = """
import json, sys
import numpy as np
import fasthmr_ros.node
from fasthmr_model.stream import StreamPipeline
stream = StreamPipeline()
image = np.zeros((240, 320, 3), np.uint8)
mask = np.zeros((240, 320), np.uint8)
mask[40:200, 120:180] = 1
K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
results = [stream.process(image, mask, K, index / 30) for index in range(stream.decoder.session.window)]
print(json.dumps({"sources": [int(r.pose_source[0]) for r in results],
                  "heavy": sorted(m for m in ("torch", "smplx") if m in sys.modules)}))
"""


def test_the_node_and_the_stream_run_without_torch_or_smplx():
    """Importing the node and streaming the shipped bundle (its decoder included) loads neither torch nor smplx."""
    completed = subprocess.run([sys.executable, "-c", RUNTIME_ONLY], capture_output=True, text=True, timeout=120,
                               check=True, cwd=REPOSITORY)
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [] and report["sources"][-1] == POSE_TEMPORAL


def test_reset_starts_a_new_stream(decoder_bundle):
    stream = StreamPipeline(decoder_bundle)
    image, mask = frame(columns=((40, 90),))
    for index in range(3):
        stream.process(image, mask, K, 1.0 + index / 30)
    stream.reset()
    assert len(stream.decoder.windows) == 0
    again = stream.process(image, mask, K, 5.0)
    assert again.track_ids.tolist() == [2] and not again.ended_tracks

"""The provider chain with the lists a GPU build of onnxruntime reports (injected through the runtime's
ProviderEnvironment seam: the sessions themselves are real CPU sessions), the TensorRT and CUDA options, the
cache paths, batches cut into chunks of max_batch, warm-up sizes, IO binding, the fp16 graph's parity, and
the node-placement report."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fasthmr_model.bundle import load_bundle
from fasthmr_model.errors import FastHMRError
from fasthmr_model.export import parity_inputs
from fasthmr_model.placement import format_placement, placement_report, summarise_profile
from fasthmr_model.providers import (ProviderError, cuda_options, engine_cache, gpu_name, provider_chain,
                                     resolved_precision)
from fasthmr_model.runtime import ENCODER_INPUTS, EncoderSession, RuntimeConfig, create_session
from injected_providers import GPU, NO_CUDA, NO_TENSORRT, InjectedEnvironment

def asked_names(providers):
    return [entry[0] if isinstance(entry, tuple) else entry for entry in providers]


def test_auto_asks_for_tensorrt_only_when_its_libraries_load_then_cuda_then_the_cpu():
    assert provider_chain("auto", InjectedEnvironment()) == (["tensorrt", "cuda", "cpu"], {})
    chain, skipped = provider_chain("auto", InjectedEnvironment(load_errors=NO_TENSORRT))
    assert chain == ["cuda", "cpu"] and "libnvinfer.so.10" in skipped["tensorrt"]
    chain, skipped = provider_chain("auto", InjectedEnvironment(load_errors={**NO_TENSORRT, **NO_CUDA}))
    assert chain == ["cpu"] and "libcublasLt.so.13" in skipped["cuda"]
    chain, skipped = provider_chain("auto", InjectedEnvironment(available=["CPUExecutionProvider"]))
    assert chain == ["cpu"] and "has no CUDAExecutionProvider" in skipped["cuda"]
    # Explicit requests: TensorRT keeps CUDA behind it for the nodes it does not take; cuda skips TensorRT.
    assert provider_chain("tensorrt", InjectedEnvironment())[0] == ["tensorrt", "cuda", "cpu"]
    assert provider_chain("cuda", InjectedEnvironment())[0] == ["cuda", "cpu"]
    assert provider_chain("cpu", InjectedEnvironment())[0] == ["cpu"]


@pytest.mark.parametrize("environment, requested, mentions", [
    (InjectedEnvironment(available=["CPUExecutionProvider"]), "cuda", ["CUDAExecutionProvider", "onnxruntime-gpu"]),
    (InjectedEnvironment(load_errors=NO_CUDA), "cuda", ["CUDAExecutionProvider", "libcublasLt.so.13", "CUDA 13"]),
    (InjectedEnvironment(load_errors=NO_TENSORRT), "tensorrt", ["libnvinfer.so.10", "requirements-tensorrt.txt"]),
])
def test_an_explicit_provider_that_cannot_load_names_what_is_missing_and_what_to_install(environment, requested,
                                                                                         mentions):
    with pytest.raises(ProviderError) as caught:
        provider_chain(requested, environment)
    assert all(mention in str(caught.value) for mention in mentions), str(caught.value)


def test_the_provider_obtained_is_read_back(untrained_tiny_bundle, tmp_path):
    config = RuntimeConfig(provider="cuda", cache_dir=str(tmp_path))
    # It loads, but onnxruntime ran the session on the CPU (no usable GPU): an explicit cuda is an error.
    with pytest.raises(ProviderError, match="CUDAExecutionProvider.*CPUExecutionProvider"):
        create_session(untrained_tiny_bundle.encoder_path, config,
                       environment=InjectedEnvironment(obtained="CPUExecutionProvider"))
    # auto accepts the CPU, opens the graph again with the CPU's settings (fp32), and says why.
    environment = InjectedEnvironment(load_errors=NO_TENSORRT, obtained="CPUExecutionProvider")
    opened = create_session(untrained_tiny_bundle.encoder_path, RuntimeConfig(cache_dir=str(tmp_path)),
                            environment=environment)
    assert (opened.provider, opened.device, opened.precision) == ("CPUExecutionProvider", "cpu", "fp32")
    assert [asked_names(providers) for providers in environment.asked] == [
        ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]]
    assert "libnvinfer" in opened.skipped["tensorrt"] and "ran the session on CPUExecutionProvider" in opened.skipped[
        "cuda"]
    # Obtained as asked: the GPU's name and fp16 (auto on a GPU).
    opened = create_session(untrained_tiny_bundle.encoder_path, RuntimeConfig(provider="cuda", cache_dir=str(tmp_path)),
                            environment=InjectedEnvironment())
    assert (opened.provider, opened.device, opened.precision) == ("CUDAExecutionProvider", GPU, "fp16")


def test_tensorrt_options_fp16_engine_caches_and_a_batch_profile(untrained_tiny_bundle, tmp_path):
    environment = InjectedEnvironment()
    config = RuntimeConfig(provider="tensorrt", max_batch=3, device_id=1, cache_dir=str(tmp_path))
    opened = create_session(untrained_tiny_bundle.encoder_path, config, sha256=untrained_tiny_bundle.encoder_sha256,
                            batch_inputs=ENCODER_INPUTS, environment=environment)
    assert opened.precision == "fp16"  # the default (auto) with TensorRT
    (tensorrt, options), (cuda, cuda_settings), cpu = environment.asked[0]
    assert (tensorrt, cuda, cpu) == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    cache = engine_cache(tmp_path, untrained_tiny_bundle.encoder_sha256, GPU, "fp16", 3)
    engines = f"{untrained_tiny_bundle.encoder_sha256[:16]}-nvidia-test-gpu-80gb-fp16-b3"
    assert cache.engines == tmp_path / "tensorrt" / engines
    assert cache.timing == tmp_path / "tensorrt" / "timing-nvidia-test-gpu-80gb"
    assert options == {
        "device_id": 1, "trt_fp16_enable": True,
        "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache.engines),
        "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache.timing),
        "trt_profile_min_shapes": "image:1x3x256x192,person_tokens:1x192",
        "trt_profile_opt_shapes": "image:3x3x256x192,person_tokens:3x192",
        "trt_profile_max_shapes": "image:3x3x256x192,person_tokens:3x192",
    }
    assert cache.engines.is_dir() and cache.timing.is_dir()
    assert cuda_settings == cuda_options(1, "fp16", False)
    # Another precision, batch profile or GPU is another engine folder; the same GPU shares the timing cache.
    fp32 = engine_cache(tmp_path, untrained_tiny_bundle.encoder_sha256, GPU, "fp32", 3)
    assert fp32.engines != cache.engines and fp32.timing == cache.timing
    assert engine_cache(tmp_path, untrained_tiny_bundle.encoder_sha256, GPU, "fp16", 4).engines != cache.engines
    assert engine_cache(tmp_path, untrained_tiny_bundle.encoder_sha256, "Orin", "fp16", 3).timing != cache.timing


def test_cuda_options_device_conv_search_tf32_and_graphs():
    assert cuda_options(2, "fp32", False) == {"device_id": 2, "cudnn_conv_algo_search": "HEURISTIC", "use_tf32": 0,
                                              "enable_cuda_graph": 0}
    assert cuda_options(0, "fp16", True)["use_tf32"] == 1 and cuda_options(0, "fp16", True)["enable_cuda_graph"] == 1


def test_precision_and_config_checks():
    assert [resolved_precision("auto", name) for name in ("tensorrt", "cuda", "cpu")] == ["fp16", "fp16", "fp32"]
    assert resolved_precision("fp32", "cuda") == "fp32" and resolved_precision("fp16", "cpu") == "fp16"
    for bad in (dict(provider="gpu"), dict(decoder_provider="npu"), dict(max_batch=0), dict(precision="int8"),
                dict(device_id=-1)):
        with pytest.raises(FastHMRError):
            RuntimeConfig(**bad)
    assert gpu_name(4096) == "CUDA device 4096"  # no such GPU on any machine (or no NVML at all)


class RecordingSession:
    """A real session that records the batch size of every call."""

    def __init__(self, session) -> None:
        self.session, self.batches = session, []

    def run(self, names, feeds):
        self.batches.append(len(next(iter(feeds.values()))))
        return self.session.run(names, feeds)

    def __getattr__(self, name):
        return getattr(self.session, name)


def test_the_bench_stops_before_its_exports_when_the_provider_cannot_load(tmp_path, monkeypatch):
    """An explicit `cuda` that cannot load stops `fasthmr bench` at once, not after minutes of ViT-H exports."""
    import fasthmr_model.runtime as runtime
    from fasthmr_model.bench import run_bench

    monkeypatch.setattr(runtime, "ENVIRONMENT", InjectedEnvironment(load_errors={**NO_TENSORRT, **NO_CUDA}))
    with pytest.raises(ProviderError, match="'cuda' was requested, but CUDAExecutionProvider cannot load"):
        run_bench(["hmr2-vith", "tiny"], None, 20.0, 4, 1, 1, tmp_path / "bench", tmp_path / "world", 2,
                  RuntimeConfig(provider="cuda"), progress=print)
    assert list(tmp_path.iterdir()) == []


def test_more_persons_than_max_batch_run_in_chunks(untrained_tiny_bundle):
    images, person_tokens = parity_inputs(5, seed=4)
    whole = EncoderSession(untrained_tiny_bundle, RuntimeConfig(provider="cpu", max_batch=8))
    chunked = EncoderSession(untrained_tiny_bundle, RuntimeConfig(provider="cpu", max_batch=2))
    chunked.batched.opened.session = recording = RecordingSession(chunked.session)
    expected, produced = whole.run(images, person_tokens), chunked.run(images, person_tokens)
    assert recording.batches == [2, 2, 1]
    for name in expected._fields:
        assert getattr(produced, name).shape == getattr(expected, name).shape
        np.testing.assert_allclose(getattr(produced, name), getattr(expected, name), atol=1e-5, rtol=0)


def test_gpu_sessions_warm_up_at_every_batch_size_and_the_cpu_at_one(untrained_tiny_bundle, tmp_path, monkeypatch):
    import fasthmr_model.runtime as runtime

    sizes = {}
    for provider in ("cuda", "cpu"):
        monkeypatch.setattr(runtime, "ENVIRONMENT", InjectedEnvironment())
        monkeypatch.setattr(runtime.BatchedSession, "_run_chunk",
                            lambda self, feeds, batch: sizes.setdefault(provider, []).append(batch) or [])
        runtime.EncoderSession(untrained_tiny_bundle, RuntimeConfig(provider=provider, precision="fp32", max_batch=3,
                                                                    cache_dir=str(tmp_path)))
    assert sizes == {"cuda": [1, 2, 3], "cpu": [1]}


def test_io_binding_gives_the_same_outputs(untrained_tiny_bundle):
    images, person_tokens = parity_inputs(3, seed=5)
    plain = EncoderSession(untrained_tiny_bundle, RuntimeConfig(provider="cpu")).run(images, person_tokens)
    bound = EncoderSession(untrained_tiny_bundle, RuntimeConfig(provider="cpu", io_binding=True, max_batch=2))
    for _ in range(2):  # the second call reuses the buffers bound by the first
        produced = bound.run(images, person_tokens)
        for name in plain._fields:
            np.testing.assert_allclose(getattr(produced, name), getattr(plain, name), atol=1e-5, rtol=0)
    assert sorted(bound.batched._bound) == [1, 2]


# The fp16 graph against fp32 on the shipped bundle's encoder (Mask-ToMe merged), largest absolute differences
# allowed per output: measured 0.013 / 0.0008 / 0.0006 / 0.0037 on 4 crops (docs/gpu.md), bounded at ~3x.
FP16_BOUNDS = {"pose_6d": 0.04, "betas": 0.003, "cam": 0.002, "feature": 0.012}


def test_the_fp16_graph_keeps_float32_inputs_and_outputs_and_stays_close(tmp_path):
    bundle = load_bundle()
    files_before = sorted(path.name for path in bundle.path.iterdir())
    images, person_tokens = parity_inputs(4, seed=3)
    fp32 = EncoderSession(bundle, RuntimeConfig(provider="cpu", precision="fp32")).run(images, person_tokens)
    session = EncoderSession(bundle, RuntimeConfig(provider="cpu", precision="fp16", cache_dir=str(tmp_path)))
    assert session.opened.precision == "fp16"
    (converted,) = (tmp_path / "fp16").glob("*/encoder.fp16.onnx")
    assert converted.parent.name.startswith(bundle.encoder_sha256[:16])
    graph = onnx.load(str(converted))
    assert all(value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for value in [*graph.graph.input,
                                                                                          *graph.graph.output])
    assert {initializer.data_type for initializer in graph.graph.initializer if len(initializer.dims) > 1} == {
        onnx.TensorProto.FLOAT16}
    fp16 = session.run(images, person_tokens)
    for name, bound in FP16_BOUNDS.items():
        assert getattr(fp16, name).dtype == np.float32
        assert np.abs(getattr(fp16, name) - getattr(fp32, name)).max() <= bound, name
    # Made once: a second session reuses it; the bundle was not written to.
    modified = converted.stat().st_mtime_ns
    EncoderSession(bundle, RuntimeConfig(provider="cpu", precision="fp16", cache_dir=str(tmp_path)))
    assert converted.stat().st_mtime_ns == modified
    assert sorted(path.name for path in bundle.path.iterdir()) == files_before


def test_a_graph_with_external_weights_converts_the_same(tmp_path):
    """ViT-H's graph keeps its weights in encoder.onnx.data: onnx's shape inference is skipped for it."""
    from fasthmr_model.fp16 import fp16_graph

    bundle = load_bundle()
    external = tmp_path / "external" / "encoder.onnx"
    external.parent.mkdir()
    onnx.save(onnx.load(str(bundle.encoder_path)), str(external), save_as_external_data=True,
              all_tensors_to_one_file=True, location="encoder.onnx.data")
    single, split = (fp16_graph(graph, digest, tmp_path / "cache") for graph, digest in (
        (bundle.encoder_path, "a" * 64), (external, "b" * 64)))
    images, person_tokens = parity_inputs(2, seed=6)
    feeds = {"image": images, "person_tokens": person_tokens}
    outputs = [ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
               for path in (single, split)]
    for from_single, from_split in zip(*outputs):
        np.testing.assert_allclose(from_split, from_single, atol=1e-6, rtol=0)


def test_the_placement_report_counts_nodes_per_provider(untrained_tiny_bundle):
    images, person_tokens = parity_inputs(1, seed=2)
    report = placement_report(untrained_tiny_bundle.encoder_path, RuntimeConfig(provider="cpu"),
                              {"image": images, "person_tokens": person_tokens}, runs=2)
    assert report["provider"] == "CPUExecutionProvider" and list(report["nodes"]) == ["CPUExecutionProvider"]
    on_cpu = report["nodes"]["CPUExecutionProvider"]  # after ONNX Runtime's fusions (FusedMatMul, BiasGelu, ...)
    assert on_cpu["Conv"]["nodes"] == 1 and sum(values["nodes"] for values in on_cpu.values()) > 50
    assert "CPUExecutionProvider" in format_placement(report)
    # What TensorRT's profile looks like: fused kernels under its name, the rest under CUDA; the first run skipped.
    events = [{"cat": "Node", "name": f"{name}_kernel_time", "dur": dur, "args": {"provider": provider, "op_name": op}}
              for _ in range(3) for name, provider, op, dur in (
                  ("TRTKernel_graph_0", "TensorrtExecutionProvider", "TRTKernel_graph_0", 2000),
                  ("/TopK", "CUDAExecutionProvider", "TopK", 100),
                  ("/Gather", "CUDAExecutionProvider", "GatherElements", 50))]
    summary = summarise_profile(events, skip_runs=1)
    assert summary == {"CUDAExecutionProvider": {"GatherElements": {"nodes": 1, "ms": 0.05},
                                                 "TopK": {"nodes": 1, "ms": 0.1}},
                       "TensorrtExecutionProvider": {"TRTKernel_graph_0": {"nodes": 1, "ms": 2.0}}}

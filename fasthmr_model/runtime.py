"""ONNX Runtime sessions: the provider chain and what it obtained, precision, batches in chunks, warm-up.

One RuntimeConfig builds every session (the encoder's and the decoder's). The provider actually obtained
is read back from each session (fasthmr_model.providers) and reported by the sessions (`provider`, and
`device`: the GPU's name or `cpu`) for the log, the diagnostics and the benches.

Run-time module: imports numpy and onnxruntime only (never torch or smplx; `onnx` only to make an fp16
graph the first time one is asked for, fasthmr_model.fp16).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime as ort

from fasthmr_model.bundle import Bundle, sha256_of
from fasthmr_model.encoder.config import IMAGE_HEIGHT, IMAGE_WIDTH, NUM_TOKENS
from fasthmr_model.errors import BundleError, FastHMRError, InputError
from fasthmr_model.providers import (PRECISIONS, PROVIDER_NAMES, ProviderEnvironment, ProviderError, check_obtained,
                                     cuda_options, default_cache_dir, engine_cache, provider_chain,
                                     resolved_precision, tensorrt_options)

# The provider choices of a session: a provider's short name, or auto (TensorRT, CUDA, the CPU: the first that
# loads).
PROVIDER_CHOICES = ("auto", *PROVIDER_NAMES)
MAX_BATCH_LIMIT = 64
# The providers' view of this machine; tests replace it with one that reports another machine's lists.
ENVIRONMENT = ProviderEnvironment()
# The encoder graph's inputs without the batch axis.
ENCODER_INPUTS = {"image": (3, IMAGE_HEIGHT, IMAGE_WIDTH), "person_tokens": (NUM_TOKENS,)}


@dataclass(frozen=True)
class RuntimeConfig:
    """How sessions run (the ROS parameters `runtime.*`).

    Args:
        provider: the encoder's provider: auto (TensorRT when its libraries load, then CUDA, then the CPU) |
            tensorrt | cuda | cpu. An explicit one that is not obtained is an error.
        decoder_provider: the temporal decoder's provider, the same choices. Its graph is tiny: the CPU by
            default (measured: docs/gpu.md).
        threads: intra-op threads, 0 = ONNX Runtime's choice.
        max_batch: the most persons per encoder call (the TensorRT profile is 1 .. max_batch, and GPU sessions are
            warmed up at every size up to it); a frame with more runs in chunks of max_batch.
        precision: auto (fp16 on a GPU, fp32 on the CPU) | fp32 | fp16. fp16 is TensorRT's fp16 mode, and on the
            other providers an fp16 variant of the encoder graph (fasthmr_model.fp16) with float32 inputs and
            outputs. The decoder always runs fp32.
        device_id: the CUDA device.
        cache_dir: TensorRT engines and fp16 graphs; "" = $XDG_CACHE_HOME/fasthmr/runtime.
        io_binding: inputs and outputs in buffers bound once per batch size (on the GPU for a GPU provider).
        cuda_graph: the CUDA provider replays a captured CUDA graph per batch size (implies io_binding; every
            node must run on CUDA).
    """

    provider: str = "auto"
    decoder_provider: str = "cpu"
    threads: int = 0
    max_batch: int = 4
    precision: str = "auto"
    device_id: int = 0
    cache_dir: str = ""
    io_binding: bool = False
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        for name in ("provider", "decoder_provider"):
            if getattr(self, name) not in PROVIDER_CHOICES:
                raise FastHMRError(f"{name} must be one of {list(PROVIDER_CHOICES)}, got {getattr(self, name)!r}")
        if self.threads < 0:
            raise FastHMRError(f"threads must be >= 0 (0 = onnxruntime's choice), got {self.threads}")
        if not 1 <= self.max_batch <= MAX_BATCH_LIMIT:
            raise FastHMRError(f"max_batch must be in [1, {MAX_BATCH_LIMIT}], got {self.max_batch}")
        if self.precision not in PRECISIONS:
            raise FastHMRError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.device_id < 0:
            raise FastHMRError(f"device_id must be >= 0, got {self.device_id}")

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()


@dataclass
class OpenedSession:
    """A session and what it runs on. provider: ONNX Runtime's name of the provider obtained; device: the GPU's
    name or `cpu`; precision: fp32 | fp16 as run; skipped: faster providers auto left out, and why."""

    session: ort.InferenceSession
    provider: str
    device: str
    precision: str
    skipped: dict[str, str] = field(default_factory=dict)


def session_options(config: RuntimeConfig, profile_prefix: str | None = None) -> ort.SessionOptions:
    """Worker threads that sleep instead of spinning when idle: spinning threads steal the cores from everything
    else in the process (the ROS executor, torch training): about 64 ms per pair of calls were lost to it on
    these 2-core machines. profile_prefix: write ONNX Runtime's profile (fasthmr_model.placement)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def check_provider(requested: str) -> None:
    """Raises ProviderError now when an explicit provider (`cuda`, `tensorrt`) cannot load on this machine: the
    commands call it before their slow preparations (ViT-H exports, rendered splits), so that they fail at once,
    not after minutes. Whether it is then obtained is checked when the session is made (create_session)."""
    provider_chain(requested, ENVIRONMENT)


def create_session(model_path: Path, config: RuntimeConfig = RuntimeConfig(), *, provider: str | None = None,
                   precision: str | None = None, sha256: str | None = None,
                   batch_inputs: dict[str, tuple[int, ...]] | None = None, profile_prefix: str | None = None,
                   environment: ProviderEnvironment | None = None) -> OpenedSession:
    """A session of the graph at model_path on the provider chain of `provider` (default config.provider).

    precision overrides config.precision; sha256: the graph's checksum (keys the engine cache and the fp16
    graph; computed when not given); batch_inputs: the inputs' shapes without the batch axis (TensorRT's
    optimisation profile over batch 1 .. config.max_batch). Raises ProviderError when an explicit provider is
    not obtained, BundleError when the graph cannot be loaded.
    """
    environment = environment or ENVIRONMENT
    requested = provider or config.provider
    chain, skipped = provider_chain(requested, environment)
    first = chain[0]
    device = environment.device_name(first, config.device_id)
    run_precision = resolved_precision(precision or config.precision, first)
    path = model_path
    if run_precision == "fp16" and first != "tensorrt":  # TensorRT makes its own fp16 engine from the fp32 graph
        from fasthmr_model.fp16 import fp16_graph

        path = fp16_graph(model_path, sha256 or sha256_of(model_path), config.cache_path)
    providers = []
    for name in chain:
        if name == "tensorrt":
            cache = engine_cache(config.cache_path, sha256 or sha256_of(model_path), device, run_precision,
                                 config.max_batch)
            for folder in (cache.engines, cache.timing):
                folder.mkdir(parents=True, exist_ok=True)
            providers.append((PROVIDER_NAMES[name], tensorrt_options(config.device_id, run_precision == "fp16", cache,
                                                                     batch_inputs or {}, config.max_batch)))
        elif name == "cuda":
            providers.append((PROVIDER_NAMES[name], cuda_options(config.device_id, run_precision, config.cuda_graph)))
        else:
            providers.append(PROVIDER_NAMES[name])
    try:
        session = environment.open(path, session_options(config, profile_prefix), providers)
    except Exception as error:  # onnxruntime's own types (an empty file: InvalidArgument), RuntimeError, OSError
        if chain != ["cpu"]:
            asked = [PROVIDER_NAMES[name] for name in chain]
            raise ProviderError(f"onnxruntime cannot create a session of {path} on {asked} ({type(error).__name__}: "
                                f"{error}); try runtime provider 'cpu' to tell a broken graph from a provider "
                                "problem") from None
        raise BundleError(f"onnxruntime cannot load {path} ({type(error).__name__}: {error}); the file is "
                          "empty, truncated or corrupt, or was exported by an incompatible tool: re-export the "
                          "bundle") from None
    obtained = environment.obtained(session)
    short = check_obtained(requested, chain, obtained)
    if short != first:  # auto, and onnxruntime fell back (no usable GPU): open again with the settings of that one
        fallen = create_session(model_path, config, provider=short, precision=precision, sha256=sha256,
                                batch_inputs=batch_inputs, profile_prefix=profile_prefix, environment=environment)
        fallen.skipped = {**skipped, first: f"{PROVIDER_NAMES[first]} loaded, but onnxruntime ran the session on "
                                            f"{obtained} (no usable GPU?)"}
        return fallen
    return OpenedSession(session, obtained, device, run_precision, skipped)


class BatchedSession:
    """An opened session whose calls are cut into chunks of at most max_batch along the first axis, optionally
    through IO binding (buffers bound once per batch size; with cuda_graph, one captured graph per size)."""

    def __init__(self, opened: OpenedSession, config: RuntimeConfig, batch_inputs: dict[str, tuple[int, ...]]
                 ) -> None:
        self.opened = opened
        self.max_batch = config.max_batch
        self.batch_inputs = batch_inputs
        self.output_names = [node.name for node in opened.session.get_outputs()]
        on_gpu = opened.provider != PROVIDER_NAMES["cpu"]
        self._cuda_graph = config.cuda_graph and opened.provider == PROVIDER_NAMES["cuda"]
        self._bound_device = ("cuda" if on_gpu else "cpu") if (config.io_binding or self._cuda_graph) else None
        self._device_id = config.device_id
        self._bound: dict[int, BoundRun] = {}

    @property
    def session(self) -> ort.InferenceSession:
        return self.opened.session

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """feeds: name -> float32 array (B, ...) with the same B -> the outputs (B, ...), in max_batch chunks."""
        count = len(next(iter(feeds.values())))
        if count <= self.max_batch:
            return self._run_chunk(feeds, count)
        chunks = [self._run_chunk({name: array[start:start + self.max_batch] for name, array in feeds.items()},
                                  min(self.max_batch, count - start))
                  for start in range(0, count, self.max_batch)]
        return [np.concatenate(parts) for parts in zip(*chunks)]

    def _run_chunk(self, feeds: dict[str, np.ndarray], batch: int) -> list[np.ndarray]:
        feeds = {name: np.ascontiguousarray(array, np.float32) for name, array in feeds.items()}
        if self._bound_device is None or batch == 0:
            return self.session.run(None, feeds)
        if batch not in self._bound:
            self._bound[batch] = BoundRun(self.session, self._bound_device, self._device_id, batch,
                                          self.batch_inputs, self._cuda_graph)
        return self._bound[batch].run(feeds)

    def warm_up(self) -> None:
        """One call at every batch size up to max_batch on a GPU (each new shape costs the CUDA provider its
        kernel choices, and a captured CUDA graph needs a run before capture), batch 1 on the CPU (its kernels
        do not depend on the batch size)."""
        sizes = range(1, self.max_batch + 1) if self.opened.provider != PROVIDER_NAMES["cpu"] else (1,)
        for batch in sizes:
            zeros = {name: np.zeros((batch, *shape), np.float32) for name, shape in self.batch_inputs.items()}
            for _ in range(2 if self._cuda_graph else 1):
                self._run_chunk(zeros, batch)


class BoundRun:
    """IO binding for one batch size: input and output buffers on `device` allocated once and bound; a call
    copies the inputs into them, runs, and copies the outputs back. With cuda_graph, the run replays the graph
    captured for this batch size (ONNX Runtime's gpu_graph_id)."""

    def __init__(self, session: ort.InferenceSession, device: str, device_id: int, batch: int,
                 batch_inputs: dict[str, tuple[int, ...]], cuda_graph: bool) -> None:
        self.session = session
        self.binding = session.io_binding()
        self.inputs = {name: ort.OrtValue.ortvalue_from_shape_and_type((batch, *shape), np.float32, device, device_id)
                       for name, shape in batch_inputs.items()}
        for name, value in self.inputs.items():
            self.binding.bind_ortvalue_input(name, value)
        self.outputs = {}
        for node in session.get_outputs():
            shape = (batch, *node.shape[1:])
            if not all(isinstance(size, int) for size in shape):
                raise BundleError(f"output {node.name} has the shape {node.shape}: IO binding needs fixed sizes "
                                  "after the batch axis; turn runtime.io_binding and runtime.cuda_graph off")
            self.outputs[node.name] = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, device, device_id)
            self.binding.bind_ortvalue_output(node.name, self.outputs[node.name])
        self.run_options = ort.RunOptions()
        if cuda_graph:
            self.run_options.add_run_config_entry("gpu_graph_id", str(batch))

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        for name, array in feeds.items():
            self.inputs[name].update_inplace(array)
        self.session.run_with_iobinding(self.binding, self.run_options)
        return [value.numpy() for value in self.outputs.values()]


class EncoderOutput(NamedTuple):
    """pose_6d (B, 144), betas (B, 10), cam (B, 3), feature (B, D); float32."""

    pose_6d: np.ndarray
    betas: np.ndarray
    cam: np.ndarray
    feature: np.ndarray


class EncoderSession:
    """The bundle's encoder graph in ONNX Runtime, warmed up at construction (at every batch size up to
    max_batch on a GPU, so that no frame waits for a TensorRT build or a kernel choice)."""

    def __init__(self, bundle: Bundle, config: RuntimeConfig = RuntimeConfig()) -> None:
        opened = create_session(bundle.encoder_path, config, sha256=bundle.encoder_sha256, batch_inputs=ENCODER_INPUTS)
        inputs = {node.name for node in opened.session.get_inputs()}
        outputs = [node.name for node in opened.session.get_outputs()]
        if inputs != set(ENCODER_INPUTS) or outputs != list(EncoderOutput._fields):
            raise BundleError(f"{bundle.encoder_path} has inputs {sorted(inputs)} and outputs {outputs}, not the "
                              "encoder contract (image, person_tokens -> pose_6d, betas, cam, feature): re-export it")
        self.batched = BatchedSession(opened, config, ENCODER_INPUTS)
        self.batched.warm_up()

    @property
    def session(self) -> ort.InferenceSession:
        return self.batched.session

    @property
    def opened(self) -> OpenedSession:
        return self.batched.opened

    @property
    def provider(self) -> str:
        """ONNX Runtime's name of the provider the session obtained."""
        return self.batched.opened.provider

    @property
    def device(self) -> str:
        """The GPU's name, or `cpu`."""
        return self.batched.opened.device

    def run(self, images: np.ndarray, person_tokens: np.ndarray) -> EncoderOutput:
        """images (B, 3, 256, 192) float32, person_tokens (B, 192) float32 -> EncoderOutput; B over max_batch
        runs in chunks."""
        if images.ndim != 4 or images.shape[1:] != (3, IMAGE_HEIGHT, IMAGE_WIDTH):
            raise InputError(f"encoder images must be (B, 3, {IMAGE_HEIGHT}, {IMAGE_WIDTH}), got {images.shape}")
        if person_tokens.shape != (images.shape[0], NUM_TOKENS):
            raise InputError(f"person_tokens must be ({images.shape[0]}, {NUM_TOKENS}), got {person_tokens.shape}")
        return EncoderOutput(*self.batched.run({"image": images, "person_tokens": person_tokens}))

"""Which ONNX Runtime execution provider a session asks for, with which options, and what it really got.

ONNX Runtime lists every provider compiled into the installed build (get_available_providers), whether its
shared libraries load on this machine or not, and a provider that fails to load is skipped with a logged
error: the session then runs on the next one. So the chain asked for is built from what loads here
(ProviderEnvironment.load_error tries to load the provider's own library, which needs CUDA, cuDNN or
TensorRT), and the provider a session obtained is read back and compared with the request
(check_obtained): an explicit `cuda` or `tensorrt` that did not come up is an error that names what is
missing and what to install, never a silent CPU.

    chain, skipped = provider_chain("auto", environment)    # e.g. ["cuda", "cpu"], {"tensorrt": "libnvinfer..."}
    options = provider_options("cuda", config, ...)          # the dicts handed to InferenceSession

The environment is the seam the tests replace: they inject the lists a GPU build would report.
Run-time module: numpy and onnxruntime only.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from fasthmr_model.errors import FastHMRError

# Short names (the parameter values) -> ONNX Runtime's names, fastest first.
PROVIDER_NAMES = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
                  "cpu": "CPUExecutionProvider"}
SHORT_NAMES = {long: short for short, long in PROVIDER_NAMES.items()}
CHAIN = tuple(PROVIDER_NAMES)
PRECISIONS = ("auto", "fp32", "fp16")
# The provider's own library inside onnxruntime/capi: loading it loads CUDA, cuDNN or TensorRT with it.
PROVIDER_LIBRARIES = {"tensorrt": "libonnxruntime_providers_tensorrt.so", "cuda": "libonnxruntime_providers_cuda.so"}
INSTALL_HINTS = {
    "cuda": "onnxruntime-gpu with its CUDA 13 and cuDNN 9 libraries (`make setup` does it on a machine where "
            "`nvidia-smi -L` lists a GPU; FASTHMR_ONNXRUNTIME=gpu forces it), and an NVIDIA driver",
    "tensorrt": "onnxruntime-gpu and the TensorRT 10 libraries for CUDA 13 (`pip install -r "
                "requirements-tensorrt.txt` after a GPU `make setup`; JetPack's TensorRT on a Jetson)",
}
CPU_DEVICE = "cpu"


class ProviderError(FastHMRError):
    """The requested execution provider is not in this onnxruntime build, cannot load, or was not obtained."""


class ProviderEnvironment:
    """What this machine's onnxruntime offers. Tests replace it (fasthmr_model.runtime.ENVIRONMENT) with one
    that reports the lists of another machine."""

    def available(self) -> list[str]:
        """ONNX Runtime names of the providers compiled into the installed build."""
        return list(ort.get_available_providers())

    def load_error(self, provider: str) -> str | None:
        """None when the provider ("cuda", "tensorrt") and the libraries it needs load here, else the loader's
        message (which names the missing library). The CPU provider is built in."""
        if provider == "cpu":
            return None
        _preload_nvidia_wheels()
        path = Path(ort.__file__).parent / "capi" / PROVIDER_LIBRARIES[provider]
        if not path.is_file():
            return f"{path.name} is not in this onnxruntime build ({ort.__version__})"
        try:
            ctypes.CDLL(str(path))
        except OSError as error:
            return str(error)
        return None

    def open(self, path: Path, options: ort.SessionOptions, providers: list) -> ort.InferenceSession:
        """The session (providers: ONNX Runtime's list of names or (name, options) pairs)."""
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)

    def obtained(self, session: ort.InferenceSession) -> str:
        """The ONNX Runtime name of the provider the session runs on (the first of those it kept)."""
        return session.get_providers()[0]

    def device_name(self, provider: str, device_id: int) -> str:
        """The GPU's name for a GPU provider, `cpu` for the CPU."""
        return CPU_DEVICE if provider == "cpu" else gpu_name(device_id)


_PRELOADED = []


def _preload_nvidia_wheels() -> None:
    """Loads the CUDA and cuDNN libraries of the nvidia-* wheels (requirements-gpu.txt) and TensorRT's
    (requirements-tensorrt.txt) once: they are not on the loader's path, and ONNX Runtime's provider libraries
    find them only when they are already loaded. Nothing to do without those wheels (system CUDA, JetPack):
    the loader's path then serves."""
    if _PRELOADED or not hasattr(ort, "preload_dlls"):
        return
    _PRELOADED.append(True)
    import importlib.util

    if importlib.util.find_spec("nvidia") is not None:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints what it could not load; load_error says it
            ort.preload_dlls()
    # TensorRT's wheel (requirements-tensorrt.txt) keeps its libraries in the tensorrt_libs package.
    tensorrt_libs = importlib.util.find_spec("tensorrt_libs")
    if tensorrt_libs is not None and tensorrt_libs.submodule_search_locations:
        folder = Path(list(tensorrt_libs.submodule_search_locations)[0])
        for name in ("libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10"):
            with contextlib.suppress(OSError):
                ctypes.CDLL(str(folder / name))


def gpu_name(device_id: int) -> str:
    """The name of GPU `device_id` from NVML (the driver's library), e.g. "NVIDIA H200"; "CUDA device N"
    where NVML is not there (a Jetson) or does not answer. NVML counts every GPU of the machine, while CUDA
    counts those CUDA_VISIBLE_DEVICES leaves: with that variable set, the name may be another GPU's."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        if nvml.nvmlInit_v2() != 0:
            raise OSError("nvmlInit failed")
        try:
            handle = ctypes.c_void_p()
            name = ctypes.create_string_buffer(96)
            if (nvml.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(device_id), ctypes.byref(handle)) != 0
                    or nvml.nvmlDeviceGetName(handle, name, ctypes.c_uint(len(name))) != 0):
                raise OSError("no such device")
            return name.value.decode(errors="replace")
        finally:
            nvml.nvmlShutdown()
    except (OSError, AttributeError):
        return f"CUDA device {device_id}"


def provider_chain(requested: str, environment: ProviderEnvironment) -> tuple[list[str], dict[str, str]]:
    """The providers to ask ONNX Runtime for (short names, the CPU last) and, for auto, why the faster ones
    were left out ({name: reason}).

    auto: TensorRT when its libraries load, then CUDA when its libraries load, then the CPU. An explicit
    tensorrt or cuda that this build lacks, or whose libraries do not load, raises ProviderError naming what
    is missing and what to install (TensorRT keeps CUDA behind it for the nodes it does not take).
    """
    if requested != "auto" and requested not in PROVIDER_NAMES:
        raise ProviderError(f"provider must be auto or one of {list(PROVIDER_NAMES)}, got {requested!r}")
    available = environment.available()
    usable, skipped = [], {}
    for name in CHAIN[:-1]:
        if PROVIDER_NAMES[name] not in available:
            skipped[name] = f"this onnxruntime build ({ort.__version__}) has no {PROVIDER_NAMES[name]}"
        elif (error := environment.load_error(name)) is not None:
            skipped[name] = f"{PROVIDER_NAMES[name]} cannot load: {error}"
        else:
            usable.append(name)
    if requested == "auto":
        return usable + ["cpu"], skipped
    if requested == "cpu":
        return ["cpu"], {}
    if requested in skipped:
        raise ProviderError(f"runtime provider {requested!r} was requested, but {skipped[requested]}; install "
                            f"{INSTALL_HINTS[requested]}, or use provider 'auto' or 'cpu'")
    return usable[usable.index(requested):] + ["cpu"], {}


def check_obtained(requested: str, asked: list[str], obtained: str) -> str:
    """The short name of the provider a session obtained (ONNX Runtime's name `obtained`); raises
    ProviderError when an explicit request was not obtained (ONNX Runtime fell back: no usable GPU, an
    incompatible driver)."""
    short = SHORT_NAMES.get(obtained)
    if short is None:
        raise ProviderError(f"onnxruntime ran the session on {obtained}, which fasthmr does not know")
    if requested not in ("auto", short):
        raise ProviderError(f"runtime provider {requested!r} was requested and could be loaded, but onnxruntime ran "
                            f"the session on {obtained} (asked for {[PROVIDER_NAMES[name] for name in asked]}): no "
                            f"usable GPU for {PROVIDER_NAMES[requested]} (check `nvidia-smi` and the driver's CUDA "
                            f"version; onnxruntime's log above says why); install {INSTALL_HINTS[requested]}")
    return short


def resolved_precision(precision: str, provider: str) -> str:
    """fp32 or fp16 for a session on `provider`. auto: fp16 on a GPU (TensorRT and CUDA: its accuracy cost is
    measured in docs/gpu.md), fp32 on the CPU (whose fp16 kernels are slower than its fp32 ones)."""
    if precision not in PRECISIONS:
        raise FastHMRError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    return "fp32" if provider == "cpu" else "fp16"


@dataclass(frozen=True)
class EngineCache:
    """Where TensorRT keeps a graph's engines (keyed by the graph's checksum, the GPU, precision and batch
    profile: an engine is valid only for all four) and its timing cache (per GPU: kernel timings serve
    every graph)."""

    engines: Path
    timing: Path


def engine_cache(cache_dir: Path, graph_sha256: str, device: str, precision: str, max_batch: int) -> EngineCache:
    device_key = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-") or "gpu"
    return EngineCache(engines=cache_dir / "tensorrt" / f"{graph_sha256[:16]}-{device_key}-{precision}-b{max_batch}",
                       timing=cache_dir / "tensorrt" / f"timing-{device_key}")


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/fasthmr/runtime (~/.cache/fasthmr/runtime): TensorRT engines and fp16 graphs."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fasthmr" / "runtime"


def batch_profile(batch_inputs: dict[str, tuple[int, ...]], batch: int) -> str:
    """TensorRT's shape list for a batch size: {"image": (3, 256, 192)} -> "image:4x3x256x192"."""
    return ",".join(f"{name}:" + "x".join(str(size) for size in (batch, *shape))
                    for name, shape in batch_inputs.items())


def tensorrt_options(device_id: int, fp16: bool, cache: EngineCache, batch_inputs: dict[str, tuple[int, ...]],
                     max_batch: int) -> dict[str, object]:
    """The TensorRT provider's options: fp16, engine and timing caches on disk, and one optimisation profile
    over batch 1 .. max_batch (explicit shapes make ONNX Runtime build the engine when the session is created,
    and a frame inside the profile never triggers another build). The profile is tuned for max_batch."""
    return {
        "device_id": device_id,
        "trt_fp16_enable": fp16,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache.engines),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache.timing),
        "trt_profile_min_shapes": batch_profile(batch_inputs, 1),
        "trt_profile_opt_shapes": batch_profile(batch_inputs, max_batch),
        "trt_profile_max_shapes": batch_profile(batch_inputs, max_batch),
    }


def cuda_options(device_id: int, precision: str, cuda_graph: bool) -> dict[str, object]:
    """The CUDA provider's options. cuDNN's exhaustive search (ONNX Runtime's default) times every convolution
    algorithm at each new input shape, which stalls the first frames with a new person count; the heuristic
    picks at once. fp32 keeps TF32 off, so that fp32 means fp32 (fp16 is the fast path)."""
    return {
        "device_id": device_id,
        "cudnn_conv_algo_search": "HEURISTIC",
        "use_tf32": 0 if precision == "fp32" else 1,
        "enable_cuda_graph": int(cuda_graph),
    }

"""ONNX Runtime sessions: provider choice, non-spinning thread pools, warm-up, validated inputs.

Run-time module: imports numpy and onnxruntime only (never torch or smplx).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime as ort

from fasthmr_model.bundle import Bundle
from fasthmr_model.encoder.config import IMAGE_HEIGHT, IMAGE_WIDTH, NUM_TOKENS
from fasthmr_model.errors import BundleError, FastHMRError, InputError

# Fastest first; "auto" takes the first of these that this onnxruntime build offers.
PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
PROVIDER_NAMES = {"tensorrt": PROVIDER_PREFERENCE[0], "cuda": PROVIDER_PREFERENCE[1], "cpu": PROVIDER_PREFERENCE[2]}


@dataclass(frozen=True)
class RuntimeConfig:
    """How sessions run. provider: auto | tensorrt | cuda | cpu. threads: intra-op threads, 0 = ORT's choice."""

    provider: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        if self.provider != "auto" and self.provider not in PROVIDER_NAMES:
            raise FastHMRError(f"provider must be auto or one of {sorted(PROVIDER_NAMES)}, got {self.provider!r}")
        if self.threads < 0:
            raise FastHMRError(f"threads must be >= 0 (0 = onnxruntime's choice), got {self.threads}")


def select_providers(requested: str = "auto", available: list[str] | None = None) -> list[str]:
    """The provider list to hand to ONNX Runtime: the requested one (or the best available) then CPU."""
    available = list(ort.get_available_providers()) if available is None else available
    if requested == "auto":
        chosen = next(name for name in PROVIDER_PREFERENCE if name in available or name == "CPUExecutionProvider")
    else:
        if requested not in PROVIDER_NAMES:
            raise FastHMRError(f"provider must be auto or one of {sorted(PROVIDER_NAMES)}, got {requested!r}")
        chosen = PROVIDER_NAMES[requested]
        if chosen not in available:
            raise FastHMRError(
                f"provider {requested!r} ({chosen}) is not available in this onnxruntime build "
                f"(available: {available}); install onnxruntime-gpu with the matching CUDA/TensorRT, or use 'auto'"
            )
    return [chosen] if chosen == "CPUExecutionProvider" else [chosen, "CPUExecutionProvider"]


def create_session(model_path: Path, config: RuntimeConfig = RuntimeConfig()) -> ort.InferenceSession:
    """An InferenceSession whose worker threads sleep instead of spinning when idle.

    Spinning threads steal the cores from everything else in the process (the ROS executor, torch
    training): about 64 ms per pair of calls were lost to it on these 2-core machines.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    providers = select_providers(config.provider)
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime's own types (an empty file: InvalidArgument), RuntimeError, OSError
        raise BundleError(f"onnxruntime cannot load {model_path} ({type(error).__name__}: {error}); the file is "
                          "empty, truncated or corrupt, or was exported by an incompatible tool: re-export the "
                          "bundle") from None


class EncoderOutput(NamedTuple):
    """pose_6d (B, 144), betas (B, 10), cam (B, 3), feature (B, D); float32."""

    pose_6d: np.ndarray
    betas: np.ndarray
    cam: np.ndarray
    feature: np.ndarray


class EncoderSession:
    """The bundle's encoder graph in ONNX Runtime, warmed up at construction."""

    def __init__(self, bundle: Bundle, config: RuntimeConfig = RuntimeConfig()) -> None:
        self.session = create_session(bundle.encoder_path, config)
        inputs = {node.name for node in self.session.get_inputs()}
        outputs = [node.name for node in self.session.get_outputs()]
        if inputs != {"image", "person_tokens"} or outputs != list(EncoderOutput._fields):
            raise BundleError(f"{bundle.encoder_path} has inputs {sorted(inputs)} and outputs {outputs}, not the "
                              "encoder contract (image, person_tokens -> pose_6d, betas, cam, feature): re-export it")
        self.provider = self.session.get_providers()[0]
        self.run(np.zeros((1, 3, IMAGE_HEIGHT, IMAGE_WIDTH), np.float32), np.zeros((1, NUM_TOKENS), np.float32))

    def run(self, images: np.ndarray, person_tokens: np.ndarray) -> EncoderOutput:
        """images (B, 3, 256, 192) float32, person_tokens (B, 192) float32 -> EncoderOutput."""
        if images.ndim != 4 or images.shape[1:] != (3, IMAGE_HEIGHT, IMAGE_WIDTH):
            raise InputError(f"encoder images must be (B, 3, {IMAGE_HEIGHT}, {IMAGE_WIDTH}), got {images.shape}")
        if person_tokens.shape != (images.shape[0], NUM_TOKENS):
            raise InputError(f"person_tokens must be ({images.shape[0]}, {NUM_TOKENS}), got {person_tokens.shape}")
        feeds = {"image": np.ascontiguousarray(images, np.float32),
                 "person_tokens": np.ascontiguousarray(person_tokens, np.float32)}
        return EncoderOutput(*self.session.run(None, feeds))

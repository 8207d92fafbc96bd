"""A ProviderEnvironment (fasthmr_model.providers) that reports another machine's onnxruntime: the tests of the
provider chain inject it as fasthmr_model.runtime.ENVIRONMENT or pass it to create_session."""

from __future__ import annotations

import onnxruntime as ort

from fasthmr_model.providers import ProviderEnvironment

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
NO_TENSORRT = {"tensorrt": "libnvinfer.so.10: cannot open shared object file: No such file or directory"}
NO_CUDA = {"cuda": "libcublasLt.so.13: cannot open shared object file: No such file or directory"}
GPU = "NVIDIA Test GPU 80GB"


class InjectedEnvironment(ProviderEnvironment):
    """Another machine's onnxruntime: the providers its build lists, those whose libraries fail to load, and
    the provider its sessions report (by default the first asked for). Sessions are real, on the CPU."""

    def __init__(self, available=GPU_BUILD, load_errors=None, obtained=None) -> None:
        self._available, self._load_errors, self._obtained = list(available), dict(load_errors or {}), obtained
        self.asked: list[list] = []

    def available(self):
        return self._available

    def load_error(self, provider):
        return self._load_errors.get(provider)

    def open(self, path, options, providers):
        self.asked.append(providers)
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

    def obtained(self, session):
        first = self.asked[-1][0]
        return self._obtained or (first[0] if isinstance(first, tuple) else first)

    def device_name(self, provider, device_id):
        return "cpu" if provider == "cpu" else GPU

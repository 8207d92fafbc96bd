"""The install picks one ONNX Runtime build: `make setup` chooses the GPU build where `nvidia-smi -L` lists a GPU
(a fake nvidia-smi on PATH here) and the CPU build otherwise, FASTHMR_ONNXRUNTIME forces either, and nothing
else drags the CPU build back next to the GPU build (setup.py, requirements.txt)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[a-z,]+\])?(==|~=)[0-9][0-9A-Za-z.]*$")


def onnxruntime_build(tmp_path: Path, gpu_listed: bool | None, forced: str | None = None) -> str:
    """What `make onnxruntime-build` prints with a fake nvidia-smi listing a GPU (True), listing none (False), or
    no nvidia-smi on PATH (None)."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    fake = folder / "nvidia-smi"
    if gpu_listed is not None:
        listing = "GPU 0: NVIDIA H200 (UUID: GPU-00000000)" if gpu_listed else "No devices were found"
        fake.write_text(f"#!/bin/sh\necho '{listing}'\n")
        fake.chmod(0o755)
    environment = {key: value for key, value in os.environ.items() if key != "FASTHMR_ONNXRUNTIME"}
    environment["PATH"] = os.pathsep.join([str(folder), "/usr/bin", "/bin"])
    if forced is not None:
        environment["FASTHMR_ONNXRUNTIME"] = forced
    return subprocess.run(["make", "-s", "-C", str(REPOSITORY), "onnxruntime-build"], env=environment, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_make_setup_chooses_the_gpu_build_where_nvidia_smi_lists_a_gpu(tmp_path):
    assert onnxruntime_build(tmp_path, gpu_listed=True) == "gpu"
    assert onnxruntime_build(tmp_path, gpu_listed=False) == "cpu"
    assert onnxruntime_build(tmp_path, gpu_listed=None) == "cpu"
    assert onnxruntime_build(tmp_path, gpu_listed=True, forced="cpu") == "cpu"
    assert onnxruntime_build(tmp_path, gpu_listed=None, forced="gpu") == "gpu"


def test_make_setup_refuses_an_unknown_build(tmp_path):
    result = subprocess.run(["make", "-s", "-C", str(REPOSITORY), "VENV=" + str(tmp_path / "venv"), "setup"],
                            env=dict(os.environ, FASTHMR_ONNXRUNTIME="rocm"), capture_output=True, text=True)
    assert result.returncode != 0 and "FASTHMR_ONNXRUNTIME must be gpu or cpu, got 'rocm'" in result.stderr
    assert not (tmp_path / "venv").exists()


def requirements(name: str) -> dict[str, str]:
    """Package name -> its pin line, of a requirements file and the files it includes with `-r` (every line must
    be pinned)."""
    pins = {}
    for line in (REPOSITORY / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(requirements(line[3:].strip()))
        elif line:
            match = PIN.match(line)
            assert match, f"{name}: {line!r} is not pinned"
            pins[match.group(1).lower()] = line
    return pins


def test_each_build_has_its_own_pinned_requirements_and_nothing_else_names_onnxruntime():
    cpu, gpu = requirements("requirements-cpu.txt"), requirements("requirements-gpu.txt")
    # Every other requirements file (the common one, and any that a ROS distribution or a shared base adds)
    # names neither build: `make setup` installs it beside one of the two.
    others = sorted(path.name for path in REPOSITORY.glob("requirements*.txt")
                    if path.name not in ("requirements-cpu.txt", "requirements-gpu.txt"))
    assert "requirements.txt" in others
    for name in others:
        assert not {"onnxruntime", "onnxruntime-gpu"} & set(requirements(name)), name
    assert cpu == {"onnxruntime": "onnxruntime==1.32.0"}
    assert gpu["onnxruntime-gpu"] == "onnxruntime-gpu[cuda,cudnn]==1.31.1" and "onnxruntime" not in gpu
    assert "nvidia-cublas" in gpu  # the CUDA provider needs libcublas.so.13; onnxruntime-gpu's extras lack it
    assert requirements("requirements-tensorrt.txt") == {"tensorrt-cu13-libs": "tensorrt-cu13-libs==10.16.1.11"}
    makefile = (REPOSITORY / "Makefile").read_text()
    assert "requirements-$(ONNXRUNTIME_BUILD).txt" in makefile and "pip show -q $(ONNXRUNTIME_OTHER)" in makefile


def test_setup_py_does_not_require_either_build():
    tree = ast.parse((REPOSITORY / "setup.py").read_text())
    (call,) = [node for node in ast.walk(tree)
               if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup"]
    keywords = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords
                if keyword.arg in ("install_requires", "extras_require")}
    assert not any(name.startswith("onnxruntime") for name in keywords["install_requires"])
    assert keywords["extras_require"]["cpu"] == ["onnxruntime"]
    assert keywords["extras_require"]["gpu"] == ["onnxruntime-gpu[cuda,cudnn]"]

"""The node on a machine whose onnxruntime is the GPU build but which has no usable CUDA (the lists of such a
build injected through fasthmr_model.runtime.ENVIRONMENT; the node and its sessions are real, in this
process): `runtime.provider:=cuda` fails configure naming CUDA, and `auto` comes up on the CPU and says so
in its log and its diagnostics."""

from __future__ import annotations

import time

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

import fasthmr_model.runtime as runtime
from injected_providers import NO_CUDA, NO_TENSORRT, InjectedEnvironment

ANSWER_TIMEOUT_S = 15.0


@pytest.fixture
def gpu_build_without_cuda(monkeypatch):
    monkeypatch.setattr(runtime, "ENVIRONMENT", InjectedEnvironment(load_errors={**NO_TENSORRT, **NO_CUDA}))


def configured_node(provider: str, bundle, tmp_path):
    from fasthmr_ros.node import FastHMRNode

    overrides = [Parameter("autostart", value=False), Parameter("bundle", value=str(bundle.path)),
                 Parameter("runtime.provider", value=provider), Parameter("runtime.cache_dir", value=str(tmp_path)),
                 Parameter("diagnostics_period", value=0.05)]
    node = FastHMRNode(parameter_overrides=overrides)
    return node, node.trigger_configure()


def test_cuda_fails_configure_naming_cuda_and_auto_runs_on_the_cpu(ros_env, gpu_build_without_cuda,
                                                                   untrained_tiny_bundle, tmp_path, capfd):
    with rclpy.init():
        node, result = configured_node("cuda", untrained_tiny_bundle, tmp_path)
        assert result == TransitionCallbackReturn.FAILURE and node.state_label == "unconfigured"
        node.destroy_node()
        logged = capfd.readouterr().err
        assert "cannot configure: runtime provider 'cuda' was requested, but CUDAExecutionProvider cannot load: " \
               "libcublasLt.so.13" in logged and "onnxruntime-gpu" in logged, logged

        node, result = configured_node("auto", untrained_tiny_bundle, tmp_path)
        assert result == TransitionCallbackReturn.SUCCESS
        logged = capfd.readouterr().err
        assert "encoder on cpu (CPUExecutionProvider, fp32)" in logged and "auto left out tensorrt" in logged
        assert "libcublasLt.so.13" in logged, logged
        listener = rclpy.create_node("diagnostics_listener")
        received = []
        listener.create_subscription(DiagnosticArray, "/diagnostics", received.append, 10)
        executor = SingleThreadedExecutor()
        for each in (node, listener):
            executor.add_node(each)
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while not received and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        executor.shutdown()
        (status,) = received[0].status
        values = {entry.key: entry.value for entry in status.values}
        assert status.hardware_id == values["device"] == "cpu" and values["provider"] == "CPUExecutionProvider"
        node.trigger_shutdown()
        node.destroy_node()
        listener.destroy_node()

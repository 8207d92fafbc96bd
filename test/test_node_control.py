"""`python -m fasthmr_ros.node_control` (what stands in for `ros2 param` and `ros2 lifecycle` here) against the
real node in its own process: lifecycle transitions, reading, setting and refused parameters."""

from __future__ import annotations

import subprocess
import sys

from test_node import node_environment, unconfigured_node


def control(environment: dict, node_name: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fasthmr_ros.node_control", "--node", f"/{node_name}", *arguments],
                          env=node_environment(environment), capture_output=True, text=True, timeout=60)


def test_node_control_walks_the_lifecycle_and_sets_parameters_with_the_nodes_checks(ros_env, tmp_path,
                                                                                     untrained_tiny_bundle):
    with unconfigured_node(ros_env, tmp_path, untrained_tiny_bundle.path) as (process, node_name, _):
        def ok(*arguments: str) -> str:
            result = control(ros_env, node_name, *arguments)
            assert result.returncode == 0, result.stderr
            return result.stdout.strip()

        assert ok("state") == "unconfigured"
        assert ok("configure") == "configure: done"
        assert ok("state") == "inactive"
        assert ok("get", "markers.mesh_rate") == "markers.mesh_rate: 2.0"
        assert ok("set", "markers.mesh_rate", "5") == "set markers.mesh_rate"  # an integer taken as the double it is
        assert ok("get", "markers.mesh_rate") == "markers.mesh_rate: 5.0"
        assert ok("set", "mask_mode", "binary") == "set mask_mode"
        for arguments, reason in ((("set", "sync.tolerance", "5.0"), "refused"), (("set", "mask_mode", "rainbow"), "instances"),
                                  (("set", "image_topic", "/elsewhere"), "refused"), (("get", "no_such"), "no parameter")):
            refused = control(ros_env, node_name, *arguments)
            assert refused.returncode == 1 and reason in refused.stderr, refused
        assert ok("activate") == "activate: done"
        assert ok("state") == "active"
        assert ok("shutdown") == "shutdown: done"
        assert process.wait(timeout=10) == 0
    missing = control(ros_env, "nobody_here", "state")
    assert missing.returncode == 1 and "no node /nobody_here answers" in missing.stderr

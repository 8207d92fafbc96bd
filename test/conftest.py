"""Shared pytest set-up: every ROS process the tests start keeps DDS on loopback, in its own domain.

ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST is set for the pytest process itself at import, before any
test can call rclpy.init (Kilted ignores ROS_LOCALHOST_ONLY, and default discovery multicasts out of
the network card). The `ros_env` fixture gives each test its own ROS_DOMAIN_ID.
"""
import itertools
import os
import sys

import pytest

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
# ament_index finds the venv's packages (fasthmr_msgs, the message packages) only through this.
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)

# Fast DDS derives its ports from the domain id (7400 + 250 * id + ...); ids up to 101 keep every
# participant's ports valid. Domain 0, the default, is left to whatever else runs on the machine.
FIRST_DOMAIN_ID = 1
DOMAIN_ID_COUNT = 101
_domain_counter = itertools.count()


def next_ros_domain_id():
    """A domain id in 1..101 that differs between the tests of this pytest process.

    It starts from the process id, so two pytest runs at once on one machine usually differ too;
    tests also use unique topic names in case they do not.
    """
    offset = (os.getpid() + next(_domain_counter)) % DOMAIN_ID_COUNT
    return FIRST_DOMAIN_ID + offset


def ament_prefix_path_with_venv():
    """AMENT_PREFIX_PATH with this venv first, keeping any sourced ROS install after it."""
    existing = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    return os.pathsep.join([sys.prefix] + [path for path in existing if path and path != sys.prefix])


@pytest.fixture
def ros_env(monkeypatch):
    """Environment for the ROS processes of one test: loopback discovery, a test-unique
    ROS_DOMAIN_ID, and this venv first on AMENT_PREFIX_PATH.

    Returns a full copy of the environment (dict of str) to pass to subprocess as env=. The same
    three variables are also set in this process for the test's duration, so that an rclpy.init in
    the test itself joins the same domain.
    """
    return ros_test_environment(monkeypatch)


@pytest.fixture(scope="module")
def ros_env_module():
    """ros_env shared by every test of a module (one ROS domain), e.g. to start a node once per module."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield ros_test_environment(monkeypatch)


def ros_test_environment(monkeypatch):
    """Sets the ROS variables of a new test domain with monkeypatch; returns the full environment."""
    ros_variables = {
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": str(next_ros_domain_id()),
        "AMENT_PREFIX_PATH": ament_prefix_path_with_venv(),
    }
    for name, value in ros_variables.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


@pytest.fixture(scope="session")
def untrained_tiny_bundle(tmp_path_factory):
    """A randomly initialised `tiny` bundle with the synthetic body (about 2 s to export, once per session)."""
    from fasthmr_model.export import write_untrained_bundle

    return write_untrained_bundle("tiny", tmp_path_factory.mktemp("bundles") / "untrained-tiny", seed=0)

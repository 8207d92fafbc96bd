"""The shipped DDS transport (fasthmr_ros/transport.py): when it applies, which variable carries it, that the
node applies it by itself and that Fast DDS takes the profile without complaint; and the diagnostics that say
when images arrive slower than masks. How much it delivers is measured by `python -m fasthmr_ros.transport_bench`."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

from fasthmr_ros.diagnostics import DiagnosticsConfig, NodeStatistics, rate_gap
from fasthmr_ros.transport import (PROFILES_VARIABLE_FAST_DDS_2, PROFILES_VARIABLE_FAST_DDS_3, profiles_file,
                                   profiles_variable, transport_environment, user_dds_settings)
from test_node import PARAMS_FILE, node_environment


@pytest.mark.parametrize("own", [{"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}, {"FASTDDS_DEFAULT_PROFILES_FILE": "x.xml"},
                                 {"FASTRTPS_DEFAULT_PROFILES_FILE": "x.xml"}, {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}])
def test_the_users_own_dds_settings_win(own):
    assert user_dds_settings(own) == sorted(own)
    assert transport_environment(dict(own, ROS_DOMAIN_ID="3")) == {}


def test_without_own_settings_the_shipped_profile_applies_also_under_fast_dds_named_explicitly():
    for environ in ({}, {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}):
        assert transport_environment(environ) == {profiles_variable(): str(profiles_file())}
    assert profiles_file().is_file()


def fake_ros_prefix(folder, fast_dds_share: str):
    """A prefix with rmw_fastrtps_cpp in its ament index and the Fast DDS share folder of one major version."""
    (folder / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (folder / "share" / "ament_index" / "resource_index" / "packages" / "rmw_fastrtps_cpp").write_text("")
    (folder / "share" / fast_dds_share).mkdir()
    return folder


@pytest.mark.parametrize("share, variable", [("fastdds", PROFILES_VARIABLE_FAST_DDS_3),
                                             ("fastrtps", PROFILES_VARIABLE_FAST_DDS_2)])
def test_the_profiles_variable_is_the_one_the_installed_fast_dds_reads(tmp_path, monkeypatch, share, variable):
    """Kilted's Fast DDS 3 reads FASTDDS_DEFAULT_PROFILES_FILE, Jazzy's Fast DDS 2 FASTRTPS_DEFAULT_PROFILES_FILE."""
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(fake_ros_prefix(tmp_path, share)))
    assert profiles_variable() == variable


def test_the_profile_keeps_qos_alone_and_names_a_large_shared_memory_segment_and_udp():
    root = ElementTree.parse(profiles_file()).getroot()
    namespace = {"dds": "http://www.eprosima.com"}
    transports = {descriptor.find("dds:transport_id", namespace).text: descriptor
                  for descriptor in root.iterfind(".//dds:transport_descriptor", namespace)}
    kinds = {transport_id: descriptor.find("dds:type", namespace).text for transport_id, descriptor in transports.items()}
    assert sorted(kinds.values()) == ["SHM", "UDPv4"]  # UDP: discovery and other machines
    shared_memory = next(descriptor for descriptor in transports.values()
                         if descriptor.find("dds:type", namespace).text == "SHM")
    assert int(shared_memory.find("dds:segment_size", namespace).text) >= 8 * 1280 * 720 * 3
    (participant,) = root.iterfind(".//dds:participant", namespace)
    assert participant.get("is_default_profile") == "true"
    used = [element.text for element in participant.iterfind("dds:rtps/dds:userTransports/dds:transport_id", namespace)]
    assert sorted(used) == sorted(transports)
    # No reader or writer QoS: best-effort camera drivers keep matching the node's inputs.
    assert not list(root.iterfind(".//dds:data_reader", namespace)) and not list(root.iterfind(".//dds:data_writer", namespace))


def node_start_log(environment: dict, tmp_path, bundle) -> str:
    """The output of a node started with autostart off, up to its shutdown by SIGINT."""
    import signal
    import time

    command = [sys.executable, "-m", "fasthmr_ros.node", "--ros-args", "--params-file", str(PARAMS_FILE),
               "-r", "__node:=fasthmr_transport_test", "-p", "autostart:=false", "-p", f"bundle:={bundle.path}"]
    log_path = tmp_path / "node.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=node_environment(environment), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30.0
        while "DDS transport" not in log_path.read_text() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        time.sleep(0.5)  # what Fast DDS says about the profile comes at participant creation, before the log line
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0, log_path.read_text()
    return log_path.read_text()


def test_the_node_applies_the_profile_by_itself_and_fast_dds_takes_it(ros_env, tmp_path, untrained_tiny_bundle):
    environment = {name: value for name, value in ros_env.items() if not name.startswith(("FASTDDS_", "FASTRTPS_"))}
    output = node_start_log(environment, tmp_path, untrained_tiny_bundle)
    assert f"DDS transport: {profiles_variable()}={profiles_file()}" in output
    assert "XMLPARSER" not in output and "Error" not in output and "deprecated" not in output, output


def test_the_node_leaves_the_users_own_dds_settings_alone(ros_env, tmp_path, untrained_tiny_bundle):
    output = node_start_log(dict(ros_env, FASTDDS_BUILTIN_TRANSPORTS="DEFAULT"), tmp_path, untrained_tiny_bundle)
    assert "DDS transport: the environment's own settings (FASTDDS_BUILTIN_TRANSPORTS)" in output


def test_rate_gap_names_the_slower_input_and_only_a_clear_gap():
    assert rate_gap(15, 30, 1.0).startswith("images arrive slower than masks (15.0/s against 30.0/s)")
    assert "lost before the node" in rate_gap(15, 30, 1.0)
    assert rate_gap(30, 12, 1.0).startswith("masks arrive slower than images (12.0/s against 30.0/s)")
    assert rate_gap(29, 30, 1.0) is None  # within 10 %
    assert rate_gap(2, 3, 1.0) is None  # one message apart
    assert rate_gap(30, 0, 1.0) is None and rate_gap(0, 30, 1.0) is None  # mask-less, or no image (reported apart)


def test_diagnostics_warn_when_images_arrive_slower_than_masks_and_count_arrivals_since_start():
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticStatus

    statistics = NodeStatistics()
    for _ in range(10):
        statistics.arrived("image")
    for _ in range(30):
        statistics.arrived("mask")
    statistics.count("masks_unpaired", 20)
    (status,) = statistics.report(Time(), "cam1/fasthmr", "cpu", "CPUExecutionProvider", "active", DiagnosticsConfig()).status
    values = {value.key: value.value for value in status.values}
    assert status.level == DiagnosticStatus.WARN and status.name == "cam1/fasthmr: pipeline"
    assert status.message.startswith("images arrive slower than masks") and "masks_unpaired 20" in status.message
    assert (values["received.image"], values["received.mask"], values["received.camera_info"]) == ("10", "30", "0")
    statistics.arrived("image")
    (status,) = statistics.report(Time(), "cam1/fasthmr", "cpu", "CPUExecutionProvider", "active", DiagnosticsConfig()).status
    assert {value.key: value.value for value in status.values}["received.image"] == "11"  # totals, not the period's

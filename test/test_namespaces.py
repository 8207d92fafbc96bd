"""Two cameras, two nodes: each node, started in a namespace of its own with the default (relative) topic names,
as the two-camera launch file starts them (`fasthmr_node ... -r __ns:=/cam1`), reads only its own camera and
publishes under its own namespace."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid

import pytest

from test_node import (ANSWER_TIMEOUT_S, PARAMS_FILE, STARTUP_TIMEOUT_S, Client, Frames, assert_bodies_match,
                       camera_info_message, frames, library, node_environment, stop)  # noqa: F401 - fixtures


def namespaced_node_command(namespace: str, *parameters: str) -> list[str]:
    """The node with its default topic names, in a namespace (what `namespace:=` does in the launch file)."""
    arguments = [sys.executable, "-m", "fasthmr_ros.node", "--ros-args", "--params-file", str(PARAMS_FILE),
                 "-r", f"__ns:={namespace}", "-p", "diagnostics_period:=0.5", "-p", "qos.reliability:=reliable"]
    for parameter in parameters:
        arguments += ["-p", parameter]
    return arguments


def diagnostics_of(client: Client, status_name: str) -> list[dict]:
    return [{value.key: value.value for value in status.values} for message in client.messages("diagnostics")
            for status in message.status if status.name == status_name]


@contextlib.contextmanager
def camera_nodes(environment: dict, log_folder, bundle, namespaces: list[str], priming_frame):
    """{namespace: (process, Client)}: one node per namespace, each up and holding its camera's CameraInfo."""
    started = {}
    try:
        for namespace in namespaces:
            log = open(log_folder / f"{namespace.strip('/')}.log", "w+")
            process = subprocess.Popen(namespaced_node_command(namespace, f"bundle:={bundle.path}"),
                                       env=node_environment(environment), stdout=log, stderr=subprocess.STDOUT, text=True)
            process.log = log
            # The camera's topics and the node's outputs, as the node resolves its relative names.
            started[namespace] = (process, Client(f"{namespace.strip('/')}/fasthmr", f"{namespace.strip('/')}/camera"))
        image, _, intrinsics = priming_frame
        priming = camera_info_message(intrinsics, image.shape[1], image.shape[0])
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        for namespace, (process, client) in started.items():
            status_name = f"{namespace.strip('/')}/fasthmr: pipeline"
            while not any(float(values.get("input_rate_hz.camera_info", 0)) > 0
                          for values in diagnostics_of(client, status_name)):
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"the node in {namespace} did not come up with its CameraInfo:\n{stop(process)}")
                if client.image.get_subscription_count():
                    client.camera_info.publish(priming)
                time.sleep(0.1)
        yield started
    finally:
        for process, client in started.values():
            client.close()
            output = stop(process)
            process.log.close()
            assert process.returncode == 0, output


def test_two_namespaced_nodes_each_answer_only_their_own_camera(ros_env, tmp_path, untrained_tiny_bundle, frames,
                                                                 library):
    unique = uuid.uuid4().hex[:6]
    namespaces = [f"/cam1_{unique}", f"/cam2_{unique}"]
    with camera_nodes(ros_env, tmp_path, untrained_tiny_bundle, namespaces, frames[0]) as started:
        sent = {}
        for index, namespace in enumerate(namespaces):
            process, client = started[namespace]
            image, mask, intrinsics = frames[index + 1]  # two people for cam1, three for cam2
            _, bodies, people = Frames.send(client, process, image, mask, intrinsics)
            assert_bodies_match(bodies, people, library.process(image, mask, intrinsics))
            sent[namespace] = bodies.header.stamp
        time.sleep(0.5)  # time for a wrong answer to arrive
        for namespace, (process, client) in started.items():
            stamps = [message.header.stamp for message in client.messages("bodies")]
            assert stamps == [sent[namespace]], f"{namespace}/fasthmr answered another camera"
            # Diagnostics tell the two apart by namespace; each node received one image, its own.
            status_name = f"{namespace.strip('/')}/fasthmr: pipeline"
            client.wait_for("diagnostics", lambda message, name=status_name: any(
                status.name == name and {value.key: value.value for value in status.values}["received.image"] == "1"
                for status in message.status), timeout=ANSWER_TIMEOUT_S, process=process)
            assert client.node.count_publishers(f"{namespace}/fasthmr/markers") == 1
        # Nothing was published in the root namespace.
        assert started[namespaces[0]][1].node.count_publishers("/fasthmr/bodies") == 0

"""The real node in its own process (started once for the module, as `python -m fasthmr_ros.node` with the
repository's config/fasthmr.yaml and remapped topics), driven from this process over loopback DDS.

It checks what a user sees: outputs per frame with the input's header and the library's values, frames
without a mask, /diagnostics, parameter validation, lifecycle transitions, a Hypothesis fuzz of malformed
images, masks and camera infos after which the node still answers correctly, and a clean failure at
configure for a bundle that cannot load.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPOSITORY = Path(__file__).resolve().parent.parent
PARAMS_FILE = REPOSITORY / "config" / "fasthmr.yaml"
STARTUP_TIMEOUT_S = 30.0
ANSWER_TIMEOUT_S = 15.0
MASK_TIMEOUT_S = 0.3
FRAME_ID = "test_camera_optical_frame"


def node_command(node_name: str, prefix: str, *parameters: str) -> list[str]:
    """The node started as a module (console scripts are not installed for this checkout)."""
    arguments = [sys.executable, "-m", "fasthmr_ros.node", "--ros-args", "--params-file", str(PARAMS_FILE),
                 "-r", f"__node:={node_name}"]
    for topic in ("image_raw", "camera_info", "person_instances"):
        arguments += ["-r", f"/camera/{topic}:=/{prefix}/{topic}"]
    for parameter in parameters:
        arguments += ["-p", parameter]
    return arguments


def node_environment(ros_env: dict) -> dict:
    # This checkout's packages first: the venv's editable install may point at another checkout.
    return dict(ros_env, PYTHONPATH=os.pathsep.join([str(REPOSITORY), ros_env.get("PYTHONPATH", "")]))


def stop(process: subprocess.Popen) -> str:
    """SIGINT (the node clears its markers and leaves DDS cleanly), kill if it hangs; returns its output."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    process.log.seek(0)
    return process.log.read()


def stamp_of(seconds: float):
    from builtin_interfaces.msg import Time

    return Time(sec=int(seconds), nanosec=int(round(seconds % 1 * 1e9)))


class Client:
    """This process's side: publishers for the node's inputs, and every output it receives."""

    def __init__(self, node_name: str, prefix: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from fasthmr_msgs.msg import SmplBodyArray
        from geometry_msgs.msg import PoseArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import CameraInfo, Image
        from visualization_msgs.msg import MarkerArray

        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(f"fasthmr_test_client_{uuid.uuid4().hex[:8]}", context=self.context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image = self.node.create_publisher(Image, f"/{prefix}/image_raw", reliable)
        self.mask = self.node.create_publisher(Image, f"/{prefix}/person_instances", reliable)
        self.camera_info = self.node.create_publisher(CameraInfo, f"/{prefix}/camera_info", reliable)
        self.lock = threading.Lock()
        self.received = {"bodies": [], "people": [], "markers": [], "diagnostics": []}
        for name, message_type, topic in (("bodies", SmplBodyArray, f"/{node_name}/bodies"),
                                          ("people", PoseArray, f"/{node_name}/people"),
                                          ("markers", MarkerArray, f"/{node_name}/markers"),
                                          ("diagnostics", DiagnosticArray, "/diagnostics")):
            self.node.create_subscription(message_type, topic, self._collector(name), reliable)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def _collector(self, name):
        def collect(message):
            with self.lock:
                self.received[name].append(message)
        return collect

    def messages(self, name: str) -> list:
        with self.lock:
            return list(self.received[name])

    def wait_for(self, name: str, predicate, timeout: float = ANSWER_TIMEOUT_S, process=None, skip: int = 0):
        """The first received `name` message (after the first `skip` ones) for which predicate(message) holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages(name)[skip:]:
                if predicate(message):
                    return message
            if process is not None and process.poll() is not None:
                pytest.fail(f"the node exited with {process.returncode}:\n{stop(process)}")
            time.sleep(0.01)
        output = stop(process) if process is not None else ""
        pytest.fail(f"no matching {name} message within {timeout} s; node output:\n{output}")

    def call(self, service_type, name: str, request):
        client = self.node.create_client(service_type, name)
        try:
            assert client.wait_for_service(timeout_sec=ANSWER_TIMEOUT_S), f"no service {name}"
            future = client.call_async(request)
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert future.done(), f"{name} did not answer"
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def frame_messages(image: np.ndarray, mask: np.ndarray | None, stamp: float, image_encoding: str = "rgb8"):
    from std_msgs.msg import Header

    from fasthmr_ros.image_conversion import array_to_image

    pixels = {"rgb8": image, "bgr8": image[:, :, ::-1], "mono8": image[:, :, 0]}[image_encoding]
    header = Header(stamp=stamp_of(stamp), frame_id=FRAME_ID)
    image_message = array_to_image(np.ascontiguousarray(pixels), image_encoding)
    image_message.header = header
    if mask is None:
        return image_message, None
    mask_message = array_to_image(mask.astype(np.uint16), "mono16")
    mask_message.header = header
    return image_message, mask_message


def camera_info_message(intrinsics: np.ndarray, width: int, height: int):
    from sensor_msgs.msg import CameraInfo

    message = CameraInfo(width=width, height=height)
    message.header.frame_id = FRAME_ID
    message.k = intrinsics.reshape(-1).tolist()
    return message


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Three rendered 320x240 frames of the synthetic world with 1, 2 and 3 people: (image, mask, K).

    320x240 keeps an image under Fast DDS's default shared-memory segment; larger ones go over UDP in
    fragments, and a lost fragment waits for the next heartbeat (seconds). All three carry the first
    frame's K, as from one camera: the node takes the latest CameraInfo, and DDS does not order messages
    across topics, so a K that changed with every frame could pair with the wrong image.
    """
    from fasthmr_model.body.lbs import BodyModel
    from fasthmr_model.body.synthetic import write_synthetic_body
    from fasthmr_ros.bench import synthetic_frames

    body = BodyModel.from_file(write_synthetic_body(tmp_path_factory.mktemp("body") / "body.npz"))
    rendered = [synthetic_frames(body, people, 1, seed=people, width=320, height=240)[0] for people in (1, 2, 3)]
    return [(image, mask, rendered[0][2]) for image, mask, _ in rendered]


@pytest.fixture(scope="module")
def library(untrained_tiny_bundle):
    from fasthmr_model.pipeline import FramePipeline

    return FramePipeline(untrained_tiny_bundle)


@contextlib.contextmanager
def started_node(environment: dict, log_folder: Path, priming_frame, *parameters: str):
    """(node process, node name, Client) of a node started with `parameters`: up, configured, active, matched
    with the client, and holding the CameraInfo of priming_frame (image, mask, K). Stops it at the end and
    checks that it exited with 0."""
    unique = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    node_name, prefix = f"fasthmr_{unique}", f"camera_{unique}"
    log = open(log_folder / "node.log", "w+")
    process = subprocess.Popen(node_command(node_name, prefix, *parameters), env=node_environment(environment),
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    process.log = log
    client = Client(node_name, prefix)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if (client.image.get_subscription_count() and client.mask.get_subscription_count()
                    and client.node.count_publishers(f"/{node_name}/bodies")
                    and client.node.count_publishers(f"/{node_name}/markers")):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the node did not come up within {STARTUP_TIMEOUT_S} s:\n{stop(process)}")
        # Seeing the match here does not mean the node's readers have discovered our writers (that can lag
        # seconds), and what is sent before is lost (volatile QoS): repeat the frames' CameraInfo until the
        # node's diagnostics report one.
        image, _, intrinsics = priming_frame
        priming = camera_info_message(intrinsics, image.shape[1], image.shape[0])
        while not camera_info_arrived(client, node_name):
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"the node did not receive a CameraInfo within {STARTUP_TIMEOUT_S} s:\n{stop(process)}")
            client.camera_info.publish(priming)
            time.sleep(0.1)
        yield process, node_name, client
    finally:
        client.close()
        output = stop(process)
        log.close()
        assert process.returncode == 0, output


@pytest.fixture(scope="module")
def running(ros_env_module, untrained_tiny_bundle, tmp_path_factory, frames):
    """(node process, node name, Client): the node with the untrained tiny bundle (no temporal decoder)."""
    with started_node(ros_env_module, tmp_path_factory.mktemp("node"), frames[0], f"bundle:={untrained_tiny_bundle.path}",
                      "unmatched_images:=process", f"sync.mask_timeout:={MASK_TIMEOUT_S}", "qos.reliability:=reliable",
                      "diagnostics_period:=0.5") as started:
        yield started


def camera_info_arrived(client, node_name: str) -> bool:
    """Whether a /diagnostics status of the node reports CameraInfo arrivals."""
    return any(status.name.startswith(f"{node_name}:") and float(value.value) > 0
               for message in client.messages("diagnostics") for status in message.status
               for value in status.values if value.key == "input_rate_hz.camera_info")


class Frames:
    """Publishes frames with increasing stamps and waits for the node's answer to each."""

    stamp = 100.0

    @classmethod
    def send(cls, client, process, image, mask, intrinsics, image_encoding="rgb8"):
        cls.stamp += 1.0
        stamp = cls.stamp
        seen = {name: len(client.messages(name)) for name in ("bodies", "people")}
        client.camera_info.publish(camera_info_message(intrinsics, image.shape[1], image.shape[0]))
        image_message, mask_message = frame_messages(image, mask, stamp, image_encoding)
        client.image.publish(image_message)
        if mask_message is not None:
            client.mask.publish(mask_message)
        bodies = client.wait_for("bodies", lambda m: m.header.stamp == stamp_of(stamp),
                                 process=process, skip=seen["bodies"])
        people = client.wait_for("people", lambda m: m.header.stamp == stamp_of(stamp),
                                 process=process, skip=seen["people"])
        return image_message.header, bodies, people


def assert_bodies_match(bodies, people, result):
    assert len(bodies.bodies) == len(people.poses) == len(result.ids)
    for index, body in enumerate(bodies.bodies):
        np.testing.assert_array_equal(body.betas, result.betas[index].astype(np.float32))
        np.testing.assert_array_equal(body.pose, result.axis_angle[index].reshape(-1).astype(np.float32))
        np.testing.assert_array_equal(body.joints, result.joints[index].reshape(-1).astype(np.float32))
        assert [body.translation.x, body.translation.y, body.translation.z] == result.translation[index].tolist()
        position = people.poses[index].position
        assert [position.x, position.y, position.z] == result.joints[index, 0].tolist()


def test_each_frame_is_answered_with_its_header_and_the_library_values(running, frames, library):
    process, node_name, client = running
    for image, mask, intrinsics in frames:
        header, bodies, people = Frames.send(client, process, image, mask, intrinsics)
        assert bodies.header == header and people.header == header
        assert bodies.body_model == "fasthmr-synthetic-body-v1"
        assert_bodies_match(bodies, people, library.process(image, mask, intrinsics))
        markers = client.wait_for("markers", lambda m: m.markers and m.markers[-1].header == header, process=process)
        skeletons = [marker for marker in markers.markers if marker.ns == "skeleton"]
        assert sorted(marker.id for marker in skeletons) == sorted(body.track_id for body in bodies.bodies)


@pytest.mark.parametrize("encoding", ["bgr8", "mono8"])
def test_other_encodings_give_what_the_library_gives_for_the_converted_image(running, frames, library, encoding):
    process, _, client = running
    image, mask, intrinsics = frames[1]
    _, bodies, people = Frames.send(client, process, image, mask, intrinsics, image_encoding=encoding)
    seen = image if encoding == "bgr8" else np.repeat(image[:, :, :1], 3, axis=2)
    assert_bodies_match(bodies, people, library.process(seen, mask, intrinsics))


def test_an_image_without_mask_is_processed_as_one_person_after_the_timeout(running, frames, library):
    process, _, client = running
    image, mask, intrinsics = frames[2]
    _, bodies, people = Frames.send(client, process, image, None, intrinsics)
    assert_bodies_match(bodies, people, library.process(image, np.ones_like(mask), intrinsics))


def pipeline_status(message, node_name):
    """The node's DiagnosticStatus in a DiagnosticArray and its values as a dict, or (None, {})."""
    for status in message.status:
        if status.name == f"{node_name}: pipeline":
            return status, {value.key: value.value for value in status.values}
    return None, {}


def test_diagnostics_report_provider_rates_latency_and_counts(running):
    process, node_name, client = running
    # The tests before this one sent five frames with a mask and one without.
    message = client.wait_for("diagnostics", lambda m: int(pipeline_status(m, node_name)[1].get(
        "count.frames_without_mask", "0")) >= 1, process=process)
    status, values = pipeline_status(message, node_name)
    assert status.hardware_id == values["device"] == "cpu" and values["provider"] == "CPUExecutionProvider"
    assert values["state"] == "active" and int(values["count.frames_processed"]) >= 6
    for key in ("input_rate_hz.image", "input_rate_hz.mask", "input_rate_hz.camera_info", "output_rate_hz",
                "count.dropped_busy", "count.bad_image", "count.time_jumped_back", "count.internal_error"):
        assert key in values
    # Latency per stage over the period in which frames were processed.
    with_latency = next(values for values in (pipeline_status(m, node_name)[1] for m in client.messages("diagnostics"))
                        if "latency_ms.encoder.median" in values)
    for stage in ("convert", "preprocess", "encoder", "body_model", "outputs", "publish"):
        assert float(with_latency[f"latency_ms.{stage}.median"]) >= 0.0


def test_parameters_are_validated_when_they_change(running):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    process, node_name, client = running

    def set_parameter(name, value):
        if isinstance(value, str):
            parameter_value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        else:
            parameter_value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        request = SetParameters.Request(parameters=[Parameter(name=name, value=parameter_value)])
        return client.call(SetParameters, f"/{node_name}/set_parameters", request).results[0]

    assert not set_parameter("sync.tolerance", 5.0).successful  # outside its range
    refused = set_parameter("mask_mode", "rainbow")
    assert not refused.successful and "instances" in refused.reason
    assert not set_parameter("image_topic", "/elsewhere").successful  # read-only
    assert set_parameter("markers.mesh_rate", 5.0).successful
    assert set_parameter("markers.mesh_rate", 2.0).successful


def test_time_going_backwards_resets_tracks_and_frames_still_come(running, frames, library):
    process, _, client = running
    image, mask, intrinsics = frames[0]
    _, before, _ = Frames.send(client, process, image, mask, intrinsics)
    Frames.stamp -= 50.0
    _, after, people = Frames.send(client, process, image, mask, intrinsics)
    assert_bodies_match(after, people, library.process(image, mask, intrinsics))
    assert {body.track_id for body in after.bodies}.isdisjoint(body.track_id for body in before.bodies)


def image_messages(draw, for_mask: bool):
    """A possibly malformed Image: any encoding name (supported or not), small or huge sizes, steps and
    buffers that may disagree with them, either byte order, and mostly-small instance ids."""
    from sensor_msgs.msg import Image

    from fasthmr_ros.image_conversion import ENCODINGS

    encoding = draw(st.sampled_from(list(ENCODINGS) + ["yuv422", "32FC1", "", "rgb16", "bayer_rggb8"]))
    if draw(st.booleans()) and draw(st.booleans()):
        width, height = draw(st.sampled_from([(100_000, 100_000), (5_000, 5_000)]))  # huge, with a tiny buffer
    else:
        width, height = draw(st.integers(0, 48)), draw(st.integers(0, 40))
    layout = ENCODINGS.get(encoding)
    row = width * (layout.channels * layout.channel_bytes if layout else 3)
    step = max(row + draw(st.integers(-3, 6)), 0)
    size = min(step * height, 1 << 16) + draw(st.sampled_from([0, 0, 0, -1, 1, -7]))
    if for_mask:
        values = draw(st.lists(st.integers(0, 3), min_size=1, max_size=8))
        data = bytes(values[index % len(values)] * 40 for index in range(max(size, 0)))
    else:
        data = draw(st.binary(min_size=max(size, 0), max_size=max(size, 0))) if size < 512 else bytes(max(size, 0))
    return Image(width=width, height=height, encoding=encoding, step=step, data=data,
                 is_bigendian=draw(st.integers(0, 1)))


@st.composite
def malformed_inputs(draw):
    from sensor_msgs.msg import CameraInfo

    image = image_messages(draw, for_mask=False)
    mask = image_messages(draw, for_mask=True) if draw(st.booleans()) else None
    k = draw(st.sampled_from(["good", "nan", "inf", "zero", "negative"]))
    focal = {"good": 200.0, "nan": float("nan"), "inf": float("inf"), "zero": 0.0, "negative": -5.0}[k]
    camera_info = CameraInfo(width=draw(st.sampled_from([0, image.width, image.width + 1])),
                             height=draw(st.sampled_from([0, image.height])))
    camera_info.k = [focal, 0.0, image.width / 2, 0.0, focal, image.height / 2, 0.0, 0.0, 1.0]
    stamp = draw(st.floats(0.0, 1e6, allow_nan=False))  # arbitrary order: time jumps back often
    return image, mask, camera_info, stamp


@pytest.mark.parametrize("fuzz_examples", [60])
def test_fuzzed_inputs_never_stop_the_node_and_it_answers_correctly_afterwards(running, frames, library,
                                                                               fuzz_examples):
    process, node_name, client = running

    # derandomize: the same examples every run, so that the counters asserted below (a bad image among them)
    # do not depend on luck.
    @settings(max_examples=fuzz_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(malformed_inputs())
    def send_malformed(inputs):
        image, mask, camera_info, stamp = inputs
        image.header.stamp = camera_info.header.stamp = stamp_of(stamp)
        client.camera_info.publish(camera_info)
        client.image.publish(image)
        if mask is not None:
            mask.header.stamp = stamp_of(stamp)
            client.mask.publish(mask)
        assert process.poll() is None

    send_malformed()
    image, mask, intrinsics = frames[2]
    # A good CameraInfo first (DDS does not order it against the images), and time for the last fuzzed
    # images to leave the pairing queue.
    client.camera_info.publish(camera_info_message(intrinsics, image.shape[1], image.shape[0]))
    time.sleep(2 * MASK_TIMEOUT_S)
    Frames.stamp = 2e6  # after every fuzzed stamp
    header, bodies, people = Frames.send(client, process, image, mask, intrinsics)
    assert bodies.header == header
    assert_bodies_match(bodies, people, library.process(image, mask, intrinsics))

    # Counters are totals since start: wait for a report issued after the fuzzed inputs were all counted (a
    # report during the fuzz may predate the first bad CameraInfo on a loaded machine).
    counted = ("count.bad_image", "count.bad_camera_info", "count.time_jumped_back")
    latest = client.wait_for("diagnostics", lambda m: all(int(pipeline_status(m, node_name)[1].get(key, "0")) > 0
                                                          for key in counted), process=process)
    assert pipeline_status(latest, node_name)[1]["count.internal_error"] == "0", stop(process)


def test_deactivate_clears_the_markers_and_stops_answering_until_activated(running, frames, library):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    process, node_name, client = running
    image, mask, intrinsics = frames[0]
    Frames.send(client, process, image, mask, intrinsics)

    def change(transition):
        request = ChangeState.Request()
        request.transition.id = transition
        assert client.call(ChangeState, f"/{node_name}/change_state", request).success

    markers_before = len(client.messages("markers"))
    change(Transition.TRANSITION_DEACTIVATE)
    state = client.call(GetState, f"/{node_name}/get_state", GetState.Request()).current_state
    assert state.label == "inactive"
    client.wait_for("markers", lambda m: [marker.action for marker in m.markers] == [3],  # DELETEALL
                    process=process, skip=markers_before)
    assert client.image.get_subscription_count() == 0  # inactive: not even subscribed

    change(Transition.TRANSITION_ACTIVATE)
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while not client.image.get_subscription_count() and time.monotonic() < deadline:
        time.sleep(0.02)
    _, bodies, people = Frames.send(client, process, image, mask, intrinsics)
    assert_bodies_match(bodies, people, library.process(image, mask, intrinsics))


def broken_bundle(kind: str, folder: Path, good) -> Path:
    """A bundle folder broken one way: not JSON, JSON nested too deep, wrong types, an empty encoder graph."""
    import json
    import shutil

    broken = folder / kind
    if kind == "empty encoder":
        shutil.copytree(good.path, broken)
        (broken / "encoder.onnx").write_bytes(b"")
        return broken
    broken.mkdir()
    manifest = {"not json": "{not json", "deep json": "[" * 100_000 + "]" * 100_000,
                "wrong types": json.dumps(dict(json.loads((good.path / "manifest.json").read_text()), encoder=5,
                                               files=["x"]))}[kind]
    (broken / "manifest.json").write_text(manifest)
    return broken


@pytest.mark.parametrize("kind", ["not json", "deep json", "wrong types", "empty encoder"])
def test_a_bundle_that_cannot_load_stops_the_node_at_configure_with_the_reason(ros_env, tmp_path,
                                                                               untrained_tiny_bundle, kind):
    broken = broken_bundle(kind, tmp_path, untrained_tiny_bundle)
    result = subprocess.run(node_command("fasthmr_broken", "camera_broken", f"bundle:={broken}"),
                            env=node_environment(ros_env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "cannot configure" in result.stderr and str(broken) in result.stderr, result.stderr
    assert "active" not in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_clears_the_markers_and_ends_the_node_cleanly(running, frames):
    process, _, client = running
    image, mask, intrinsics = frames[0]
    Frames.send(client, process, image, mask, intrinsics)
    shown = len(client.messages("markers"))
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=ANSWER_TIMEOUT_S) == 0
    client.wait_for("markers", lambda m: [marker.action for marker in m.markers] == [3], skip=shown)


def test_the_node_replay_and_the_library_stream_give_the_same_bodies(ros_env, tmp_path):
    """A rendered clip longer than the shipped decoder's window, with the shipped bundle (its temporal decoder
    included): the bodies the node publishes for each frame equal `StreamPipeline.process` on the same arrays
    and the bodies `fasthmr replay --out` writes for the same frames (track ids, pose sources, joints)."""
    from fasthmr_model.data.motion import synthetic_body_model
    from fasthmr_model.stream import POSE_TEMPORAL, StreamPipeline
    from fasthmr_ros.bags import read_topic
    from fasthmr_ros.recordings import synthetic_clip_frames, write_recording
    from fasthmr_ros.replay import OUTPUT_TOPICS, default_topics, replay_bag
    from fasthmr_ros.stamps import stamp_from_nanoseconds

    body = synthetic_body_model()
    clip = list(synthetic_clip_frames(11, 2, 11, body, start_ns=5 * 10**9, width=320, height=240))
    write_recording(tmp_path / "clip", clip, body, default_topics())
    replay_bag(tmp_path / "clip", out=tmp_path / "replayed", progress=False)
    replayed = dict(read_topic(tmp_path / "replayed", OUTPUT_TOPICS["bodies"][0]))
    stream = StreamPipeline()
    first = (clip[0].image, clip[0].mask, clip[0].intrinsics)
    with started_node(ros_env, tmp_path, first, "qos.reliability:=reliable") as (process, _, client):
        sources = []
        for frame in clip:
            expected = stream.process(frame.image, frame.mask, frame.intrinsics, frame.stamp_ns / 1e9)
            seen = len(client.messages("bodies"))
            stamp = stamp_from_nanoseconds(frame.stamp_ns)
            client.camera_info.publish(camera_info_message(frame.intrinsics, 320, 240))
            image_message, mask_message = frame_messages(frame.image, frame.mask, 0.0)
            image_message.header.stamp = mask_message.header.stamp = stamp
            client.image.publish(image_message)
            client.mask.publish(mask_message)
            published = client.wait_for("bodies", lambda m: m.header.stamp == stamp, process=process, skip=seen)
            for bodies in (published, replayed[frame.stamp_ns]):
                assert [body.track_id for body in bodies.bodies] == expected.track_ids.tolist()
                assert [body.pose_source for body in bodies.bodies] == expected.pose_source.tolist()
                np.testing.assert_allclose(np.reshape([body.joints for body in bodies.bodies], (-1, 24, 3)),
                                           expected.joints, atol=1e-5)
            sources += expected.pose_source.tolist()
    assert sources.count(POSE_TEMPORAL) >= 2 * (len(clip) - stream.decoder.session.window)


def lifecycle_change(client, node_name: str, transition: int) -> None:
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request()
    request.transition.id = transition
    assert client.call(ChangeState, f"/{node_name}/change_state", request).success


@contextlib.contextmanager
def unconfigured_node(environment: dict, log_folder: Path, bundle):
    """(process, node name, Client) of a node started with autostart off: unconfigured, with no timer at all."""
    unique = uuid.uuid4().hex[:6]
    node_name = f"fasthmr_lifecycle_{unique}"
    log = open(log_folder / "node.log", "w+")
    process = subprocess.Popen(node_command(node_name, f"camera_lifecycle_{unique}", "autostart:=false",
                                            f"bundle:={bundle.path}"),
                               env=node_environment(environment), stdout=log, stderr=subprocess.STDOUT, text=True)
    process.log = log
    client = Client(node_name, f"camera_lifecycle_{unique}")
    try:
        yield process, node_name, client
    finally:
        client.close()
        stop(process)
        log.close()


@pytest.mark.parametrize("state", ["unconfigured", "inactive", "active", "cleaned up"])
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_node_within_a_second_in_every_lifecycle_state(ros_env, tmp_path, untrained_tiny_bundle,
                                                                         state, signal_number):
    """With autostart off the node has no timer at all until configured: a signal must still stop it."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import GetState

    with unconfigured_node(ros_env, tmp_path, untrained_tiny_bundle) as (process, node_name, client):
        assert client.call(GetState, f"/{node_name}/get_state", GetState.Request()).current_state.label == "unconfigured"
        transitions = {"unconfigured": [], "inactive": [Transition.TRANSITION_CONFIGURE],
                       "active": [Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE],
                       "cleaned up": [Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_CLEANUP]}[state]
        for transition in transitions:
            lifecycle_change(client, node_name, transition)
        time.sleep(0.5)
        start = time.monotonic()
        process.send_signal(signal_number)
        code = process.wait(timeout=ANSWER_TIMEOUT_S)
        assert time.monotonic() - start < 1.0 and code == 0, stop(process)


def test_the_lifecycle_shutdown_ends_the_process_with_0(ros_env, tmp_path, untrained_tiny_bundle):
    from lifecycle_msgs.msg import Transition

    with unconfigured_node(ros_env, tmp_path, untrained_tiny_bundle) as (process, node_name, client):
        lifecycle_change(client, node_name, Transition.TRANSITION_CONFIGURE)
        lifecycle_change(client, node_name, Transition.TRANSITION_INACTIVE_SHUTDOWN)
        assert process.wait(timeout=5.0) == 0, stop(process)

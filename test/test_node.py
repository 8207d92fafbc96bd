"""The real node in its own process (started once for the module, as `python -m fasthmr_ros.node` with the
repository's config/fasthmr.yaml and remapped topics), driven from this process over loopback DDS.

It checks what a user sees: outputs per frame with the input's header and the library's values, the TF body
frames, /people and the REP-155 topics against the same frames' ~/bodies, frames without a mask, /diagnostics (in
every lifecycle state), parameter validation, lifecycle transitions, a Hypothesis fuzz of malformed
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
RESEND_S = 2.0
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
    from fasthmr_ros.realtime import stop_process

    stop_process(process)
    process.log.seek(0)
    return process.log.read()


def stamp_of(seconds: float):
    from builtin_interfaces.msg import Time

    return Time(sec=int(seconds), nanosec=int(round(seconds % 1 * 1e9)))


class Client:
    """This process's side: publishers for the node's inputs, and every output it receives."""

    def __init__(self, node_name: str, prefix: str, transport: str = "raw") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from fasthmr_msgs.msg import SmplBodyArray
        from geometry_msgs.msg import PoseArray
        from hri_msgs.msg import IdsList
        from people_msgs.msg import People
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from tf2_msgs.msg import TFMessage
        from visualization_msgs.msg import MarkerArray

        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(f"fasthmr_test_client_{uuid.uuid4().hex[:8]}", context=self.context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        # transport "compressed": image_transport's CompressedImage topics (the node's image_transport and
        # mask_transport parameters say the same).
        image_type, suffix = (Image, "") if transport == "raw" else (CompressedImage, "/compressed")
        self.image = self.node.create_publisher(image_type, f"/{prefix}/image_raw{suffix}", reliable)
        self.mask = self.node.create_publisher(image_type, f"/{prefix}/person_instances{suffix}", reliable)
        self.camera_info = self.node.create_publisher(CameraInfo, f"/{prefix}/camera_info", reliable)
        self.lock = threading.Lock()
        self.received = {"bodies": [], "people": [], "markers": [], "diagnostics": [], "tf": [], "people_msgs": [],
                         "tracked": []}
        for name, message_type, topic in (("bodies", SmplBodyArray, f"/{node_name}/bodies"),
                                          ("people", PoseArray, f"/{node_name}/people"),
                                          ("markers", MarkerArray, f"/{node_name}/markers"),
                                          ("diagnostics", DiagnosticArray, "/diagnostics"),
                                          ("tf", TFMessage, "/tf"),
                                          ("people_msgs", People, "/people"),
                                          ("tracked", IdsList, "/humans/bodies/tracked")):
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

    def subscribe(self, name: str, message_type, topic: str) -> None:
        """Collects `topic` under `name` from now on."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        with self.lock:
            self.received.setdefault(name, [])
        self.node.create_subscription(message_type, topic, self._collector(name),
                                      QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))

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

    def call(self, service_type, name: str, request, *, read_only: bool = False):
        """The service's answer. DDS may report the service before the server has matched this client's
        endpoints, and a request sent then is lost: a read-only request (GetState) is sent again every
        RESEND_S until it is answered; a state change is sent once."""
        client = self.node.create_client(service_type, name)
        try:
            assert client.wait_for_service(timeout_sec=ANSWER_TIMEOUT_S), f"no service {name}"
            future, sent = client.call_async(request), time.monotonic()
            deadline = sent + ANSWER_TIMEOUT_S
            while not future.done() and time.monotonic() < deadline:
                if read_only and time.monotonic() - sent > RESEND_S:
                    client.remove_pending_request(future)
                    future, sent = client.call_async(request), time.monotonic()
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
def started_node(environment: dict, log_folder: Path, priming_frame, *parameters: str, transport: str = "raw"):
    """(node process, node name, Client) of a node started with `parameters`: up, configured, active, matched
    with the client (publishing images and masks with `transport`), and holding the CameraInfo of
    priming_frame (image, mask, K). Stops it at the end and checks that it exited with 0."""
    unique = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    node_name, prefix = f"fasthmr_{unique}", f"camera_{unique}"
    log = open(log_folder / "node.log", "w+")
    process = subprocess.Popen(node_command(node_name, prefix, *parameters), env=node_environment(environment),
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    process.log = log
    client = Client(node_name, prefix, transport)
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
    def send(cls, client, process, image, mask, intrinsics, image_encoding="rgb8", step=1.0):
        """step: seconds after the previous frame (more than tracking.max_gap: every track starts over)."""
        cls.stamp += step
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
        assert all(marker.lifetime.sec == 0 and marker.lifetime.nanosec == 300_000_000 for marker in skeletons)


def axis_angle_matrix(axis_angle):
    """Rodrigues' formula (independent of the library): (3,) axis-angle -> (3, 3)."""
    angle = float(np.linalg.norm(axis_angle))
    if angle < 1e-12:
        return np.eye(3)
    x, y, z = np.asarray(axis_angle) / angle
    skew = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * skew + (1.0 - np.cos(angle)) * skew @ skew


def quaternion_axes(rotation):
    """The rotation matrix (its columns: the frame's axes) of a geometry_msgs/Quaternion."""
    x, y, z, w = rotation.x, rotation.y, rotation.z, rotation.w
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def test_tf_people_and_rep155_agree_with_the_bodies_of_the_same_frame(running, frames):
    """/tf, /people and /humans/bodies/tracked against ~/bodies of the same frame: one body_<id> per body, child
    of the image frame at the image's stamp, at the pelvis joint (1 mm: the bodies' joints are float32), x = the
    SMPL root's facing direction, z = its up; people named by track id at the pelvis; tracked ids = the track
    ids (as REP-155 ids, b<id>: a ROS name cannot start with a digit), each with its REP-155 frame body_b<id>;
    the ~/people poses have the same orientation as the frames."""
    process, _, client = running
    for image, mask, intrinsics in frames:
        header, bodies, people = Frames.send(client, process, image, mask, intrinsics)
        stamp = header.stamp
        tf = client.wait_for("tf", lambda m: m.transforms and m.transforms[0].header.stamp == stamp, process=process)
        people_msgs = client.wait_for("people_msgs", lambda m: m.header.stamp == stamp, process=process)
        tracked = client.wait_for("tracked", lambda m: m.header.stamp == stamp, process=process)
        frames_of_bodies = [t for t in tf.transforms if t.header.frame_id == FRAME_ID]
        assert [t.child_frame_id for t in frames_of_bodies] == [f"body_{b.track_id}" for b in bodies.bodies]
        assert [(t.header.frame_id, t.child_frame_id) for t in tf.transforms if t.header.frame_id != FRAME_ID] == \
            [(f"body_{b.track_id}", f"body_b{b.track_id}") for b in bodies.bodies]
        assert [person.name for person in people_msgs.people] == [str(b.track_id) for b in bodies.bodies]
        assert tracked.ids == [f"b{b.track_id}" for b in bodies.bodies] and tracked.header == header
        assert people_msgs.header == header
        for body, transform, person, pose in zip(bodies.bodies, frames_of_bodies, people_msgs.people, people.poses):
            assert transform.header.frame_id == FRAME_ID and transform.header.stamp == stamp
            pelvis = np.array(body.joints[:3], np.float64)
            origin = transform.transform.translation
            np.testing.assert_allclose([origin.x, origin.y, origin.z], pelvis, atol=1e-3)
            np.testing.assert_allclose([person.position.x, person.position.y, person.position.z], pelvis, atol=1e-3)
            root = axis_angle_matrix(np.array(body.pose[:3], np.float64))  # SMPL: x left, y up, z facing
            axes = quaternion_axes(transform.transform.rotation)
            np.testing.assert_allclose(axes[:, 0], root[:, 2], atol=1e-4)
            np.testing.assert_allclose(axes[:, 2], root[:, 1], atol=1e-4)
            np.testing.assert_allclose(quaternion_axes(pose.orientation), axes, atol=1e-9)


def test_per_body_topics_come_with_a_track_and_go_when_it_ends(running, frames):
    from hri_msgs.msg import NormalizedRegionOfInterest2D, Skeleton2D

    process, _, client = running
    image, mask, intrinsics = frames[1]
    _, bodies, _ = Frames.send(client, process, image, mask, intrinsics)
    track_ids = [body.track_id for body in bodies.bodies]
    for track in track_ids:
        client.subscribe(f"roi_{track}", NormalizedRegionOfInterest2D, f"/humans/bodies/b{track}/roi")
        client.subscribe(f"skeleton_{track}", Skeleton2D, f"/humans/bodies/b{track}/skeleton2d")
    # Once the subscriptions have matched, the next frame (the same tracks) reaches them.
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while not all(client.node.count_publishers(f"/humans/bodies/b{track}/roi") for track in track_ids):
        assert time.monotonic() < deadline, "no per-body publishers"
        time.sleep(0.02)
    header, bodies, _ = Frames.send(client, process, image, mask, intrinsics, step=0.1)
    assert [body.track_id for body in bodies.bodies] == track_ids
    for body in bodies.bodies:
        roi = client.wait_for(f"roi_{body.track_id}", lambda m: m.header == header, process=process)
        skeleton = client.wait_for(f"skeleton_{body.track_id}", lambda m: m.header == header, process=process)
        np.testing.assert_allclose([roi.xmin, roi.ymin, roi.xmax, roi.ymax],
                                   [body.box.x_offset / 320, body.box.y_offset / 240,
                                    (body.box.x_offset + body.box.width) / 320,
                                    (body.box.y_offset + body.box.height) / 240], atol=1e-6)
        assert roi.c == body.confidence and len(skeleton.skeleton) == 18
    # Nobody in view for longer than tracking.max_gap: the tracks end, and their topics with them.
    Frames.stamp += 1.0
    _, bodies, _ = Frames.send(client, process, image, np.zeros_like(mask), intrinsics)
    assert not bodies.bodies
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while any(client.node.count_publishers(f"/humans/bodies/b{track}/{topic}") for track in track_ids
              for topic in ("roi", "skeleton2d")):
        assert time.monotonic() < deadline, "the ended tracks' topics are still published"
        time.sleep(0.02)


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
    assert float(values["newest_output_age_s"]) >= 0.0  # the frames' stamps are in the past of the node's clock
    assert (values["expected_input_rate_hz.min"], values["expected_input_rate_hz.max"]) == ("5", "100")
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
    state = client.call(GetState, f"/{node_name}/get_state", GetState.Request(), read_only=True).current_state
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
def unconfigured_node(environment: dict, log_folder: Path, bundle_path: Path):
    """(process, node name, Client) of a node started with autostart off: unconfigured (its only timer is the
    diagnostics')."""
    unique = uuid.uuid4().hex[:6]
    node_name = f"fasthmr_lifecycle_{unique}"
    log = open(log_folder / "node.log", "w+")
    process = subprocess.Popen(node_command(node_name, f"camera_lifecycle_{unique}", "autostart:=false",
                                            f"bundle:={bundle_path}"),
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
    """With autostart off the node waits unconfigured, with nothing to wake its executor but the diagnostics
    timer: a signal must still stop it."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import GetState

    with unconfigured_node(ros_env, tmp_path, untrained_tiny_bundle.path) as (process, node_name, client):
        current = client.call(GetState, f"/{node_name}/get_state", GetState.Request(), read_only=True).current_state
        assert current.label == "unconfigured"
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

    with unconfigured_node(ros_env, tmp_path, untrained_tiny_bundle.path) as (process, node_name, client):
        lifecycle_change(client, node_name, Transition.TRANSITION_CONFIGURE)
        lifecycle_change(client, node_name, Transition.TRANSITION_INACTIVE_SHUTDOWN)
        assert process.wait(timeout=5.0) == 0, stop(process)


def test_diagnostics_say_the_state_before_configure_and_why_configure_failed(ros_env, tmp_path, untrained_tiny_bundle):
    from diagnostic_msgs.msg import DiagnosticStatus
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    broken = broken_bundle("not json", tmp_path, untrained_tiny_bundle)
    with unconfigured_node(ros_env, tmp_path, broken) as (process, node_name, client):
        waiting = client.wait_for("diagnostics", lambda m: pipeline_status(m, node_name)[0] is not None, process=process)
        status, values = pipeline_status(waiting, node_name)
        assert status.level == DiagnosticStatus.WARN and status.message.startswith("unconfigured")
        assert status.hardware_id == values["device"] == "none" and values["state"] == "unconfigured"
        request = ChangeState.Request()
        request.transition.id = Transition.TRANSITION_CONFIGURE
        assert not client.call(ChangeState, f"/{node_name}/change_state", request).success
        failed = client.wait_for("diagnostics", lambda m: getattr(pipeline_status(m, node_name)[0], "level", None)
                                 == DiagnosticStatus.ERROR, process=process)
        message = pipeline_status(failed, node_name)[0].message
        assert message.startswith("unconfigured: configure failed") and str(broken) in message

"""fasthmr_msgs as built into the venv: the generated classes, their field sizes, and a real
SmplBodyArray round trip between two processes over loopback DDS.

Run as a program (`python test_msgs.py publish TOPIC SEED`), this file is the publisher that the
round-trip test starts in a subprocess, so that both sides build the message from the same code.
"""
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from fasthmr_msgs.msg import SmplBody, SmplBodyArray

BODY_COUNT = 2
JOINT_COUNT = 24
BETA_COUNT = 10
ROUND_TRIP_TIMEOUT_S = 15.0
PUBLISH_PERIOD_S = 0.1


def sample_values(seed):
    """Deterministic plain-Python contents of a SmplBodyArray (floats already rounded to float32).

    Returns a dict: stamp (sec, nanosec), frame_id, body_model, and bodies, a list of dicts with
    track_id, confidence, box (x_offset, y_offset, height, width), betas (10,), pose (72,),
    translation (3,), joints (72,) as float32 arrays, pose_source, velocity (3,) and velocity_valid.
    """
    rng = np.random.default_rng(seed)
    bodies = []
    for index in range(BODY_COUNT):
        bodies.append({
            "track_id": int(rng.integers(0, 2**32)),
            "confidence": float(np.float32(rng.uniform(0.0, 1.0))),
            "box": tuple(int(v) for v in rng.integers(0, 640, size=4)),
            "betas": rng.normal(size=BETA_COUNT).astype(np.float32),
            "pose": rng.uniform(-np.pi, np.pi, size=JOINT_COUNT * 3).astype(np.float32),
            # Vector3 holds float64: keep full precision to prove nothing narrows it on the way.
            "translation": rng.normal(size=3) + np.array([0.0, 0.0, 4.0]),
            "joints": rng.normal(size=JOINT_COUNT * 3).astype(np.float32),
            "pose_source": SmplBody.POSE_TEMPORAL if index % 2 else SmplBody.POSE_PER_FRAME,
            "velocity": rng.normal(size=3),
            "velocity_valid": bool(index % 2),
        })
    return {
        "stamp": (int(rng.integers(0, 2**31)), int(rng.integers(0, 10**9))),
        "frame_id": "camera_color_optical_frame",
        "body_model": "synthetic body",
        "bodies": bodies,
    }


def body_array_from_values(values):
    """The SmplBodyArray holding sample_values(...) contents."""
    message = SmplBodyArray()
    message.header.stamp.sec, message.header.stamp.nanosec = values["stamp"]
    message.header.frame_id = values["frame_id"]
    message.body_model = values["body_model"]
    for body_values in values["bodies"]:
        body = SmplBody()
        body.track_id = body_values["track_id"]
        body.confidence = body_values["confidence"]
        (body.box.x_offset, body.box.y_offset, body.box.height, body.box.width) = body_values["box"]
        body.betas = body_values["betas"]
        body.pose = body_values["pose"]
        body.translation.x, body.translation.y, body.translation.z = body_values["translation"].tolist()
        body.joints = body_values["joints"]
        body.pose_source = body_values["pose_source"]
        body.velocity.x, body.velocity.y, body.velocity.z = body_values["velocity"].tolist()
        body.velocity_valid = body_values["velocity_valid"]
        message.bodies.append(body)
    return message


def assert_body_array_matches(message, values):
    """Every field of a received SmplBodyArray equals the values it was built from, bit for bit."""
    assert (message.header.stamp.sec, message.header.stamp.nanosec) == values["stamp"]
    assert message.header.frame_id == values["frame_id"]
    assert message.body_model == values["body_model"]
    assert len(message.bodies) == len(values["bodies"])
    for body, body_values in zip(message.bodies, values["bodies"]):
        assert body.track_id == body_values["track_id"]
        assert body.confidence == body_values["confidence"]
        assert (body.box.x_offset, body.box.y_offset, body.box.height, body.box.width) == body_values["box"]
        for field in ("betas", "pose", "joints"):
            received = getattr(body, field)
            assert received.dtype == np.float32
            np.testing.assert_array_equal(received, body_values[field])
        translation = [body.translation.x, body.translation.y, body.translation.z]
        assert translation == body_values["translation"].tolist()
        assert body.pose_source == body_values["pose_source"]
        assert [body.velocity.x, body.velocity.y, body.velocity.z] == body_values["velocity"].tolist()
        assert body.velocity_valid == body_values["velocity_valid"]


def test_generated_classes_are_installed_where_ament_finds_them():
    # In the venv (make setup) the prefix is the venv; in a colcon workspace it is install/fasthmr_msgs.
    import fasthmr_msgs.msg
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    prefix = os.path.realpath(get_package_prefix("fasthmr_msgs"))
    assert os.path.realpath(fasthmr_msgs.msg.__file__).startswith(prefix + os.sep)
    share = get_package_share_directory("fasthmr_msgs")
    assert os.path.isfile(os.path.join(share, "msg", "SmplBody.msg"))
    assert os.path.isfile(os.path.join(share, "msg", "SmplBodyArray.msg"))


def test_fields_have_the_documented_types_and_sizes():
    assert SmplBody.get_fields_and_field_types() == {
        "track_id": "uint32",
        "confidence": "float",
        "box": "sensor_msgs/RegionOfInterest",
        "betas": "float[10]",
        "pose": "float[72]",
        "translation": "geometry_msgs/Vector3",
        "joints": "float[72]",
        "pose_source": "uint8",
        "velocity": "geometry_msgs/Vector3",
        "velocity_valid": "boolean",
    }
    assert SmplBodyArray.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "body_model": "string",
        "bodies": "sequence<fasthmr_msgs/SmplBody>",
    }
    assert (SmplBody.POSE_PER_FRAME, SmplBody.POSE_TEMPORAL) == (0, 1)
    body = SmplBody()
    for field, size in (("betas", BETA_COUNT), ("pose", JOINT_COUNT * 3), ("joints", JOINT_COUNT * 3)):
        array = getattr(body, field)
        assert array.dtype == np.float32 and array.shape == (size,)
        assert not array.any()


@pytest.mark.parametrize("field, size", [("betas", BETA_COUNT), ("pose", JOINT_COUNT * 3),
                                         ("joints", JOINT_COUNT * 3)])
@pytest.mark.parametrize("size_change", [-1, +1])
@pytest.mark.parametrize("as_numpy", [False, True])
def test_wrong_length_array_raises_when_fields_are_checked(field, size, size_change, as_numpy):
    # Kilted checks field values only with check_fields=True or ROS_PYTHON_CHECK_FIELDS=1; by
    # default a wrong length is accepted and serialised padded or cut to the fixed size, so the
    # code that fills these messages must check lengths itself.
    body = SmplBody(check_fields=True)
    wrong = np.zeros(size + size_change, dtype=np.float32)
    with pytest.raises(AssertionError, match=field):
        setattr(body, field, wrong if as_numpy else wrong.tolist())
    setattr(body, field, np.ones(size, dtype=np.float32))
    assert getattr(body, field).shape == (size,)


def test_serialisation_round_trip_keeps_every_value():
    from rclpy.serialization import deserialize_message, serialize_message

    values = sample_values(seed=1)
    data = serialize_message(body_array_from_values(values))
    assert_body_array_matches(deserialize_message(data, SmplBodyArray), values)


def publish_until_interrupted(topic, seed):
    """Publishes sample_values(seed) on topic every PUBLISH_PERIOD_S until SIGINT, or until the
    round-trip timeout has passed (so that a test that died cannot leave it running)."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    try:
        # Without rclpy's signal handler SIGINT raises KeyboardInterrupt here, and leaving the with
        # block shuts DDS down cleanly (rclpy's handler would invalidate the context mid-publish).
        with rclpy.init(signal_handler_options=SignalHandlerOptions.NO):
            node = rclpy.create_node("fasthmr_msgs_test_publisher")
            publisher = node.create_publisher(SmplBodyArray, topic, 10)
            message = body_array_from_values(sample_values(seed))
            deadline = time.monotonic() + ROUND_TRIP_TIMEOUT_S + 5.0
            while time.monotonic() < deadline:
                publisher.publish(message)
                time.sleep(PUBLISH_PERIOD_S)
    except KeyboardInterrupt:
        pass  # the test is done with us


def stop_publisher(publisher):
    """Stops the publisher subprocess with SIGINT, so that Fast DDS removes its shared-memory
    segments, and kills it only if it does not exit. Returns its output."""
    if publisher.poll() is None:
        publisher.send_signal(signal.SIGINT)
        try:
            return publisher.communicate(timeout=5.0)[0]
        except subprocess.TimeoutExpired:
            publisher.kill()
    return publisher.communicate()[0]


def test_body_array_crosses_processes_over_loopback_dds(ros_env):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    seed = 7
    topic = f"/fasthmr_msgs_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    publisher = subprocess.Popen([sys.executable, __file__, "publish", topic, str(seed)], env=ros_env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    try:
        rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node("fasthmr_msgs_test_subscriber", context=context)
        received = []
        node.create_subscription(SmplBodyArray, topic, received.append, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + ROUND_TRIP_TIMEOUT_S
        while not received and time.monotonic() < deadline and publisher.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        if not received:
            output = stop_publisher(publisher)
            pytest.fail(f"no SmplBodyArray arrived on {topic} within {ROUND_TRIP_TIMEOUT_S} s; "
                        f"publisher exit code {publisher.returncode}, output:\n{output}")
        assert_body_array_matches(received[0], sample_values(seed))
    finally:
        stop_publisher(publisher)
        context.try_shutdown()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "publish":
        sys.exit(f"usage: {sys.argv[0]} publish TOPIC SEED")
    publish_until_interrupted(sys.argv[2], int(sys.argv[3]))

"""`fasthmr replay BAG --realtime`: the bag published at its recorded rate to the real node over DDS.

The node runs as its own process (`python -m fasthmr_ros.node` with config/fasthmr.yaml), exactly as on a
robot, on loopback DDS (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) in a ROS domain of its own. Domains are
few (0-101), so another ROS process may share it: the node gets a name and input topics unique to this
replay (`/fasthmr_replay_<pid>/...`), and only its own outputs and diagnostics are read. This process publishes the bag's images, masks and camera infos when their recorded time comes
and listens to the node's outputs. Latency is the wall time from publishing an image to receiving its
bodies (transport both ways included); drops are the images that got no bodies, and the node's own counters
(from its last /diagnostics) say why. Accuracy is scored as the in-process replay does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from fasthmr_model.errors import InputError
from fasthmr_ros.bags import BagReader, BagTopics, BagWriter
from fasthmr_ros.diagnostics import DROP_COUNTERS
from fasthmr_ros.inputs import COMPRESSED_SUFFIX
from fasthmr_ros.parameters import default_params_file
from fasthmr_ros.replay import OUTPUT_TOPICS, ReplayReport, default_topics, latency_percentiles, score
from fasthmr_ros.stamps import stamp_nanoseconds

NODE_NAME = "fasthmr"
START_TIMEOUT_S = 60.0
SETTLE_S = 1.5  # after the last image, how long to wait for outputs
DISCOVERY_SETTLE_S = 0.3
DIAGNOSTICS_PERIOD_S = 0.25  # the node's counters come from its last /diagnostics after SETTLE_S


def _arrived(statuses: list, topic: str) -> bool:
    """Whether any of the node's diagnostic statuses so far reports arrivals on an input topic."""
    key = f"input_rate_hz.{topic}"
    return any(float(value.value) > 0 for status in list(statuses) for value in status.values if value.key == key)


def stop_process(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGINT a node process (it clears its markers and leaves DDS cleanly) and wait; kill it if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _domain_id() -> int:
    return 1 + (os.getpid() * 7 + int(time.time())) % 101


def replay_realtime(bag: str | Path, bundle: str | Path | None = None, out: str | Path | None = None,
                    topics: BagTopics | None = None, progress: bool = True) -> ReplayReport:
    """See the module docstring."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from fasthmr_msgs.msg import SmplBodyArray
    from geometry_msgs.msg import PoseArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from tqdm import tqdm

    from fasthmr_model.body.lbs import BodyModel
    from fasthmr_model.bundle import load_bundle

    topics = topics or default_topics()
    body_model = BodyModel.from_file(load_bundle(bundle).body_model_path)
    environment = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(_domain_id()))
    environment["AMENT_PREFIX_PATH"] = os.pathsep.join(filter(None, [sys.prefix, environment.get("AMENT_PREFIX_PATH")]))
    os.environ.update({name: environment[name] for name in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    node_name = f"fasthmr_replay_{os.getpid()}"
    reader = BagReader(bag, topics)
    # Compressed topics go to the node as image_transport's: its base topic plus `/compressed`.
    bases = {role: getattr(reader.topics, role).removesuffix(COMPRESSED_SUFFIX)
             if reader.transports.get(role) == "compressed" else getattr(reader.topics, role)
             for role in ("image", "camera_info", "mask")}
    inputs = {role: f"/{node_name}{bases[role]}" for role in bases}
    outputs_of_node = {name: f"/{node_name}/{name}" for name in OUTPUT_TOPICS}
    command = [sys.executable, "-m", "fasthmr_ros.node", "--ros-args", "-r", f"__node:={node_name}",
               "--params-file", str(default_params_file()),
               "-p", f"image_topic:={inputs['image']}",
               "-p", f"camera_info_topic:={inputs['camera_info']}", "-p", f"mask_topic:={inputs['mask']}",
               "-p", f"image_transport:={reader.transports.get('image', 'raw')}",
               "-p", f"mask_transport:={reader.transports.get('mask', 'raw')}",
               "-p", "qos.reliability:=reliable", "-p", "qos.depth:=10",
               "-p", f"diagnostics_period:={DIAGNOSTICS_PERIOD_S}"]
    if bundle is not None:
        command += ["-p", f"bundle:={Path(bundle).resolve()}"]
    node_process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    sent_at: dict[int, float] = {}
    received: dict[int, tuple[float, SmplBodyArray]] = {}
    outputs: list[tuple[str, int, object]] = []
    diagnostics: list[DiagnosticArray] = []
    truth_by_stamp: dict[int, list] = {}
    lock = threading.Lock()
    try:
        node = rclpy.create_node("fasthmr_replay", context=context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        publishers = {"camera_info": node.create_publisher(CameraInfo, inputs["camera_info"], qos)}
        for role in ("image", "mask"):
            compressed = reader.transports.get(role) == "compressed"
            publishers[role] = node.create_publisher(CompressedImage if compressed else Image,
                                                     inputs[role] + (COMPRESSED_SUFFIX if compressed else ""), qos)

        def on_bodies(message):
            with lock:
                received[stamp_nanoseconds(message.header)] = (time.monotonic(), message)
                outputs.append((OUTPUT_TOPICS["bodies"][0], stamp_nanoseconds(message.header), message))

        node.create_subscription(SmplBodyArray, outputs_of_node["bodies"], on_bodies, qos)
        node.create_subscription(PoseArray, outputs_of_node["people"],
                                 lambda m: outputs.append((OUTPUT_TOPICS["people"][0], stamp_nanoseconds(m.header), m)), qos)
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda message: diagnostics.extend(
            status for status in message.status if status.name.startswith(f"{node_name}:")), 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        # Every input matched to the node's subscriptions and our output subscription to its publisher, so that
        # no early message is lost to discovery.
        needed = [publishers[role] for role in ("image", "camera_info") + (("mask",) if reader.has_masks else ())]
        while (any(publisher.get_subscription_count() == 0 for publisher in needed)
               or node.count_publishers(outputs_of_node["bodies"]) == 0):
            if node_process.poll() is not None:
                raise InputError(f"the node stopped before it became active:\n{node_process.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise InputError(f"the node did not subscribe to {inputs['image']} within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        # Our side may see the match long before the node's reader has discovered our writer (seen here: seconds),
        # and a volatile reader never gets what was sent before. So the bag's first CameraInfo goes out until
        # the node's diagnostics show it arrived; then discovery is complete both ways for every input.
        with BagReader(bag, topics) as first_pass:
            first_info = next((item.message for item in first_pass.messages() if item.role == "camera_info"), None)
        while first_info is not None and not _arrived(diagnostics, "camera_info"):
            if time.monotonic() > deadline:
                raise InputError(f"the node did not receive {inputs['camera_info']} within {START_TIMEOUT_S:.0f} s")
            publishers["camera_info"].publish(first_info)
            time.sleep(0.1)
        time.sleep(DISCOVERY_SETTLE_S)
        images = 0
        start_wall = first_ns = None
        bar = tqdm(total=reader.message_count, disable=not progress, desc="replay --realtime", unit="msg")
        for item in reader.messages():
            bar.update(1)
            if item.role == "ground_truth":
                truth_by_stamp[stamp_nanoseconds(item.message.header)] = list(item.message.bodies)
                continue
            if first_ns is None:
                start_wall, first_ns = time.monotonic(), item.time_ns
            delay = start_wall + (item.time_ns - first_ns) / 1e9 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if item.role == "image":
                images += 1
                sent_at[stamp_nanoseconds(item.message.header)] = time.monotonic()
            publishers[item.role].publish(item.message)
        bar.close()
        time.sleep(SETTLE_S)
        with lock:
            settled = dict(received)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
    finally:
        if rclpy.ok(context=context):
            rclpy.shutdown(context=context)
        stop_process(node_process)
        reader.close()

    latencies, persons, predicted = [], 0, {}
    for frame, stamp in enumerate(sorted(settled)):
        arrived, message = settled[stamp]
        persons += len(message.bodies)
        predicted[stamp] = (frame, list(message.bodies))
        if stamp in sent_at:
            latencies.append((arrived - sent_at[stamp]) * 1000.0)
    accuracy = score(body_model, predicted, truth_by_stamp)
    if out is not None:
        with BagWriter(out) as writer:
            for topic, stamp, message in sorted(outputs, key=lambda entry: entry[1]):
                msgtype = next(kind for name, kind in OUTPUT_TOPICS.values() if name == topic)
                writer.write(topic, msgtype, stamp, message)
    node_counters = {}
    if diagnostics:
        node_counters.update({value.key[len("count."):]: int(value.value) for value in diagnostics[-1].values
                              if value.key.startswith("count.")})
    drops = {name: node_counters[name] for name in DROP_COUNTERS if node_counters.get(name)}
    unanswered = images - len(settled) - sum(drops.values())
    if unanswered > 0:  # images the node never reported (lost in transport, or after its last diagnostics)
        drops["unanswered"] = unanswered
    return ReplayReport(
        bag=str(bag), out=str(out) if out is not None else None, bundle=str(bundle) if bundle else "the default bundle",
        provider="the node process, image published to bodies received", frames=len(settled), persons=persons,
        images=images, drops=drops, time_jumped_back=node_counters.get("time_jumped_back", 0),
        latency_ms=latency_percentiles(latencies), stages_ms={}, metrics=accuracy.metrics(),
        ground_truth={"persons": accuracy.truths, "missed": accuracy.missed} if reader.has_ground_truth else None,
        has_masks=reader.has_masks, undecodable=reader.undecodable, error=reader.error,
        node_exit_code=node_process.returncode)

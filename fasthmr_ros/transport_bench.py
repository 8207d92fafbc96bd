"""`python -m fasthmr_ros.transport_bench`: the share of camera images that reach the node, per DDS set-up.

A camera process publishes rgb8 images at a fixed rate, best effort with sensor-data QoS as camera drivers
do, to the real node (`python -m fasthmr_ros.node`, its own process, counting every image its subscription
receives: `received.image` in /diagnostics). Each image size runs under three set-ups, side by side:

  default   Fast DDS's defaults in both processes (FASTDDS_BUILTIN_TRANSPORTS=DEFAULT, which the node
            takes as the user's own setting and leaves alone)
  shipped   the shipped profile (config/fastdds_large_images.xml) in both processes: the node applies it
            by itself, the camera gets what the launch file gives every process it starts
  node only the shipped profile in the node, Fast DDS's defaults in the camera (a driver started apart)

Discovery stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a ROS domain of its own); DDS
variables of the calling environment are left out so that the three set-ups are what they say.

    python -m fasthmr_ros.transport_bench [--frames 300] [--rate 30] [--sizes 640x480 1280x720] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from fasthmr_ros.parameters import default_params_file
from fasthmr_ros.realtime import stop_process
from fasthmr_ros.transport import FAST_DDS_VARIABLE_PREFIXES, transport_environment

NODE_NAME = "fasthmr_transport_bench"
IMAGE_TOPIC = "camera/image_raw"  # the node's default input, relative: both processes are in the root namespace
DIAGNOSTICS_PERIOD_S = 0.25
START_TIMEOUT_S = 90.0
SETTLE_S = 1.5  # after the last image, before the node's count is read
SETUPS = {  # name -> (camera environment, node environment): "shipped" or "default"
    "default": ("default", "default"),
    "shipped": ("shipped", "shipped"),
    "node only": ("default", "shipped"),
}
DEFAULT_DDS = {"FASTDDS_BUILTIN_TRANSPORTS": "DEFAULT"}


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 640x480") from None
    if not (0 < width <= 8192 and 0 < height <= 8192):
        raise argparse.ArgumentTypeError(f"{text}: sides from 1 to 8192 pixels")
    return width, height


def environment(kind: str, domain_id: int, role: str) -> dict[str, str]:
    """The environment of a bench process (role "node" or "camera"): this one's without DDS variables, on
    loopback in the bench's domain, and for kind "default" Fast DDS's defaults; for kind "shipped" nothing
    more for the node (it applies the profile itself) and, for the camera, the profile as the launch file sets
    it for every process it starts."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(FAST_DDS_VARIABLE_PREFIXES) and name != "RMW_IMPLEMENTATION"}
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(domain_id))
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(filter(None, [sys.prefix, env.get("AMENT_PREFIX_PATH")]))
    if kind == "default":
        env.update(DEFAULT_DDS)
    elif role == "camera":
        env.update(transport_environment({}))
    return env


# ------------------------------------------------------------------------------------------------------
# The camera process


def run_camera(sizes: list[tuple[int, int]], frames: int, rate: float) -> None:
    """Publishes `frames` images of each size at `rate` and prints one JSON line per size:
    {"size": "WxH", "sent": n, "delivered": n} (delivered: the node's received.image count)."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("fasthmr_transport_bench_camera")
    publisher = node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
    reports: list[tuple[float, int]] = []  # (receipt time, the node's received.image)
    lock = threading.Lock()

    def on_diagnostics(message: DiagnosticArray) -> None:
        for status in message.status:
            if status.name == f"{NODE_NAME}: pipeline":
                values = {value.key: value.value for value in status.values}
                with lock:
                    reports.append((time.monotonic(), int(values["received.image"])))

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    def count_after(moment: float, timeout: float) -> int:
        """The node's count in its first report received after `moment`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with lock:
                later = [count for received_at, count in reports if received_at > moment]
            if later:
                return later[0]
            time.sleep(0.02)
        raise SystemExit(f"transport_bench: no /diagnostics from {NODE_NAME} within {timeout} s")

    deadline = time.monotonic() + START_TIMEOUT_S
    while not publisher.get_subscription_count():
        if time.monotonic() > deadline:
            raise SystemExit(f"transport_bench: the node did not subscribe to {IMAGE_TOPIC} within {START_TIMEOUT_S} s")
        time.sleep(0.05)
    stamp = 0
    for width, height in sizes:
        message = Image(width=width, height=height, encoding="rgb8", step=3 * width,
                        data=os.urandom(3 * width * height))
        message.header.frame_id = "camera_optical_frame"

        def publish() -> None:
            nonlocal stamp
            stamp += 1
            message.header.stamp.sec, message.header.stamp.nanosec = stamp // 30, stamp % 30 * 33_333_333
            publisher.publish(message)

        # Until the node has seen one image of this size: its reader may discover ours after the match here.
        start = count_after(time.monotonic(), START_TIMEOUT_S)
        while count_after(time.monotonic(), START_TIMEOUT_S) == start:
            publish()
            time.sleep(0.1)
        time.sleep(2 * DIAGNOSTICS_PERIOD_S)
        before = count_after(time.monotonic(), START_TIMEOUT_S)
        began = time.monotonic()
        for index in range(frames):
            publish()
            time.sleep(max(0.0, began + (index + 1) / rate - time.monotonic()))
        time.sleep(SETTLE_S)
        after = count_after(time.monotonic(), START_TIMEOUT_S)
        print(json.dumps({"size": f"{width}x{height}", "sent": frames, "delivered": after - before}), flush=True)
    executor.shutdown()
    spinner.join()  # a thread still inside the executor when the process ends aborts it
    node.destroy_node()
    rclpy.try_shutdown()


# ------------------------------------------------------------------------------------------------------
# The orchestration


def start_node(env: dict[str, str], log) -> subprocess.Popen:
    command = [sys.executable, "-m", "fasthmr_ros.node", "--ros-args", "--params-file", str(default_params_file()),
               "-r", f"__node:={NODE_NAME}", "-p", f"diagnostics_period:={DIAGNOSTICS_PERIOD_S}"]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def run_camera_process(env: dict[str, str], sizes, frames: int, rate: float) -> dict[str, dict]:
    command = [sys.executable, "-m", "fasthmr_ros.transport_bench", "--camera", "--frames", str(frames),
               "--rate", str(rate), "--sizes", *(f"{width}x{height}" for width, height in sizes)]
    timeout = START_TIMEOUT_S + len(sizes) * (frames / rate + START_TIMEOUT_S)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise SystemExit(f"transport_bench: the camera process failed:\n{result.stderr}")
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {row["size"]: row for row in rows}


def measure(sizes, frames: int, rate: float, domain_id: int) -> dict[str, dict[str, dict]]:
    """setup name -> size -> {"sent", "delivered"}; one node per node environment, one camera per set-up."""
    results: dict[str, dict[str, dict]] = {}
    for node_kind in ("default", "shipped"):
        with tempfile.TemporaryFile("w+") as log:
            node = start_node(environment(node_kind, domain_id, "node"), log)
            try:
                for setup, (camera_kind, kind_of_node) in SETUPS.items():
                    if kind_of_node == node_kind:
                        results[setup] = run_camera_process(environment(camera_kind, domain_id, "camera"), sizes,
                                                            frames, rate)
            except (SystemExit, subprocess.TimeoutExpired):
                stop_process(node, timeout_s=15.0)
                log.seek(0)
                print(f"transport_bench: node output:\n{log.read()}", file=sys.stderr)
                raise
            stop_process(node, timeout_s=15.0)
    return {setup: results[setup] for setup in SETUPS}


def format_table(results: dict[str, dict[str, dict]], sizes, frames: int, rate: float) -> str:
    header = ["image (rgb8)"] + [f"{setup}" for setup in results]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for width, height in sizes:
        size = f"{width}x{height}"
        cells = [size]
        for by_size in results.values():
            row = by_size[size]
            cells.append(f"{100.0 * row['delivered'] / row['sent']:.1f} % ({row['delivered']}/{row['sent']})")
        lines.append("| " + " | ".join(cells) + " |")
    return (f"images delivered to the node, {frames} per size at {rate:g} Hz, best effort, from a separate "
            "process\n" + "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fasthmr_ros.transport_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="images per size (default 300: 10 s at 30 Hz)")
    parser.add_argument("--rate", type=float, default=30.0, help="images per second (default 30)")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(640, 480), (1280, 720)],
                        help="WIDTHxHEIGHT sizes (default 640x480 1280x720)")
    parser.add_argument("--json", action="store_true", help="print {setup: {size: {sent, delivered}}} as JSON")
    parser.add_argument("--camera", action="store_true", help=argparse.SUPPRESS)  # the camera process itself
    args = parser.parse_args(argv)
    if args.frames < 1 or not 0 < args.rate <= 1000:
        parser.error("--frames must be positive and --rate in (0, 1000]")
    if args.camera:
        run_camera(args.sizes, args.frames, args.rate)
        return 0
    domain_id = 1 + (os.getpid() * 7 + int(time.time())) % 101
    results = measure(args.sizes, args.frames, args.rate, domain_id)
    print(json.dumps(results, indent=2) if args.json else format_table(results, args.sizes, args.frames, args.rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())

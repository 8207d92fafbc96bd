"""The FastHMR ROS 2 node: camera image + person segmentation -> SMPL bodies, people poses, RViz markers, TF body
frames, people for navigation (people_msgs) and the REP-155 body topics.

A lifecycle node (rclpy.lifecycle works with the PyPI wheels): configure loads the bundle, warms it up and
creates the publishers; activate subscribes and starts the inference thread; deactivate unsubscribes and
clears the markers and ends the REP-155 body topics; cleanup releases the model. /diagnostics reports in every
state, from construction on. Lifecycle is not hollow here: a manager can hold a
loaded, warmed model inactive (no subscriptions, no CPU) and activate it in milliseconds, and a bundle
that fails to load stops the node at configure with nothing half-started. With `autostart` (the
default) the node goes through configure and activate by itself, as the launch file does.

Threads: the executor's thread receives messages and applies the input rules (fasthmr_ros.inputs: pairing
by stamp, CameraInfo, unmatched images, time jumps) and queues frames; one inference thread takes the newest
frame (older waiting ones are dropped and counted), runs the library's stream and publishes; the main thread
waits for a signal or the lifecycle shutdown, and stops the node in any state.

    fasthmr_node --ros-args --params-file config/fasthmr.yaml -p bundle:=/path/to/bundle
    python -m fasthmr_ros.node --ros-args ...     (the same, without the console script)
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback
from collections import deque
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from fasthmr_msgs.msg import SmplBodyArray
from geometry_msgs.msg import PoseArray
from hri_msgs.msg import IdsList
from people_msgs.msg import People
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from fasthmr_model.errors import FastHMRError
from fasthmr_model.stream import StreamPipeline
from fasthmr_ros.body_topics import BodyTopicPublishers
from fasthmr_ros.diagnostics import NodeStatistics
from fasthmr_ros.frame_processor import FrameProcessor, FrameRejected
from fasthmr_ros.inputs import COMPRESSED_SUFFIX, Frame, InputRules
from fasthmr_ros.parameters import (CONFIG_CLASSES, INPUT_OPTIONS, PARAMETERS, SPECS, build_config, check_value,
                                    load_defaults)
from fasthmr_ros.rclpy_compat import add_parameter_callbacks
from fasthmr_ros.stamps import stamp_seconds
from fasthmr_ros.standard_outputs import TRACKED_BODIES_TOPIC
from fasthmr_ros.transport import apply_shipped_transport

NODE_NAME = "fasthmr"
# Outputs are reliable (RViz and most consumers subscribe reliably; a best-effort publisher would not
# reach them) and keep only the newest few: a late consumer wants the present, not the past.
OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
DIAGNOSTICS_QOS = 10
# tf2_ros's TransformBroadcaster QoS: reliable, the newest 100.
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# How often images waiting for their mask are checked against sync.mask_timeout.
EXPIRE_PERIOD_S = 0.02
LOG_THROTTLE_S = 5.0
CLEAR_MARKERS_TIMEOUT_S = 1.0
EXECUTOR_STOP_TIMEOUT_S = 1.0


class LatestFrames:
    """A bounded queue between the executor and the inference thread: put() never blocks; when full, the
    oldest item leaves (and put returns True, so that the caller counts the drop)."""

    def __init__(self, size: int) -> None:
        self._items: deque = deque(maxlen=size)
        self._ready = threading.Condition()
        self._closed = False

    def resize(self, size: int) -> int:
        """New capacity; returns how many (oldest) items were dropped to fit."""
        with self._ready:
            dropped = max(len(self._items) - size, 0)
            self._items = deque(list(self._items)[dropped:], maxlen=size)
            return dropped

    def put(self, item) -> bool:
        with self._ready:
            dropped = len(self._items) == self._items.maxlen
            self._items.append(item)
            self._ready.notify()
            return dropped

    def get(self):
        """The oldest item, waiting for one; None once closed."""
        with self._ready:
            while not self._items and not self._closed:
                self._ready.wait()
            return None if self._closed else self._items.popleft()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._items.clear()
            self._ready.notify_all()


def _descriptor(spec) -> ParameterDescriptor:
    description = spec.description + (f" ({' | '.join(spec.choices)})" if spec.choices else "")
    descriptor = ParameterDescriptor(description=description, read_only=spec.read_only)
    if spec.kind is int and spec.low is not None:
        descriptor.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
    elif spec.kind is float and spec.low is not None:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                              step=0.0)]
    return descriptor


class FastHMRNode(LifecycleNode):
    """See the module docstring. `params_file`: where the defaults come from (config/fasthmr.yaml)."""

    def __init__(self, params_file: str | Path | None = None, stopped: threading.Event | None = None,
                 **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._stopped = stopped  # set when the lifecycle shutdown finalizes the node: its process then ends
        defaults = load_defaults(params_file)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, defaults[spec.name], _descriptor(spec))
        self._values = {name: self.get_parameter(name).value for name in SPECS}
        for name, value in self._values.items():
            check_value(name, value)
        self._configs = {namespace: build_config(namespace, self._values) for namespace in CONFIG_CLASSES}
        add_parameter_callbacks(self, self._check_parameters, self._apply_parameters)

        self.statistics = NodeStatistics()
        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._stream: StreamPipeline | None = None
        self._processor: FrameProcessor | None = None
        self._publishers_by_name: dict = {}
        self._body_topics: BodyTopicPublishers | None = None
        self._configure_problem = ""  # why the last configure failed, for /diagnostics
        self._last_output_header = None  # of the newest frame published
        self._subscriptions_list: list = []
        self._camera_info_topic = ""
        self._expire_timer = None
        self._inputs: InputRules | None = None
        self._frames: LatestFrames | None = None
        self._worker: threading.Thread | None = None
        self._state_label = "unconfigured"
        # /diagnostics in every lifecycle state: a manager sees an unconfigured or failed node too.
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self._diagnostics_timer = self.create_timer(self._values["diagnostics_period"], self._publish_diagnostics,
                                                    clock=self._steady_clock)

    @property
    def state_label(self) -> str:
        """unconfigured, inactive, active or finalized."""
        return self._state_label

    # ----------------------------------------------------------------------------------------------
    # Parameters

    def _check_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        proposed = dict(self._values)
        try:
            for parameter in parameters:
                if parameter.name in SPECS:
                    check_value(parameter.name, parameter.value)
                    proposed[parameter.name] = parameter.value
            for namespace in CONFIG_CLASSES:
                build_config(namespace, proposed)
        except FastHMRError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        for parameter in parameters:
            if parameter.name in SPECS:
                self._values[parameter.name] = parameter.value
        self._configs = {namespace: build_config(namespace, self._values) for namespace in CONFIG_CLASSES}
        if self._stream is not None:
            self._stream.preprocess = self._configs["preprocess"]
            self._stream.stream_config = self._configs["tracking"]
            self._processor.markers.config = self._configs["markers"]
            self._processor.options = self._configs[INPUT_OPTIONS]
            self._processor.standard_outputs = self._configs["outputs"]
        if self._inputs is not None:
            self._inputs.pairer.config = self._configs["sync"]
            self._inputs.options = self._configs[INPUT_OPTIONS]
        if self._frames is not None:
            self.statistics.count("dropped_busy", self._frames.resize(self._values["inference_queue_size"]))

    # ----------------------------------------------------------------------------------------------
    # Lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        values = self._values
        start = time.perf_counter()
        try:
            stream = StreamPipeline(values["bundle"] or None, runtime=self._configs["runtime"],
                                    preprocess=self._configs["preprocess"], stream=self._configs["tracking"],
                                    body_model_path=values["body_model"] or None)
            processor = FrameProcessor(stream, self._configs["markers"], self._configs[INPUT_OPTIONS],
                                       self._configs["outputs"])
            stream.warm_up()
        except Exception as error:  # noqa: BLE001 - whatever a bundle breaks, configure fails with the reason logged
            reason = str(error) if isinstance(error, FastHMRError) else f"{type(error).__name__}: {error}"
            self.get_logger().error(f"cannot configure: {reason}")
            self._configure_problem = f"configure failed: {reason}"
            return TransitionCallbackReturn.FAILURE
        self._stream, self._processor, self._configure_problem = stream, processor, ""
        provenance = stream.bundle.provenance.get("source", "unknown")
        decoder = "temporal decoder" if stream.decoder is not None else "no temporal decoder"
        self.get_logger().info(
            f"bundle {stream.bundle.path} ({provenance}, {decoder}), body model {processor.body_model_name!r}; "
            f"ONNX Runtime: {stream.runtime_summary()}; loaded and warmed up in {time.perf_counter() - start:.2f} s")
        self._publishers_by_name = {
            "bodies": self.create_lifecycle_publisher(SmplBodyArray, "~/bodies", OUTPUT_QOS),
            "markers": self.create_lifecycle_publisher(MarkerArray, "~/markers", OUTPUT_QOS),
            "people": self.create_lifecycle_publisher(PoseArray, "~/people", OUTPUT_QOS),
            "tf": self.create_lifecycle_publisher(TFMessage, "/tf", TF_QOS),
            "people_msgs": self.create_lifecycle_publisher(People, "/people", OUTPUT_QOS),
        }
        if values["outputs.rep155"]:
            self._publishers_by_name["tracked"] = self.create_lifecycle_publisher(IdsList, TRACKED_BODIES_TOPIC,
                                                                                  OUTPUT_QOS)
            self._body_topics = BodyTopicPublishers(self, OUTPUT_QOS)
        self._state_label = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        values = self._values
        qos = QoSProfile(depth=values["qos.depth"], history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.BEST_EFFORT if values["qos.reliability"] == "best_effort"
                         else ReliabilityPolicy.RELIABLE, durability=qos_profile_sensor_data.durability)
        camera_info = self._inputs.camera_info if self._inputs is not None else None  # still in force
        self._inputs = InputRules(self._configs["sync"], self._configs[INPUT_OPTIONS], self.statistics.count)
        self._inputs.camera_info = camera_info
        self._frames = LatestFrames(values["inference_queue_size"])
        self._subscriptions_list = [
            self.create_subscription(*self._transport("image"), self._on_image, qos),
            self.create_subscription(*self._transport("mask"), self._on_mask, qos),
            self.create_subscription(CameraInfo, values["camera_info_topic"], self._on_camera_info, qos),
        ]
        # Runs only while images wait for their mask (_dispatch starts and stops it): an idle node costs nothing.
        self._expire_timer = self.create_timer(EXPIRE_PERIOD_S, self._on_expire, clock=self._steady_clock)
        self._expire_timer.cancel()
        self._worker = threading.Thread(target=self._inference_loop, args=(self._frames,), name="fasthmr-inference",
                                        daemon=True)
        self._worker.start()
        topics = [subscription.topic_name for subscription in self._subscriptions_list]
        self._camera_info_topic = topics[2]  # remapped and resolved, for the log
        self.get_logger().info(f"active: image {topics[0]}, segmentation {topics[1]}, camera info {topics[2]}")
        self._state_label = "active"
        return super().on_activate(state)

    def _transport(self, role: str) -> tuple[type, str]:
        """The message type and topic of the image or mask subscription: `<role>_topic` for raw, image_transport's
        `<resolved topic>/compressed` for compressed (remapping the base topic remaps both, as image_transport
        does)."""
        topic = self._values[f"{role}_topic"]
        if self._values[f"{role}_transport"] == "raw":
            return Image, topic
        return CompressedImage, self.resolve_topic_name(topic) + COMPRESSED_SUFFIX

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._state_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        self._state_label = "finalized"
        if self._stopped is not None:
            self._stopped.set()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        self._state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def _stop_inputs(self) -> None:
        """Unsubscribes, stops the inference thread and clears the markers (they would go stale)."""
        for subscription in self._subscriptions_list:
            self.destroy_subscription(subscription)
        self._subscriptions_list = []
        if self._expire_timer is not None:
            self.destroy_timer(self._expire_timer)
            self._expire_timer = None
        if self._worker is not None:
            self._frames.close()
            self._worker.join()
            self._worker = None
        self._frames = None
        if self._body_topics is not None and self._body_topics.track_ids:
            # The bodies are no longer tracked: their topics go, and the tracked list says so.
            self._body_topics.close()
            self._publishers_by_name["tracked"].publish(IdsList(header=self._last_output_header))
        if self._processor is not None:
            clear = self._processor.clear_markers()
            if clear is not None:
                markers = self._publishers_by_name["markers"]
                markers.publish(clear)
                # On shutdown the process ends next: give the DELETEALL a moment to reach RViz.
                markers.wait_for_all_acked(Duration(seconds=CLEAR_MARKERS_TIMEOUT_S))

    def _release(self) -> None:
        if self._body_topics is not None:
            self._body_topics.close()
            self._body_topics = None
        for publisher in self._publishers_by_name.values():
            self.destroy_lifecycle_publisher(publisher)
        self._publishers_by_name = {}
        self._processor = self._stream = None

    # ----------------------------------------------------------------------------------------------
    # Executor thread: inputs and pairing

    def _on_camera_info(self, message: CameraInfo) -> None:
        self.statistics.arrived("camera_info")
        problem = self._inputs.on_camera_info(message)
        if problem is not None:
            self.get_logger().warning(f"skipping frames: {problem}", throttle_duration_sec=LOG_THROTTLE_S)

    def _on_image(self, message: Image | CompressedImage) -> None:
        self.statistics.arrived("image")
        frames = self._inputs.on_image(message, time.monotonic())
        if self._inputs.time_jumped_back is not None:
            before, after = self._inputs.time_jumped_back
            self.get_logger().warning(f"time jumped back from {before:.3f} s to {after:.3f} s; resetting pairing and "
                                      "tracks", throttle_duration_sec=LOG_THROTTLE_S)
        self._dispatch(frames)

    def _on_mask(self, message: Image | CompressedImage) -> None:
        self.statistics.arrived("mask")
        self._dispatch(self._inputs.on_mask(message, time.monotonic()))

    def _on_expire(self) -> None:
        if self._inputs is not None:
            self._dispatch(self._inputs.expire(time.monotonic()))

    def _dispatch(self, frames: list[Frame]) -> None:
        """Queues frames for the inference thread (a full queue drops its oldest), and runs the mask-timeout
        timer while images wait for their mask."""
        for frame in frames:
            if self._frames.put(frame):
                self.statistics.count("dropped_busy")
        if self._inputs.images_waiting == self._expire_timer.is_canceled():
            if self._inputs.images_waiting:
                self._expire_timer.reset()
            else:
                self._expire_timer.cancel()

    # ----------------------------------------------------------------------------------------------
    # Inference thread

    def _inference_loop(self, frames: LatestFrames) -> None:
        while (frame := frames.get()) is not None:
            try:
                self._process(frame)
            except Exception:  # noqa: BLE001 - a bug must not stop the node; it is logged and counted
                self.statistics.count("internal_error")
                self.get_logger().error(f"internal error, frame skipped:\n{traceback.format_exc()}",
                                        throttle_duration_sec=LOG_THROTTLE_S)

    def _process(self, frame: Frame) -> None:
        publishers = self._publishers_by_name
        try:
            outputs = self._processor.process(frame, publishers["markers"].get_subscription_count() > 0)
        except FrameRejected as error:
            self.statistics.count(error.reason)
            if error.reason != "bad_camera_info":  # a bad CameraInfo was logged when it arrived
                where = f" on {self._camera_info_topic}" if error.reason == "no_camera_info" else ""
                self.get_logger().warning(f"frame skipped: {error}{where}", throttle_duration_sec=LOG_THROTTLE_S)
            return
        start = time.perf_counter()
        publishers["bodies"].publish(outputs.bodies)
        publishers["people"].publish(outputs.people)
        if outputs.markers is not None:
            publishers["markers"].publish(outputs.markers)
        if outputs.tf is not None:
            publishers["tf"].publish(outputs.tf)
        publishers["people_msgs"].publish(outputs.people_msgs)
        if outputs.rep155 is not None and self._body_topics is not None:
            publishers["tracked"].publish(outputs.rep155.tracked)
            self._body_topics.publish(outputs.rep155, outputs.result.ended_tracks)
        self._last_output_header = outputs.bodies.header
        self.statistics.output_published(stamp_seconds(outputs.bodies.header))
        timings = dict(outputs.timings_ms, publish=(time.perf_counter() - start) * 1000.0)
        if outputs.result.persons_over_cap:
            self.statistics.count("persons_over_cap", outputs.result.persons_over_cap)
            self.get_logger().warning(f"{outputs.result.persons_over_cap} persons over preprocess.max_persons "
                                      "skipped (the largest were kept)", throttle_duration_sec=LOG_THROTTLE_S)
        if frame.mask is None:
            self.statistics.count("frames_without_mask")
        if not outputs.bodies.bodies:
            self.statistics.count("frames_without_person")
            self.get_logger().debug("no person in the segmentation", throttle_duration_sec=LOG_THROTTLE_S)
        self.statistics.frame_done(timings)

    # ----------------------------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        stream = self._stream
        provider, device = (stream.provider, stream.device) if stream is not None else ("none", "none")
        # The namespace tells two cameras' nodes apart ("cam1/fasthmr"); in the root namespace it is the name.
        name = self.get_fully_qualified_name().lstrip("/")
        self._diagnostics_publisher.publish(self.statistics.report(
            self.get_clock().now().to_msg(), name, device, provider, self._state_label,
            self._configs["diagnostics"], self._configure_problem))


def _interrupt(signal_number, frame) -> None:
    raise KeyboardInterrupt


def main(args: list[str] | None = None) -> int:
    """`fasthmr_node [--ros-args ...]`: runs the node until Ctrl-C, SIGTERM or the lifecycle shutdown; 1 if it
    cannot start, else 0.

    The executor spins in a thread of its own and the main thread waits on an Event, so that a signal is
    handled at once in every lifecycle state (a main thread blocked in the executor's wait, with no timer to
    wake it, never ran the Python signal handler).
    """
    # rclpy's own handler would shut the context down before the markers are cleared; SIGTERM (from a
    # process manager) ends the node like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    # Fast DDS reads its profile when rclpy.init creates the participant: the environment must hold it before.
    transport = apply_shipped_transport()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        stopped = threading.Event()
        try:
            node = FastHMRNode(stopped=stopped)
        except (FastHMRError, rclpy.exceptions.ParameterException) as error:
            print(f"fasthmr_node: {error}", file=sys.stderr)
            return 1
        node.get_logger().info(transport)
        executor = SingleThreadedExecutor()
        executor.add_node(node)

        def spin() -> None:
            try:
                executor.spin()
            except ExternalShutdownException:
                pass
            finally:
                stopped.set()

        spinner = threading.Thread(target=spin, name="fasthmr-executor", daemon=True)
        try:
            if node.get_parameter("autostart").value:
                if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                    return 1
                node.trigger_activate()
            spinner.start()
            stopped.wait()
        except KeyboardInterrupt:
            pass
        finally:
            executor.shutdown(timeout_sec=EXECUTOR_STOP_TIMEOUT_S)
            if spinner.ident is not None:
                spinner.join(EXECUTOR_STOP_TIMEOUT_S)  # a thread left in the executor's wait aborts the process
            if node.state_label != "finalized":
                node.trigger_shutdown()
            node.destroy_node()
    finally:
        rclpy.try_shutdown()  # not `with rclpy.init()`: Jazzy's rclpy has no such context manager
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The node's counters and rates, and the diagnostic_msgs/DiagnosticArray that reports them.

diagnostic_updater is not installable here; the node publishes /diagnostics itself, in every lifecycle state:
one DiagnosticStatus whose level and message say the state (and, when active, the health), hardware_id the
device the model runs on (the GPU's name or `cpu`), the provider in use, input and output rates against the
expected input-rate window (diagnostic_updater's FrequencyStatus), messages received per input since start,
the age of the newest output's stamp (its TimeStampStatus), per-stage latency (median and max over the period)
and every drop and rejection counted since start. When images and masks arrive at clearly different rates the status says which
is slower: images lost on the way (large images over DDS) otherwise show up only as unpaired masks.
Thread-safe: the executor counts arrivals and drops, the inference thread counts frames.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from fasthmr_model.errors import InputError

# Counters that mean a frame (or a mask) was lost or refused: any of them in a period turns the status to WARN.
DROP_COUNTERS = (
    "dropped_busy",  # replaced in the inference queue by a newer frame while the model was busy
    "dropped_without_mask",  # no mask within the tolerance, and unmatched_images is drop
    "masks_unpaired",  # masks that no image paired with
    "dropped_time_jump",  # images waiting for their mask when time jumped back
    "no_camera_info",  # frames before any CameraInfo arrived
    "bad_camera_info",  # CameraInfo messages with NaN/inf or non-positive focal lengths
    "camera_info_size_mismatch",  # frames whose CameraInfo is for another image size
    "bad_image",  # unsupported encoding, step/size/buffer mismatch, empty or huge image
    "bad_mask",
    "mask_size_mismatch",
    "bad_frame",  # rejected by the model library
    "persons_over_cap",  # persons beyond preprocess.max_persons in a frame (the largest were kept)
    "internal_error",  # a bug: logged with its traceback
)
# Counted, but not a loss.
EVENT_COUNTERS = ("frames_processed", "frames_without_mask", "frames_without_person", "time_jumped_back")
INPUTS = ("image", "mask", "camera_info")
# Images and masks come in pairs: one input arriving below this share of the other's rate, and at least
# RATE_GAP_MIN_MESSAGES fewer in a period, is reported as slower.
RATE_GAP_RATIO = 0.9
RATE_GAP_MIN_MESSAGES = 2


def rate_gap(image_arrivals: int, mask_arrivals: int, elapsed_s: float) -> str | None:
    """A plain sentence when images arrive clearly slower than masks or the reverse over a period, else None
    (also when either input got nothing: no masks is a valid mask-less set-up, no images is reported apart)."""
    if not image_arrivals or not mask_arrivals:
        return None
    slower, faster = sorted([("images", image_arrivals), ("masks", mask_arrivals)], key=lambda item: item[1])
    if slower[1] >= RATE_GAP_RATIO * faster[1] or faster[1] - slower[1] < RATE_GAP_MIN_MESSAGES:
        return None
    cause = ("images are lost before the node (large images over DDS: see the transport setting) or the "
             "segmentation runs faster" if slower[0] == "images" else "the segmentation is slower than the camera "
             "or its masks are lost")
    return (f"{slower[0]} arrive slower than {faster[0]} ({slower[1] / elapsed_s:.1f}/s against "
            f"{faster[1] / elapsed_s:.1f}/s): {cause}")
# Lifecycle states without a running model, and their level.
IDLE_LEVELS = {"unconfigured": DiagnosticStatus.WARN, "inactive": DiagnosticStatus.WARN,
               "finalized": DiagnosticStatus.WARN}


@dataclass(frozen=True)
class DiagnosticsConfig:
    """The ROS parameters `diagnostics.*`: the image rate (Hz) the node expects while active; outside
    [min_rate, max_rate] the status warns (0 and 0: no window)."""

    min_rate: float = 5.0
    max_rate: float = 100.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_rate <= self.max_rate:
            raise InputError(f"the expected image rate needs 0 <= min_rate <= max_rate, got {self.min_rate} and "
                             f"{self.max_rate} Hz")


class NodeStatistics:
    """Counters since start, and arrival rates and stage latencies over the current period."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals = Counter({name: 0 for name in DROP_COUNTERS + EVENT_COUNTERS})
        self._received = Counter({topic: 0 for topic in INPUTS})
        self._newest_output: float | None = None
        self._reset_period(time.monotonic())

    def _reset_period(self, now: float) -> None:
        self._period_start = now
        self._period_counts = Counter()
        self._arrivals = Counter()
        self._stage_ms: defaultdict[str, list[float]] = defaultdict(list)

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._totals[name] += amount
            self._period_counts[name] += amount

    def arrived(self, topic: str) -> None:
        with self._lock:
            self._arrivals[topic] += 1
            self._received[topic] += 1

    def frame_done(self, timings_ms: dict[str, float]) -> None:
        with self._lock:
            self._totals["frames_processed"] += 1
            self._period_counts["frames_processed"] += 1
            for stage, milliseconds in timings_ms.items():
                self._stage_ms[stage].append(milliseconds)

    def total(self, name: str) -> int:
        with self._lock:
            return self._totals[name]

    def output_published(self, stamp_seconds: float) -> None:
        """The stamp (s, the node's clock) of an output just published."""
        with self._lock:
            self._newest_output = max(stamp_seconds, self._newest_output or stamp_seconds)

    def report(self, stamp: Time, node_name: str, device: str, provider: str, lifecycle_state: str,
               config: DiagnosticsConfig, problem: str = "") -> DiagnosticArray:
        """The DiagnosticArray for the period since the last report (stamp: now on the node's clock); starts a
        new period. device: the hardware the model runs on (hardware_id); problem: why the node is not running
        (a failed configure), turning the status to ERROR."""
        now = time.monotonic()
        with self._lock:
            elapsed = max(now - self._period_start, 1e-9)
            totals, period, received = dict(self._totals), self._period_counts, dict(self._received)
            arrivals, stages, newest_output = self._arrivals, self._stage_ms, self._newest_output
            self._reset_period(now)
        image_rate = arrivals["image"] / elapsed
        output_age = stamp.sec + stamp.nanosec * 1e-9 - newest_output if newest_output is not None else None
        values = [("state", lifecycle_state), ("device", device), ("provider", provider)]
        values += [(f"input_rate_hz.{topic}", f"{arrivals[topic] / elapsed:.2f}") for topic in INPUTS]
        values += [(f"received.{topic}", str(received[topic])) for topic in INPUTS]
        values += [("expected_input_rate_hz.min", f"{config.min_rate:g}"),
                   ("expected_input_rate_hz.max", f"{config.max_rate:g}")]
        values.append(("output_rate_hz", f"{period['frames_processed'] / elapsed:.2f}"))
        values.append(("newest_output_age_s", f"{output_age:.3f}" if output_age is not None else "none"))
        for stage, samples in stages.items():
            values.append((f"latency_ms.{stage}.median", f"{np.median(samples):.2f}"))
            values.append((f"latency_ms.{stage}.max", f"{np.max(samples):.2f}"))
        values += [(f"count.{name}", str(value)) for name, value in sorted(totals.items())]

        losses = {name: period[name] for name in DROP_COUNTERS if period[name]}
        dropped = "dropped: " + ", ".join(f"{k} {v}" for k, v in losses.items())
        gap = rate_gap(arrivals["image"], arrivals["mask"], elapsed)
        window = config.max_rate > 0.0
        if problem:
            level, summary = DiagnosticStatus.ERROR, f"{lifecycle_state}: {problem}"
        elif lifecycle_state in IDLE_LEVELS:
            level, summary = IDLE_LEVELS[lifecycle_state], f"{lifecycle_state}: not processing images"
        elif period["internal_error"]:
            level, summary = DiagnosticStatus.ERROR, "internal errors (see the log)"
        elif not arrivals["image"]:
            level, summary = DiagnosticStatus.WARN, f"no image on the input topic for {elapsed:.1f} s"
        elif gap:
            level, summary = DiagnosticStatus.WARN, gap + (f"; {dropped}" if losses else "")
        elif window and not config.min_rate <= image_rate <= config.max_rate:
            level, summary = DiagnosticStatus.WARN, (f"image rate {image_rate:.1f} Hz outside the expected "
                                                     f"{config.min_rate:g}-{config.max_rate:g} Hz")
        elif losses:
            level, summary = DiagnosticStatus.WARN, dropped
        else:
            level, summary = DiagnosticStatus.OK, f"{lifecycle_state}, {period['frames_processed'] / elapsed:.1f} frames/s"
        status = DiagnosticStatus(level=level, name=f"{node_name}: pipeline", message=summary, hardware_id=device,
                                  values=[KeyValue(key=key, value=value) for key, value in values])
        message = DiagnosticArray(status=[status])
        message.header.stamp = stamp
        return message

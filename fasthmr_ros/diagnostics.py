"""The node's counters and rates, and the diagnostic_msgs/DiagnosticArray that reports them.

diagnostic_updater is not installable here; the node publishes /diagnostics itself: one DiagnosticStatus
with the provider in use (hardware_id: the GPU's name or `cpu`), input and output rates, per-stage latency
(median and max over the period) and
every drop and rejection counted since start. Thread-safe: the executor counts arrivals and drops, the
inference thread counts frames.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from builtin_interfaces.msg import Time

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


class NodeStatistics:
    """Counters since start, and arrival rates and stage latencies over the current period."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals = Counter({name: 0 for name in DROP_COUNTERS + EVENT_COUNTERS})
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

    def frame_done(self, timings_ms: dict[str, float]) -> None:
        with self._lock:
            self._totals["frames_processed"] += 1
            self._period_counts["frames_processed"] += 1
            for stage, milliseconds in timings_ms.items():
                self._stage_ms[stage].append(milliseconds)

    def total(self, name: str) -> int:
        with self._lock:
            return self._totals[name]

    def report(self, stamp: Time, node_name: str, provider: str, device: str, lifecycle_state: str
               ) -> DiagnosticArray:
        """The DiagnosticArray for the period since the last report; starts a new period."""
        now = time.monotonic()
        with self._lock:
            elapsed = max(now - self._period_start, 1e-9)
            totals, period = dict(self._totals), self._period_counts
            arrivals, stages = self._arrivals, self._stage_ms
            self._reset_period(now)
        values = [("state", lifecycle_state), ("provider", provider), ("device", device)]
        values += [(f"input_rate_hz.{topic}", f"{arrivals[topic] / elapsed:.2f}") for topic in INPUTS]
        values.append(("output_rate_hz", f"{period['frames_processed'] / elapsed:.2f}"))
        for stage, samples in stages.items():
            values.append((f"latency_ms.{stage}.median", f"{np.median(samples):.2f}"))
            values.append((f"latency_ms.{stage}.max", f"{np.max(samples):.2f}"))
        values += [(f"count.{name}", str(value)) for name, value in sorted(totals.items())]

        losses = {name: period[name] for name in DROP_COUNTERS if period[name]}
        if period["internal_error"]:
            level, summary = DiagnosticStatus.ERROR, "internal errors (see the log)"
        elif lifecycle_state == "active" and not arrivals["image"]:
            level, summary = DiagnosticStatus.WARN, f"no image on the input topic for {elapsed:.1f} s"
        elif losses:
            level, summary = DiagnosticStatus.WARN, "dropped: " + ", ".join(f"{k} {v}" for k, v in losses.items())
        else:
            level, summary = DiagnosticStatus.OK, f"{lifecycle_state}, {period['frames_processed'] / elapsed:.1f} frames/s"
        status = DiagnosticStatus(level=level, name=f"{node_name}: pipeline", message=summary, hardware_id=device,
                                  values=[KeyValue(key=key, value=value) for key, value in values])
        message = DiagnosticArray(status=[status])
        message.header.stamp = stamp
        return message

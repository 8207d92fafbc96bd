"""The filters a robotics engineer would reach for instead of a learnt decoder, as baselines it has to beat: a
causal exponential average and a One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) of the encoder's
per-frame poses, with their parameters tuned on the val sequences (`fasthmr tune-filters`, whose choice is
committed as FILTER_PARAMETERS_FILE and read by `fasthmr eval --sequences`).

Both filter each joint's local rotation (the global orientation included) as a rotation, never its axis-angle
numbers: the filtered rotation moves from its previous value towards the new frame's along the geodesic
(slerp) by the filter's weight alpha in [0, 1],

    R_t = R_{t-1} exp(alpha log(R_{t-1}^T X_t)),

which about a fixed axis is the scalar filter of the angle, and which takes the short way across the pi wrap
of axis-angle vectors (from 179 to -179 degrees about one axis is a 2-degree step, not a 358-degree one).
Shape (betas) stays the encoder's, as for the decoder.

One-Euro: the joint's angular velocity log(X_{t-1}^T X_t) * rate (rad/s, consecutive raw frames, as the
authors' reference code differentiates) is low-passed with the derivative cutoff; the cutoff frequency of
the rotation's own low-pass is min_cutoff + beta * |that velocity| (Hz), and a low-pass of cutoff f at a
sampling rate r weighs the new sample by alpha = 1 / (1 + r / (2 pi f)). A still joint is smoothed hard, a
fast one follows with little lag.

Run-time module: numpy only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fasthmr_model.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from fasthmr_model.errors import FastHMRError

FILTER_PARAMETERS_FILE = Path(__file__).with_name("filter_parameters.json")
FILTERS = ("ema", "one_euro")


@dataclass(frozen=True)
class EmaParameters:
    """alpha: the new frame's weight in (0, 1] (1 = no filtering)."""

    alpha: float

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise FastHMRError(f"the exponential average's alpha must be in (0, 1], got {self.alpha}")


@dataclass(frozen=True)
class OneEuroParameters:
    """min_cutoff (Hz) > 0: the cutoff of a still joint; beta (s/rad) >= 0: how fast the cutoff rises with the
    joint's angular speed; derivative_cutoff (Hz) > 0: the low-pass of that speed."""

    min_cutoff: float
    beta: float
    derivative_cutoff: float = 1.0

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0.0 or self.beta < 0.0 or self.derivative_cutoff <= 0.0:
            raise FastHMRError(f"One-Euro parameters need min_cutoff > 0, beta >= 0, derivative_cutoff > 0, got "
                               f"{self.min_cutoff}, {self.beta}, {self.derivative_cutoff}")


def geodesic_step(current: np.ndarray, target: np.ndarray, alpha) -> np.ndarray:
    """current, target (..., 3, 3) rotations, alpha a number or (...,) -> the rotations the share alpha of the
    way from current to target along the geodesic: current exp(alpha log(current^T target))."""
    step = matrix_to_axis_angle(np.swapaxes(current, -1, -2) @ target)
    return current @ axis_angle_to_matrix(np.asarray(alpha, np.float64)[..., None] * step)


def low_pass_weight(cutoff, rate: float):
    """The new sample's weight of a first-order low-pass of cutoff frequency `cutoff` (Hz) at `rate` samples/s."""
    return 1.0 / (1.0 + rate / (2.0 * np.pi * np.asarray(cutoff, np.float64)))


def ema_rotations(rotmats: np.ndarray, parameters: EmaParameters) -> np.ndarray:
    """One sequence's rotations (T, ..., 3, 3) (per frame, e.g. the 24 joints) -> the causal exponential
    average (T, ..., 3, 3); the first frame is kept as it is."""
    rotmats = np.asarray(rotmats, np.float64)
    filtered = np.empty_like(rotmats)
    if not len(rotmats):
        return filtered
    filtered[0] = rotmats[0]
    for frame in range(1, len(rotmats)):
        filtered[frame] = geodesic_step(filtered[frame - 1], rotmats[frame], parameters.alpha)
    return filtered


def one_euro_rotations(rotmats: np.ndarray, parameters: OneEuroParameters, rate: float) -> np.ndarray:
    """One sequence's rotations (T, ..., 3, 3) sampled at `rate` frames/s -> the One-Euro filter (T, ..., 3, 3)
    (each rotation filtered on its own; the first frame is kept as it is, its velocity taken as 0)."""
    rotmats = np.asarray(rotmats, np.float64)
    filtered = np.empty_like(rotmats)
    if not len(rotmats):
        return filtered
    filtered[0] = rotmats[0]
    velocity = np.zeros(rotmats.shape[1:-2] + (3,))
    velocity_weight = low_pass_weight(parameters.derivative_cutoff, rate)
    for frame in range(1, len(rotmats)):
        raw_velocity = matrix_to_axis_angle(np.swapaxes(rotmats[frame - 1], -1, -2) @ rotmats[frame]) * rate
        velocity = velocity + velocity_weight * (raw_velocity - velocity)
        cutoff = parameters.min_cutoff + parameters.beta * np.linalg.norm(velocity, axis=-1)
        filtered[frame] = geodesic_step(filtered[frame - 1], rotmats[frame], low_pass_weight(cutoff, rate))
    return filtered


@dataclass(frozen=True)
class FilterParameters:
    """The tuned parameters of both filters and where they come from (FILTER_PARAMETERS_FILE)."""

    ema: EmaParameters
    one_euro: OneEuroParameters
    provenance: dict

    def to_dict(self) -> dict:
        return {"ema": asdict(self.ema), "one_euro": asdict(self.one_euro), "provenance": self.provenance}

    @classmethod
    def from_dict(cls, values: dict) -> "FilterParameters":
        try:
            return cls(EmaParameters(**values["ema"]), OneEuroParameters(**values["one_euro"]),
                       dict(values.get("provenance", {})))
        except (KeyError, TypeError) as error:
            raise FastHMRError(f"filter parameters need ema {{alpha}} and one_euro {{min_cutoff, beta, "
                               f"derivative_cutoff}}: {error}") from None


def load_filter_parameters(path: Path = FILTER_PARAMETERS_FILE) -> FilterParameters:
    """The filter parameters in `path` (default: those tuned on the val sequences, shipped in the package)."""
    path = Path(path)
    if not path.is_file():
        raise FastHMRError(f"{path} is missing: tune the filters with `fasthmr tune-filters --sequences val`")
    try:
        values = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FastHMRError(f"{path} is not a JSON file of filter parameters: {error}") from None
    if not isinstance(values, dict):
        raise FastHMRError(f"{path} holds no object of filter parameters")
    return FilterParameters.from_dict(values)

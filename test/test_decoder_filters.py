"""The baseline filters of the encoder's poses (decoder.filters) against hand-computed cases, and their tuning
file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fasthmr_model.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from fasthmr_model.decoder.filters import (
    FILTER_PARAMETERS_FILE, EmaParameters, FilterParameters, OneEuroParameters, ema_rotations, geodesic_step,
    load_filter_parameters, one_euro_rotations,
)
from fasthmr_model.errors import FastHMRError

RATE = 30.0


def about_z(angles) -> np.ndarray:
    """Rotations (T, 3, 3) by `angles` (T,) radians about the z axis."""
    return axis_angle_to_matrix(np.outer(angles, [0.0, 0.0, 1.0]))


def z_angles(rotmats: np.ndarray) -> np.ndarray:
    """The signed angles (T,) of rotations about the z axis."""
    vectors = matrix_to_axis_angle(rotmats)
    np.testing.assert_allclose(vectors[:, :2], 0.0, atol=1e-12)
    return vectors[:, 2]


def test_the_exponential_average_about_one_axis_is_the_scalar_one():
    # alpha 0.35 on the angles 0, 1, 1, 0.5: 0, 0.35, 0.35 + 0.35 * 0.65 = 0.5775, 0.5775 + 0.35 * (0.5 - 0.5775)
    filtered = ema_rotations(about_z([0.0, 1.0, 1.0, 0.5]), EmaParameters(0.35))
    np.testing.assert_allclose(z_angles(filtered), [0.0, 0.35, 0.5775, 0.550375], atol=1e-12)


def test_the_average_takes_the_short_way_across_the_wrap():
    """179 then -179 degrees about z is a 2-degree step: halfway is 180 degrees, where averaging the
    axis-angle numbers would give 0."""
    filtered = ema_rotations(about_z(np.radians([179.0, -179.0])), EmaParameters(0.5))
    np.testing.assert_allclose(filtered[1], about_z([np.pi])[0], atol=1e-9)


def test_alpha_one_and_the_geodesic_ends():
    rng = np.random.default_rng(0)
    rotmats = axis_angle_to_matrix(rng.normal(size=(5, 24, 3)))
    np.testing.assert_allclose(ema_rotations(rotmats, EmaParameters(1.0)), rotmats, atol=1e-9)
    np.testing.assert_allclose(geodesic_step(rotmats[0], rotmats[1], 0.0), rotmats[0], atol=1e-12)
    np.testing.assert_allclose(geodesic_step(rotmats[0], rotmats[1], 1.0), rotmats[1], atol=1e-9)
    # Filtered rotations stay rotations.
    filtered = one_euro_rotations(rotmats, OneEuroParameters(1.0, 0.5), RATE)
    np.testing.assert_allclose(filtered @ np.swapaxes(filtered, -1, -2), np.broadcast_to(np.eye(3), filtered.shape),
                               atol=1e-9)


def scalar_one_euro(values, min_cutoff, beta, derivative_cutoff, rate):
    """The One-Euro filter of numbers, written out from its definition (Casiez et al. 2012)."""
    def weight(cutoff):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau * rate)

    filtered, velocity = [values[0]], 0.0
    for previous, value in zip(values, values[1:]):
        velocity += weight(derivative_cutoff) * ((value - previous) * rate - velocity)
        cutoff = min_cutoff + beta * abs(velocity)
        filtered.append(filtered[-1] + weight(cutoff) * (value - filtered[-1]))
    return filtered


def test_one_euro_about_one_axis_is_the_scalar_filter():
    angles = [0.0, 0.1, 0.3, 0.2, -0.4, -0.45]
    for min_cutoff, beta in ((1.0, 0.0), (0.5, 0.3), (2.0, 1.5)):
        filtered = one_euro_rotations(about_z(angles), OneEuroParameters(min_cutoff, beta, 1.0), RATE)
        np.testing.assert_allclose(z_angles(filtered), scalar_one_euro(angles, min_cutoff, beta, 1.0, RATE), atol=1e-12)
    # By hand, beta 0: a still low-pass of weight 2 pi / (2 pi + 30) = 0.173153.
    weight = 2 * math.pi / (2 * math.pi + RATE)
    filtered = one_euro_rotations(about_z([0.0, 0.1, 0.3]), OneEuroParameters(1.0, 0.0), RATE)
    np.testing.assert_allclose(z_angles(filtered), [0.0, 0.1 * weight, 0.1 * weight + weight * (0.3 - 0.1 * weight)],
                               atol=1e-12)


def test_one_euro_follows_fast_motion_with_less_lag():
    ramp = np.linspace(0.0, 2.0, 20)  # 3 rad/s about z
    still = one_euro_rotations(about_z(ramp), OneEuroParameters(1.0, 0.0), RATE)
    adaptive = one_euro_rotations(about_z(ramp), OneEuroParameters(1.0, 1.0), RATE)
    assert abs(z_angles(adaptive)[-1] - 2.0) < 0.5 * abs(z_angles(still)[-1] - 2.0)


def test_parameters_are_validated():
    for bad in (lambda: EmaParameters(0.0), lambda: EmaParameters(1.5), lambda: OneEuroParameters(0.0, 0.1),
                lambda: OneEuroParameters(1.0, -0.1), lambda: OneEuroParameters(1.0, 0.1, 0.0)):
        with pytest.raises(FastHMRError):
            bad()


def test_the_shipped_parameters_were_tuned_on_val(tmp_path):
    parameters = load_filter_parameters()
    assert parameters.provenance["split"] == "sequence-val"
    assert parameters.provenance["command"].startswith("fasthmr tune-filters --sequences val")
    assert parameters.provenance["one_euro_mpjpe"] < parameters.provenance["per_frame_mpjpe"]
    assert FilterParameters.from_dict(json.loads(FILTER_PARAMETERS_FILE.read_text())) == parameters
    (tmp_path / "bad.json").write_text('{"ema": {"alpha": 0.3}}')
    with pytest.raises(FastHMRError, match="one_euro"):
        load_filter_parameters(tmp_path / "bad.json")
    with pytest.raises(FastHMRError, match="tune-filters"):
        load_filter_parameters(tmp_path / "missing.json")


def test_the_tuning_scores_plot(tmp_path):
    """The shipped parameters carry every candidate's val scores, and the trade-off plot draws them."""
    from fasthmr_model.decoder.evaluation import plot_filter_scores

    parameters = load_filter_parameters()
    scores = parameters.provenance["scores"]
    best = min(scores["ema"], key=lambda row: row[1])
    assert best[0] == parameters.ema.alpha and best[1] == parameters.provenance["ema_mpjpe"]
    decoder = {"causal": {"mpjpe": 84.0, "accel": 14.0}}
    assert plot_filter_scores(parameters, tmp_path / "front.png", decoder).stat().st_size > 10_000

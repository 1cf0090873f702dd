"""Seed-sweep statistics against brute force and known values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from phases.sweep import stats


def brute_expected_max(values, n):
    """Enumerate every ordered draw of n runs with replacement: the definition Dodge et al.'s formula computes."""
    draws = list(itertools.product(values, repeat=n))
    maxes = [max(d) for d in draws]
    return float(np.mean(maxes)), float(np.std(maxes))


@pytest.mark.parametrize("values", [[0.71, 0.74, 0.69, 0.74], [3.0, 1.0, 2.0], [0.5, 0.9, 0.1, 0.3, 0.7]])
def test_dodge_curve_matches_brute_force(values):
    curve = stats.expected_max_curve(values)
    assert [p["n"] for p in curve] == list(range(1, len(values) + 1))
    assert curve[0]["expected"] == pytest.approx(np.mean(values))  # n=1: the mean
    assert curve[-1]["expected"] <= max(values)  # n=N: at most the observed max
    for p in curve:
        mean, std = brute_expected_max(values, p["n"])
        assert p["expected"] == pytest.approx(mean) and p["std"] == pytest.approx(std, abs=1e-9)
    exp = [p["expected"] for p in curve]
    assert exp == sorted(exp)  # more seeds never lower the expected best


def test_dodge_curve_min_mode_is_the_mirror():
    values = [0.9, 0.5, 0.7]
    curve = stats.expected_max_curve(values, mode="min")
    for p in curve:
        draws = [min(d) for d in itertools.product(values, repeat=p["n"])]
        assert p["expected"] == pytest.approx(np.mean(draws))


def test_gaussian_formula_and_its_exact_counterpart():
    assert stats.gaussian_expected_max(76.0, 0.9, 20) == pytest.approx(76.0 + 0.9 * math.sqrt(2 * math.log(20)))
    assert math.sqrt(2 * math.log(5)) == pytest.approx(1.794, abs=1e-3)  # what the formula claims for N=5
    assert stats.normal_max_factor(5) == pytest.approx(1.16296, abs=1e-4)  # the exact value (Tippett's tables)
    assert stats.normal_max_factor(2) == pytest.approx(1 / math.sqrt(math.pi))
    assert stats.normal_max_factor(1) == 0.0


def test_probability_a_beats_b():
    assert stats.prob_a_beats_b([2, 3], [1, 1]) == 1.0
    assert stats.prob_a_beats_b([1, 2], [2, 1]) == pytest.approx(0.5)  # (0 + 0.5 + 1 + 0.5) / 4
    assert stats.prob_a_beats_b([1, 2], [2, 1], mode="min") == pytest.approx(0.5)
    assert stats.prob_a_beats_b([0.1], [0.2], mode="min") == 1.0
    low, high = stats.prob_a_beats_b_interval([0.80, 0.81, 0.82, 0.83], [0.70, 0.71, 0.72, 0.73])
    assert low == high == 1.0
    low, high = stats.prob_a_beats_b_interval([0.70, 0.74, 0.71, 0.73], [0.72, 0.70, 0.73, 0.71])
    assert low < 0.5 < high


def test_summary():
    s = stats.summary([1.0, 2.0, 3.0, 4.0])
    assert s == {"n": 4, "mean": 2.5, "std": pytest.approx(np.std([1, 2, 3, 4], ddof=1)), "median": 2.5,
                 "min": 1.0, "max": 4.0}

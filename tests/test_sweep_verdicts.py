"""The verdict of `nlab sweep` on constructed seed samples: a known difference is found beyond noise (better or
worse, by the metric's direction), no difference is called within noise with the difference the seeds could
detect, Holm's correction and the power arithmetic agree with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from phases.core import stats
from phases.core.compare import against_baseline


def _seeds(values):
    return dict(enumerate(values))


def test_known_difference_is_beyond_noise_and_none_is_within_noise():
    rng = np.random.default_rng(1)
    base = 0.80 + rng.normal(0, 0.005, 5)
    better = base + 0.05 + rng.normal(0, 0.005, 5)  # ten standard deviations above
    same = 0.80 + rng.normal(0, 0.005, 5)  # the same distribution
    worse = base - 0.05
    out = against_baseline([_seeds(base), _seeds(better), _seeds(same), _seeds(worse)], 0, lower_is_better=False)
    assert out[0] is None
    assert out[1]["verdict"] == "better beyond noise" and out[1]["welch_p_holm"] < 0.05
    assert out[3]["verdict"] == "worse beyond noise"
    assert out[2]["verdict"].startswith("within noise (5 seeds can detect a difference of ")
    assert out[2]["welch_p_holm"] >= 0.05 and out[2]["detectable"] > abs(out[2]["diff"])
    assert out[2]["seeds_to_resolve"] is None or out[2]["seeds_to_resolve"] > 5
    # a loss: lower is better, so the higher configuration is the worse one
    loss = against_baseline([_seeds(base), _seeds(better)], 0, lower_is_better=True)
    assert loss[1]["verdict"] == "worse beyond noise"


def test_only_matched_seeds_are_compared_and_permutation_floor():
    out = against_baseline([{0: 1.0, 1: 2.0, 2: 3.0, 7: 9.0}, {0: 1.5, 1: 2.4, 2: 3.6, 5: 0.0}], 0, False)
    assert out[1]["seeds"] == [0, 1, 2] and out[1]["diff"] == pytest.approx(0.5)
    assert out[1]["permutation_p"] == pytest.approx(0.25)  # every difference positive: 2 of 8 sign flips as extreme
    assert out[1]["permutation_floor"] == 0.25
    assert against_baseline([{0: 1.0}, {0: 2.0}], 0, False)[1]["verdict"].startswith("not compared")


def test_holm_and_power_arithmetic():
    assert stats.holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert stats.holm([0.5, float("nan")])[0] == 0.5
    assert stats.seeds_to_resolve(0.5, 1.0, 1.0) == 64  # the textbook n for d = 0.5 at power 0.8
    assert stats.seeds_to_resolve(0.0, 1.0, 1.0) is None
    d = stats.detectable_difference(1.0, 1.0, 64)
    assert d == pytest.approx(0.5, abs=0.01)
    assert stats.welch_p([1, 1, 1], [1, 1, 1]) == 1.0 and stats.welch_p([1, 1], [2, 2]) == 0.0
    low, high = stats.mean_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2 - 4.302653 / np.sqrt(3), 2 + 4.302653 / np.sqrt(3)), rel=1e-5)

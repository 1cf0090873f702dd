"""The shared definitions of phases/core on hand-computed cases: the paired comparison (compare.py), the answer
rule (answers.py) and the spike factor (spikes.py)."""

from __future__ import annotations

import math

import pytest

from phases.core.answers import INVALID, canonical, same_answer
from phases.core.compare import paired_correctness
from phases.core.spikes import spike_factor, spike_stats


# --- paired comparison -----------------------------------------------------------------------------------------------
def test_mcnemar_on_five_discordant_items_and_the_2x2_counts():
    # 5 items only A gets right, 3 both get right, 2 neither: McNemar two-sided = 2 * 0.5**5 = 0.0625
    a = {i: i < 8 for i in range(10)}
    b = {i: 5 <= i < 8 for i in range(10)}
    c = paired_correctness(a, b)
    assert (c["both_right"], c["only_a_right"], c["only_b_right"], c["both_wrong"]) == (3, 5, 0, 2)
    assert c["mcnemar_p"] == pytest.approx(0.0625) and c["beyond_noise"] is False  # not below 0.05
    assert (c["acc_a"], c["acc_b"]) == (0.8, 0.3) and c["diff"] == pytest.approx(0.5)
    assert c["ids_only_a_right"] == [0, 1, 2, 3, 4] and c["ids_only_b_right"] == []
    assert c["diff_low"] <= c["diff"] <= c["diff_high"]


def test_only_shared_ids_are_compared():
    a = {"x": True, "y": False, "z": True, "only_a": True}
    b = {"z": False, "x": True, "y": True, "only_b1": False, "only_b2": True}
    c = paired_correctness(a, b)
    assert c["n_shared"] == 3 and (c["n_only_in_a"], c["n_only_in_b"], c["n_dropped"]) == (1, 2, 3)
    assert (c["both_right"], c["only_a_right"], c["only_b_right"], c["both_wrong"]) == (1, 1, 1, 0)
    assert c["ids_only_a_right"] == ["z"] and c["ids_only_b_right"] == ["y"]  # in a's order
    empty = paired_correctness({"p": True}, {"q": True})
    assert empty["n_shared"] == 0 and math.isnan(empty["diff"]) and not empty["beyond_noise"]
    assert "share no item" in empty["verdict"]


def test_verdict_in_words():
    # 30 items A alone gets right, 0 B alone, 70 both: beyond noise by McNemar, and the interval excludes zero
    a = {i: i < 100 for i in range(100)}
    b = {i: i >= 30 for i in range(100)}
    c = paired_correctness(a, b, "ewc", "naive")
    assert c["mcnemar_p"] == pytest.approx(2 * 0.5 ** 30) and c["beyond_noise"] and c["bootstrap_beyond_noise"]
    assert c["verdict"].startswith("ewc is better beyond noise (+30.0 points, 95% CI [+")
    assert c["verdict"].endswith(f"McNemar p={c['mcnemar_p']:.3g}, n=100)")
    flipped = paired_correctness(b, a, "naive", "ewc")
    assert flipped["verdict"].startswith("ewc is better beyond noise (+30.0 points")  # the winner is named
    tie = paired_correctness({i: i % 2 == 0 for i in range(20)}, {i: i % 2 == 1 for i in range(20)})
    assert tie["diff"] == 0 and tie["mcnemar_p"] == pytest.approx(1.0) and not tie["beyond_noise"]
    assert tie["verdict"].startswith("A and B differ within noise (A - B = +0.0 points")


# --- one answer rule -------------------------------------------------------------------------------------------------
def test_equal_answers():
    assert same_answer("18", "18.00") and same_answer("18.00", "$18") and same_answer("$18", 18)
    assert same_answer("18.0", 18.0) and same_answer("1,000", "1000") and same_answer("-0", "0")
    assert same_answer("#### 42", "42") and same_answer("Paris", "paris.")  # text: normalised, lowercased
    assert canonical("18.00") == canonical("$18") == "18" and canonical(1000) == canonical("1,000") == "1000"


def test_different_or_missing_answers():
    assert not same_answer("18", "18.01") and not same_answer("0.1", "0.10000000000000001")  # exact, not float
    assert not same_answer(None, None) and not same_answer(INVALID, INVALID) and not same_answer("", "")
    assert not same_answer(None, "18") and not same_answer("18", None) and not same_answer("$", "")
    assert canonical(None) is canonical(INVALID) is canonical(" $ ") is None


# --- one spike factor ------------------------------------------------------------------------------------------------
def test_spike_factor_on_a_hand_made_series():
    losses = [3.0, 2.0, 1.0, 1.0, 1.0, 2.0, 4.0, 3.0, 1.0]
    s = spike_stats(losses, 5, 3)  # before: [1, 1, 1] (mean 1), after: [2, 4, 3] (peak 4)
    assert (s["loss_before"], s["peak_after"], s["peak_index"], s["window_after"]) == (1.0, 4.0, 1, 3)
    assert s["spike_factor"] == 4.0
    assert spike_stats(losses, 2, 5)["loss_before"] == 2.5  # a short start: the two losses there
    assert spike_stats(losses, 8, 3)["window_after"] == 1  # a short end
    assert spike_stats(losses, 0, 3)["spike_factor"] is None and spike_stats(losses, 9, 3)["spike_factor"] is None
    assert spike_factor([0.0], [1.0])["spike_factor"] is None  # no positive baseline
    assert spike_factor([1.0], [2.0, 2.0])["peak_index"] == 0  # the first peak

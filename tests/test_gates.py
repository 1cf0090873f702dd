"""Go/no-go gates (`--expect`) on real train-moe runs: met (exit 0), missed (exit 3), inconclusive when the 95%
interval straddles the threshold (exit 3, said so), checked for form and metric names before anything runs, and
`nlab runs check` on a finished run."""

from __future__ import annotations

import json

import pytest

from phases.core.gates import judge, parse_gates

QUICK = ("train-moe", "--epochs", "4", "--train-limit", "400", "--batch-size", "32", "--json")


def test_judge_on_hand_made_metrics():
    m = {"test_acc": 0.9, "test_acc_ci_low": 0.85, "test_acc_ci_high": 0.94, "max_spike": 1.5}
    verdicts = [g["verdict"] for g in judge(parse_gates(
        ["test_acc>=0.8", "test_acc>=0.88", "test_acc>=0.95", "max_spike<2", "max_spike<1", "nosuch>1"]), m)]
    assert verdicts == ["met", "inconclusive", "missed", "met", "missed", "missed"]


def test_gates_on_a_real_run_met_missed_and_inconclusive(cli, tmp_path):
    code, out, err = cli(*QUICK, "--out", str(tmp_path / "a"), "--expect", "test_acc>=0.3")
    assert code == 0, err
    m = json.loads(out)
    assert [g["verdict"] for g in m["expectations"]] == ["met"] and "expectations" in err
    assert json.loads((tmp_path / "a" / "expectations.json").read_text())[0]["verdict"] == "met"
    low, high = m["test_acc_ci_low"], m["test_acc_ci_high"]

    code, out, err = cli(*QUICK, "--out", str(tmp_path / "b"), "--expect", "test_acc>=0.3", "--expect",
                         "test_acc>1.0")
    assert code == 3 and [g["verdict"] for g in json.loads(out)["expectations"]] == ["met", "missed"], err

    # the point estimate passes a threshold inside the interval, but the interval straddles it: not a pass
    code, out, err = cli("runs", "check", m["run_dir"], "--expect", f"test_acc>={(low + m['test_acc']) / 2}")
    assert code == 3 and "inconclusive" in err and "straddles" in " ".join(err.split()), err
    code, _, err = cli("runs", "check", m["run_dir"], "--expect", f"test_acc>={low / 2}")
    assert code == 0, err
    assert high >= m["test_acc"] >= low


@pytest.mark.parametrize("expect, culprit", [
    ("test_acc>>0.9", "--expect 'test_acc>>0.9'"),
    ("test_acc>=high", "'high' is not a number"),
    ("nosuch>=0.9", "--expect nosuch: train-moe writes no such metric"),
])
def test_bad_gate_exit_2_before_anything_runs(cli, nlab_home, expect, culprit):
    code, out, err = cli(*QUICK, "--expect", expect)
    assert code == 2 and culprit in " ".join(err.split()) and out == "", err
    assert not (nlab_home / "logs").exists()

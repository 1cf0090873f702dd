"""ensemble-vote over run folders whose predictions the tests write: hand-checked votes, tie-breaks, soft voting,
statistics, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phases.core.runs import Run


def make_run(tmp_path: Path, name: str, predictions: list[dict], phase: str = "eval-gsm8k") -> str:
    with Run.create(phase, {"name": name}, out=tmp_path / name) as run:
        for p in predictions:
            run.predict(p)
        run.write_metrics({"acc": sum(p.get("correct", False) for p in predictions) / len(predictions)}, "acc")
    return str(run.dir)


def answers(preds: list, targets: list) -> list[dict]:
    return [{"id": i, "target": t, "prediction": p, "correct": p == t} for i, (p, t) in enumerate(zip(preds, targets))]


TARGETS = ["18", "3", "70000", "540", "20"]


def test_majority_vote_hand_checked(cli, tmp_path):
    a = make_run(tmp_path, "a", answers(["18", "3", "1", "540", None], TARGETS))      # 3/5
    b = make_run(tmp_path, "b", answers(["18.00", "4", "70000", "7", "20"], TARGETS))  # 3/5 (18.00 == 18)
    c = make_run(tmp_path, "c", answers(["17", "3", "70,000", "7", "21"], TARGETS))   # 2/5
    code, out, err = cli("ensemble-vote", a, b, c, "--json", "--name", "vote")
    assert code == 0, err
    m = json.loads(out)
    # item 0: 18 x2 (18 == 18.00) -> right; 1: 3 x2 -> right; 2: 70000 x2 (b, c) -> right;
    # 3: 7 x2 -> wrong; 4: a abstains, b=20, c=21 tie -> best-member (b ranks above c) -> right
    assert m["ensemble_acc"] == pytest.approx(4 / 5) and m["n"] == 5
    assert [x["acc"] for x in m["members"]] == pytest.approx([3 / 5, 3 / 5, 2 / 5])
    assert m["best_member_acc"] == pytest.approx(3 / 5) and m["best_member"] == a and m["oracle_acc"] == 1.0
    # against member a: the ensemble alone is right on items 2 and 4, a alone on item 3
    assert (m["only_ensemble_right"], m["only_best_right"]) == (2, 1)
    assert m["gain_over_best"] == pytest.approx(0.2) and m["mcnemar_p"] == pytest.approx(1.0)
    assert not m["gain_beyond_noise"]  # 5 items cannot show it
    preds = [json.loads(line) for line in (Path(m["run_dir"]) / "predictions.jsonl").read_text().splitlines()]
    assert [p["prediction"] for p in preds] == ["18", "3", "70000", "7", "20"]
    assert [p["correct"] for p in preds] == [True, True, True, False, True]
    assert preds[4]["member_predictions"] == [None, "20", "21"]
    # the ensemble is itself a run that can be voted again or compared
    assert json.loads((Path(m["run_dir"]) / "manifest.json").read_text())["phase"] == "ensemble-vote"
    code, out, _ = cli("ensemble-vote", c, b, a, "--tie-break", "first", "--json")
    assert json.loads(out)["ensemble_acc"] == pytest.approx(3 / 5)  # item 4's tie now goes to c's 21


def test_soft_vote_and_confidence_tie_break(cli, tmp_path):
    def probs_run(name, rows):
        preds = [{"id": i, "target": t, "prediction": int(p[1] > p[0]), "probs": p} for i, (t, p) in enumerate(rows)]
        return make_run(tmp_path, name, [{**p, "correct": p["prediction"] == p["target"]} for p in preds],
                        phase="train-moe")
    a = probs_run("a", [(0, [0.9, 0.1]), (1, [0.6, 0.4]), (0, [0.45, 0.55])])
    b = probs_run("b", [(0, [0.4, 0.6]), (1, [0.2, 0.8]), (0, [0.52, 0.48])])
    code, out, err = cli("ensemble-vote", a, b, "--method", "soft", "--json")
    assert code == 0, err
    m = json.loads(out)
    assert m["ensemble_acc"] == pytest.approx(2 / 3)  # means: [0.65,0.35] [0.4,0.6] [0.485,0.515] -> 0, 1, 1
    code, out, err = cli("ensemble-vote", a, b, "--tie-break", "confidence", "--json")
    m = json.loads(out)  # every item is a 1-1 tie; the more confident member wins: 0 (0.9), 1 (0.8), 1 (0.55)
    assert m["ensemble_acc"] == pytest.approx(2 / 3)
    code, out, err = cli("ensemble-vote", a, b, "--tie-break", "first", "--json")
    assert json.loads(out)["ensemble_acc"] == pytest.approx(1 / 3)  # a's answers: 0, 0, 1


@pytest.mark.parametrize("case,expect", [
    ("one-run", "a vote needs at least 2"),
    ("different-items", "cover other items"),
    ("duplicate-id", "duplicate id"),
    ("mixed-phases", "runs of different phases"),
    ("soft-without-probs", "needs class probabilities"),
    ("not-a-run", "not an nlab run folder"),
    ("bad-method", "--method"),
])
def test_bad_input_exit_2_nothing_written(cli, tmp_path, nlab_home, case, expect):
    a = make_run(tmp_path, "a", answers(["18", "3"], TARGETS[:2]))
    b = make_run(tmp_path, "b", answers(["18", "4"], TARGETS[:2]))
    args = {
        "one-run": [a],
        "different-items": [a, make_run(tmp_path, "c", answers(["18", "3", "1"], TARGETS[:3]))],
        "duplicate-id": [a, make_run(tmp_path, "d", [{"id": 0, "target": "18", "prediction": "18"}] * 2)],
        "mixed-phases": [a, make_run(tmp_path, "e", answers(["18", "3"], TARGETS[:2]), phase="train-moe")],
        "soft-without-probs": [a, b, "--method", "soft"],
        "not-a-run": [a, str(tmp_path)],
        "bad-method": [a, b, "--method", "mean"],
    }[case]
    code, out, err = cli("ensemble-vote", *args)
    assert code == 2 and expect in err.replace("\n", " ") and out == ""
    assert not (nlab_home / "logs").exists()

"""analyze-history: numbers checked against hand-computed values on histories the tests write, a real run's
history (the fixture), Lightning CSV input, pipelines, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "histories" / "digits_two_stage.jsonl"

# Stage A learns, stage B starts with an 8.2x spike then stagnates, stage C overfits; task A is forgotten.
A_LOSS = [2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6]  # last 5 mean = 0.8
B_LOSS = [4.0, 6.56, 3.0, 2.5, 2.2, 2.2, 2.21, 2.2, 2.21, 2.21]  # peak of first 5 = 6.56 -> 8.2x
C_LOSS = [1.0, 0.8, 0.6, 0.4, 0.2, 0.1, 0.05, 0.02, 0.01, 0.004]
C_VAL = {220: 1.0, 240: 0.7, 260: 0.8, 280: 0.9, 300: 1.1}  # best at 240, then 3 worse evaluations


def write_staged_history(path: Path) -> Path:
    recs = []
    for stage, losses, start in (("A", A_LOSS, 10), ("B", B_LOSS, 110), ("C", C_LOSS, 210)):
        for i, loss in enumerate(losses):
            recs.append({"step": start + 10 * i, "split": "train", "stage": stage, "loss": loss, "lr": 0.1})
    recs += [{"step": 50, "split": "val", "stage": "A", "loss": 1.5}, {"step": 100, "split": "val", "stage": "A",
                                                                        "loss": 1.0},
             {"step": 150, "split": "val", "stage": "B", "loss": 2.5}, {"step": 200, "split": "val", "stage": "B",
                                                                         "loss": 2.3}]
    recs += [{"step": s, "split": "val", "stage": "C", "loss": v} for s, v in C_VAL.items()]
    recs += [{"step": 100, "split": "val", "stage": "A", "task": "A", "acc": 0.9},
             {"step": 200, "split": "val", "stage": "B", "task": "A", "acc": 0.6},
             {"step": 300, "split": "val", "stage": "C", "task": "A", "acc": 0.5}]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def slope(xs, ys):
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def run_json(cli, *args):
    code, out, err = cli("analyze-history", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_hand_computed_spike_stagnation_overfitting_forgetting(cli, tmp_path):
    m = run_json(cli, str(write_staged_history(tmp_path / "history.jsonl")))
    run = m["runs"][0]
    a, b, c = run["stages"]
    assert (a["stage"], a["first_step"], a["last_step"]) == ("A", 10, 100)
    assert a["loss_first"] == 2.0 and a["loss_last"] == 0.6 and a["loss_min"] == 0.6
    assert a["loss_mean"] == pytest.approx(1.2)
    assert a["val_best"] == 1.0 and a["val_best_step"] == 100
    assert c["val_best"] == 0.7 and c["val_best_step"] == 240

    ab, bc = run["boundaries"]
    assert ab["baseline_loss"] == pytest.approx(0.8)
    assert ab["peak_loss"] == 6.56 and ab["peak_step"] == 120
    assert ab["spike_factor"] == pytest.approx(8.2) and ab["is_spike"]
    assert bc["spike_factor"] == pytest.approx(1.0 / (sum(B_LOSS[-5:]) / 5)) and not bc["is_spike"]

    stag = {s["stage"]: s for s in run["stagnation"]}
    xs, ys = [160, 170, 180, 190, 200], B_LOSS[5:]
    expected_b = slope(xs, ys) * 40 / (sum(ys) / 5)
    assert stag["B"]["relative_change"] == pytest.approx(expected_b)
    assert stag["B"]["is_stagnant"]
    assert stag["A"]["relative_change"] == pytest.approx(slope([60, 70, 80, 90, 100], A_LOSS[5:]) * 40 / 0.8)
    assert not stag["A"]["is_stagnant"] and not stag["C"]["is_stagnant"]

    (over,) = run["overfitting"]
    assert over["stage"] == "C" and over["began_step"] == 240 and over["detected_step"] == 300
    assert over["val_best"] == 0.7 and over["val_last"] == 1.1
    assert over["train_loss_at_best"] == 0.4 and over["train_loss_last"] == 0.004

    (forget,) = run["forgetting"]
    assert forget["task"] == "A" and forget["metric"] == "val_acc"
    assert forget["best"] == 0.9 and forget["final"] == 0.5
    assert forget["drop"] == pytest.approx(0.4) and forget["relative_drop"] == pytest.approx(0.4 / 0.9)

    assert m["primary"] == "n_findings" and m["n_findings"] == 4
    assert (m["n_spikes"], m["n_stagnant_stages"], m["n_overfitting"], m["n_forgetting"]) == (1, 1, 1, 1)
    assert m["max_spike_factor"] == pytest.approx(8.2)
    kinds = [f["kind"] for f in m["findings"]]
    assert kinds == ["spike", "stagnation", "overfitting", "forgetting"]
    assert "x8.20" in m["findings"][0]["text"] and "step 240" in m["findings"][2]["text"]
    assert Path(m["plot"]).is_file() and Path(m["plot"]).stat().st_size > 10_000


def test_thresholds_change_the_verdicts(cli, tmp_path):
    hist = str(write_staged_history(tmp_path / "history.jsonl"))
    m = run_json(cli, hist, "--spike-threshold", "9", "--patience", "4", "--stagnation-tol", "0.0001",
                 "--forgetting-threshold", "0.5", "--no-plot")
    assert m["n_findings"] == 0 and "plot" not in m
    m = run_json(cli, hist, "--window", "1", "--no-plot")
    ab = m["runs"][0]["boundaries"][0]
    assert ab["spike_factor"] == pytest.approx(4.0 / 0.6)  # first point of B over last point of A


def test_real_run_fixture(cli):
    m = run_json(cli, str(FIXTURE))
    run = m["runs"][0]
    assert [s["stage"] for s in run["stages"]] == ["A", "B"]
    (boundary,) = run["boundaries"]
    assert boundary["is_spike"] and boundary["spike_factor"] > 10  # switching to unseen classes
    forgot = {f["metric"]: f for f in run["forgetting"]}
    assert forgot["val_acc"]["best"] > 0.9 and forgot["val_acc"]["final"] < 0.1  # class-incremental forgetting
    assert all(f["task"] == "A" for f in run["forgetting"])  # task B is never evaluated after a later stage


def test_history_without_stages_is_one_stage(cli, tmp_path):
    p = tmp_path / "h.jsonl"
    p.write_text("".join(json.dumps({"step": i, "loss": 1.0 / (i + 1)}) + "\n" for i in range(10)))
    run = run_json(cli, str(p), "--no-plot")["runs"][0]
    assert len(run["stages"]) == 1 and run["stages"][0]["stage"] is None
    assert run["boundaries"] == [] and run["stages"][0]["loss_min"] == pytest.approx(0.1)


def test_lightning_metrics_csv(cli, tmp_path):
    csv = tmp_path / "metrics.csv"
    rows = ["epoch,step,train_loss_step,val_loss,val_acc"]
    for s in range(1, 11):
        rows.append(f"0,{s},{1.0 / s:.4f},,")
        if s % 2 == 0:
            rows.append(f"0,{s},,{[0.9, 0.5, 0.6, 0.7, 0.8][s // 2 - 1]},{0.1 * s}")
    csv.write_text("\n".join(rows) + "\n")
    run = run_json(cli, str(tmp_path), "--no-plot")["runs"][0]  # a folder holding metrics.csv
    st = run["stages"][0]
    assert st["n_loss_points"] == 10 and st["loss_first"] == 1.0 and st["loss_last"] == 0.1
    assert st["val_metric"] == "val_loss" and st["val_best"] == 0.5 and st["val_best_step"] == 4
    (over,) = run["overfitting"]
    assert over["began_step"] == 4 and over["val_last"] == 0.8


def test_several_runs_overlaid_and_stdin_pipeline(nlab, tmp_path):
    a = write_staged_history(tmp_path / "a.jsonl")
    first = nlab("analyze-history", str(a), "--json", "--no-plot", "--name", "first")
    assert first.returncode == 0, first.stderr
    run_dir = json.loads(first.stdout)["run_dir"]
    assert Path(run_dir).name.endswith("-first")
    # the analysis run folder has no history: pipe a run folder that has one
    hist_dir = tmp_path / "run1"
    hist_dir.mkdir()
    write_staged_history(hist_dir / "history.jsonl")
    piped = nlab("analyze-history", "-", str(FIXTURE), "--json", input=json.dumps({"run_dir": str(hist_dir)}))
    assert piped.returncode == 0, piped.stderr
    m = json.loads(piped.stdout)
    assert m["n_runs"] == 2 and [r["name"] for r in m["runs"]] == ["run1", "digits_two_stage"]
    assert Path(m["plot"]).is_file()
    assert "finding" in piped.stderr and piped.stdout.count("\n") == 1  # tables on stderr, data on stdout


def test_run_folder_contents(cli, tmp_path, nlab_home):
    m = run_json(cli, str(write_staged_history(tmp_path / "history.jsonl")), "--out", str(tmp_path / "out"))
    out = tmp_path / "out"
    assert m["run_dir"] == str(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["phase"] == "analyze-history"
    config = json.loads((out / "config.json").read_text())
    assert config["thresholds"]["window"] == 5
    assert json.loads((out / "metrics.json").read_text())["n_findings"] == 4
    assert not (nlab_home / "logs").exists()  # --out replaces logs/<phase>/<run_id>


@pytest.mark.parametrize("content,expect", [
    ("", "empty file"),
    ('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4\n{"step": 3, "loss": 0.3}\n', ":2: malformed JSON"),
    ('{"step": 1, "note": "x"}\n{"step": 2, "split": "val"}\n', "no numeric metric"),
    ('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": NaN}\n', ":2: non-finite value"),
    ('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": Infinity}\n', ":2: non-finite value"),
    ('{"loss": 0.5}\n', ":1: 'step' must be a number"),
])
def test_bad_history_exit_2_and_nothing_written(cli, tmp_path, nlab_home, content, expect):
    p = tmp_path / "history.jsonl"
    p.write_text(content)
    code, out, err = cli("analyze-history", str(p))
    assert code == 2
    assert expect in err and str(p) in err.replace("\n", "")
    assert out == ""
    assert not (nlab_home / "logs").exists()


def test_skip_bad_lines_counts_them(cli, tmp_path):
    p = tmp_path / "history.jsonl"
    p.write_text('{"step": 1, "loss": 0.5}\nnot json\n{"step": 3, "loss": NaN}\n{"step": 4, "loss": 0.3}\n')
    m = run_json(cli, str(p), "--skip-bad-lines", "--no-plot")
    assert m["n_bad_lines"] == 2 and m["runs"][0]["bad_lines"] == [2, 3]
    assert m["runs"][0]["n_points"] == 2


def test_missing_paths_and_bad_options(cli, tmp_path, nlab_home):
    code, _, err = cli("analyze-history", str(tmp_path / "nope.jsonl"))
    assert code == 2 and "no such file or folder" in err
    (tmp_path / "emptydir").mkdir()
    code, _, err = cli("analyze-history", str(tmp_path / "emptydir"))
    assert code == 2 and "holds no history.jsonl" in err
    code, _, err = cli("analyze-history", str(FIXTURE), "--window", "0")
    assert code == 2 and "--window" in err
    code, _, err = cli("analyze-history", str(FIXTURE), "--name", "bad/name")
    assert code == 2 and "--name" in err
    code, _, err = cli("analyze-history", "-", input="")
    assert code == 2 and "stdin is empty" in err
    code, _, err = cli("analyze-history", "-", input='{"x": 1}')
    assert code == 2 and "run_dir" in err
    assert not (nlab_home / "logs").exists()

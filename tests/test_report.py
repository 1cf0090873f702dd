"""`nlab runs report` and `nlab runs export` on real runs made here: two quick train-moe runs (paired on the same
test items) and an analyze-history run with its plot; the report rendered to HTML with its images present; the
export read back with MLflow's client and TensorBoard's event reader, matching history.jsonl."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phases.core.jsonio import read_jsonl
from phases.core.trackers import points_of

QUICK = ("train-moe", "--epochs", "2", "--train-limit", "200")


def _invoke(*args: str, input: str | None = None):
    from nlab_cli.main import app

    r = CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    home = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLAB_HOME", str(home))
        runs = {}
        for name, extra in (("a", ()), ("b", ("--lr", "0.01"))):
            rc, out, err = _invoke(*QUICK, *extra, "--name", name, "--json")
            assert rc == 0, err
            runs[name] = Path(json.loads(out)["run_dir"])
        rc, out, err = _invoke("analyze-history", str(runs["a"]), "--json")
        assert rc == 0, err
        runs["history"] = Path(json.loads(out)["run_dir"])
    return home, runs


def test_report_markdown_and_html_with_plots_and_comparison(lab, tmp_path, monkeypatch):
    home, runs = lab
    monkeypatch.setenv("NLAB_HOME", str(home))
    out = tmp_path / "lab" / "report.md"
    out.parent.mkdir()
    rc, stdout, err = _invoke("runs", "report", str(runs["a"]), runs["b"].name, str(runs["history"]), "--out",
                              str(out), "--html", "--json")
    assert rc == 0, err
    result = json.loads(stdout)
    text = out.read_text()
    a, b = runs["a"].name, runs["b"].name
    assert f"## {a} (train-moe)" in text and f"## {b} (train-moe)" in text and "(analyze-history)" in text
    assert "| lr | 0.01 |" in text and "| train_limit | 200 |" in text  # options that differ from the defaults
    metrics = json.loads((runs["a"] / "metrics.json").read_text())
    assert f"| test_acc (primary) | {metrics['test_acc']:.4g}" in text and "| 360 |" in text
    assert "### Findings (analyze-history)" in text
    # one paired comparison (the two train-moe runs), by the implementation `runs compare` uses
    [pair] = result["comparisons"]
    assert pair["test"].startswith("McNemar") and f"### {a} vs {b} (train-moe)" in text and pair["verdict"] in text
    # the analyze-history plot, copied beside the report and linked relatively
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert links and all(not Path(link).is_absolute() and (out.parent / link).is_file() for link in links)
    html = (out.parent / "report.html").read_text()
    srcs = re.findall(r'<img alt="[^"]*" src="([^"]+)"', html)
    assert sorted(srcs) == sorted(links) and all((out.parent / s).is_file() for s in srcs)
    assert "<table>" in html and f"<h2>{a} (train-moe)</h2>" in html


def test_report_bad_input(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("NLAB_HOME", str(lab[0]))
    rc, _, err = _invoke("runs", "report", str(tmp_path), "--out", str(tmp_path / "r.md"))
    assert rc == 2 and "manifest.json" in err
    rc, _, err = _invoke("runs", "report", str(lab[1]["a"]), "--out", str(tmp_path / "r.txt"))
    assert rc == 2 and ".md" in err


def test_runs_show_lists_findings(lab, monkeypatch):
    monkeypatch.setenv("NLAB_HOME", str(lab[0]))
    rc, out, err = _invoke("runs", "show", str(lab[1]["a"]), "--json")
    assert rc == 0 and "findings (analyze-history)" in err
    assert isinstance(json.loads(out)["findings"], list)


def test_export_to_mlflow_and_tensorboard_matches_history(lab, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    home, runs = lab
    monkeypatch.setenv("NLAB_HOME", str(home))
    run_dir = runs["a"]
    expected: dict[str, list] = {}
    for rec in read_jsonl(run_dir / "history.jsonl"):
        for k, v in points_of(rec).items():
            expected.setdefault(k, []).append((rec["step"], v))
    rc, out, err = _invoke("runs", "export", str(run_dir), "--to", "mlflow", "--json")
    assert rc == 0, err
    mlflow_id = json.loads(out)["runs"][0]["run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'logs' / 'mlflow.db'}")
    run = client.get_run(mlflow_id)
    assert run.info.run_name == run_dir.name and run.info.status == "FINISHED"
    for key, series in expected.items():
        assert sorted((m.step, m.value) for m in client.get_metric_history(mlflow_id, key)) == sorted(series)
    assert run.data.metrics["test_acc"] == json.loads((run_dir / "metrics.json").read_text())["test_acc"]
    rc, out, err = _invoke("runs", "export", run_dir.name, "--to", "mlflow", "--json")  # twice: skipped
    assert rc == 0 and "already exported" in err and json.loads(out)["runs"][0]["skipped"]

    rc, out, err = _invoke("runs", "export", str(run_dir), "--to", "tensorboard", "--json")
    assert rc == 0, err
    logdir = Path(json.loads(out)["runs"][0]["logdir"])
    assert logdir == home / "logs" / "tensorboard" / "train-moe" / run_dir.name
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    for key, series in expected.items():
        assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in acc.Scalars(key)] == series, key
    rc, _, err = _invoke("runs", "export", str(run_dir), "--to", "comet")
    assert rc == 2 and "mlflow, tensorboard" in err

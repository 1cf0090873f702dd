"""`nlab runs` over real runs made here: two quick train-moe runs, one that diverged (failed), one killed with
kill -9 after its first checkpoint (stopped), and an analyze-history run (another phase)."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import kill_after_first_checkpoint
from phases.core.compare import paired_correctness, paired_losses
from phases.core.jsonio import read_jsonl
from phases.core.stats import paired_bootstrap_diff

QUICK = ("train-moe", "--epochs", "2", "--train-limit", "200")


def _invoke(*args: str):
    from nlab_cli.main import app

    r = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def _kill_after_first_checkpoint(home: Path) -> None:
    kill_after_first_checkpoint(home, "--epochs", "30")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One nlab home holding the five runs; each test points NLAB_HOME at it."""
    home = tmp_path_factory.mktemp("lab")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLAB_HOME", str(home))
        mp.setenv("NLAB_NO_DOWNLOAD", "1")
        runs = {}
        for name, extra, code in (("a", (), 0), ("b", ("--lr", "0.01"), 0), ("failed", ("--lr", "1e6"), 1)):
            rc, out, err = _invoke(*QUICK, *extra, "--name", name, "--json")
            assert rc == code, err
            runs[name] = next((home / "logs" / "train-moe").glob(f"*-{name}"))
        _kill_after_first_checkpoint(home)
        runs["killed"] = next((home / "logs" / "train-moe").glob("*-killed"))
        rc, out, err = _invoke("analyze-history", str(runs["a"]), "--no-plot", "--json")
        assert rc == 0, err
        runs["history"] = Path(json.loads(out)["run_dir"])
    return home, runs


@pytest.fixture
def runs(lab, monkeypatch):
    monkeypatch.setenv("NLAB_HOME", str(lab[0]))
    return lab[1]


def listed(*args: str) -> list[dict]:
    rc, out, err = _invoke("runs", "list", *args, "--json")
    assert rc == 0, err
    return json.loads(out)


def names(rows: list[dict]) -> set[str]:
    return {Path(r["run_dir"]).name.split("-")[-1] for r in rows}


def test_list_finds_every_run_with_its_status(runs, monkeypatch):
    from phases.core import render

    monkeypatch.setattr(render.console(), "width", 300)  # long temporary paths must not wrap the status column
    rows = {Path(r["run_dir"]): r for r in listed()}
    assert set(rows) == set(runs.values())
    status = {name: rows[d]["status"] for name, d in runs.items()}
    assert status == {"a": "completed", "b": "completed", "failed": "failed", "killed": "stopped",
                      "history": "completed"}
    killed = rows[runs["killed"]]
    assert killed["hint"] == f"nlab train-moe --resume {runs['killed']}" and rows[runs["history"]]["hint"] is None
    assert "non-finite loss" in rows[runs["failed"]]["exit_reason"]
    a = rows[runs["a"]]
    metrics = json.loads((runs["a"] / "metrics.json").read_text())
    assert (a["primary"], a["value"], a["low"], a["high"], a["n"]) == (
        "test_acc", metrics["test_acc"], metrics["test_acc_ci_low"], metrics["test_acc_ci_high"], 360)
    manifest = json.loads((runs["a"] / "manifest.json").read_text())
    start, end = (dt.datetime.fromisoformat(manifest[k]) for k in ("start_time", "end_time"))
    assert a["wall_time_s"] == (end - start).total_seconds() and not a["wall_time_estimated"]
    assert killed["wall_time_estimated"] and killed["wall_time_s"] > 0
    rc, out, err = _invoke("runs", "list")  # the table, on stderr; stdout stays empty
    assert rc == 0 and out == ""
    assert "stopped (killed?)" in err and f"nlab train-moe --resume {runs['killed']}" in err
    assert "test_acc" in err and "lr=0.01" in err


def test_list_filters(runs):
    assert names(listed("--phase", "train-moe")) == {"a", "b", "failed", "killed"}
    assert names(listed("--status", "failed")) == {"failed"}
    assert names(listed("--status", "stopped")) == {"killed"}
    assert names(listed("--where", "lr=0.004")) == {"a", "killed"}
    assert names(listed("--where", "lr=4e-3", "--where", "test_acc>0")) == {"a"}
    assert names(listed("--where", "lr>0.005")) == {"b", "failed"}
    assert names(listed("--where", "strategy=joint", "--status", "completed")) == {"a", "b"}
    assert names(listed(str(runs["b"].parent), "--where", "lr!=0.004")) == {"b", "failed"}  # a folder given
    assert listed("--since", (dt.date.today() + dt.timedelta(days=1)).isoformat()) == []
    assert len(listed("--since", "2000-01-01")) == 5


def test_sum_wall_time(runs):
    rc, out, err = _invoke("runs", "list", "--phase", "train-moe", "--sum", "wall_time", "--json")
    assert rc == 0, err
    rows = json.loads(out)
    assert "total wall_time:" in err and "over 4 run(s)" in err and "1 stopped run(s) counted to their last write" in err
    from phases.notebook import listing

    assert listing.total(rows, "wall_time")["total"] == pytest.approx(sum(r["wall_time_s"] for r in rows))
    rc, _, err = _invoke("runs", "list", "--sum", "train_seconds", "--status", "failed")
    assert rc == 2 and "--sum train_seconds" in err


def test_show(runs):
    rc, out, err = _invoke("runs", "show", str(runs["a"]), "--json")
    assert rc == 0, err
    shown = json.loads(out)
    assert shown["status"] == "completed" and shown["config"]["lr"] == 0.004 and shown["metrics"]["primary"] == "test_acc"
    files = {Path(f["path"]).name for f in shown["files"]}
    assert {"config.json", "manifest.json", "metrics.json", "history.jsonl", "predictions.jsonl"} <= files
    assert runs["a"].name in files  # the weights, under checkpoints/train-moe/<run_id>
    assert err.index("test_acc") < err.index("val_acc")  # headline first
    rc, out, err = _invoke("runs", "show", runs["killed"].name)  # by run id
    assert rc == 0 and "stopped (killed?)" in err and "--resume" in err


def test_diff_lists_the_option_that_differs(runs):
    rc, out, err = _invoke("runs", "diff", str(runs["a"]), str(runs["b"]), "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["options"] == [{"option": "lr", "a": 0.004, "b": 0.01}]
    ma, mb = (json.loads((runs[k] / "metrics.json").read_text()) for k in "ab")
    acc = next(m for m in d["metrics"] if m["metric"] == "test_acc")
    assert acc == {"metric": "test_acc", "a": ma["test_acc"], "b": mb["test_acc"],
                   "diff": mb["test_acc"] - ma["test_acc"]}
    assert "lr" in err and "B - A" in err


def test_compare_is_the_shared_paired_test(runs):
    rc, out, err = _invoke("runs", "compare", str(runs["a"]), str(runs["b"]), "--json")
    assert rc == 0, err
    got = json.loads(out)
    a, b = ({r["id"]: r["correct"] for r in read_jsonl(runs[k] / "predictions.jsonl")} for k in "ab")
    want = paired_correctness(a, b, f"A ({runs['a'].name})", f"B ({runs['b'].name})")
    for key in ("n_shared", "both_right", "only_a_right", "only_b_right", "both_wrong", "acc_a", "acc_b", "diff",
                "diff_low", "diff_high", "mcnemar_p", "beyond_noise", "verdict"):
        assert got[key] == want[key], key
    assert got["n_shared"] == 360 and want["verdict"] in err


def test_compare_refuses_what_it_cannot_pair(runs, tmp_path):
    rc, _, err = _invoke("runs", "compare", str(runs["a"]), str(runs["history"]))
    assert rc == 2 and "train-moe run and B a analyze-history run" in err
    rc, _, err = _invoke("runs", "compare", str(runs["a"]), str(runs["failed"]))
    assert rc == 2 and "no predictions.jsonl" in err
    moved = tmp_path / "moved"  # the same run, its items renumbered: nothing shared
    shutil.copytree(runs["b"], moved)
    lines = [json.loads(x) for x in (moved / "predictions.jsonl").read_text().splitlines()]
    (moved / "predictions.jsonl").write_text("".join(json.dumps({**r, "id": r["id"] + 10_000}) + "\n" for r in lines))
    rc, _, err = _invoke("runs", "compare", str(runs["a"]), str(moved))
    assert rc == 2 and "share no predicted item" in err


def test_bad_input(runs, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    for args in (("show", str(tmp_path)), ("diff", str(runs["a"]), str(tmp_path))):
        rc, _, err = _invoke("runs", *args)
        assert rc == 2 and "not an nlab run folder (no manifest.json" in err, args
    rc, _, err = _invoke("runs", "show", "no-such-run")
    assert rc == 2 and "no such folder" in err
    for expr in ("lr", "lr~3", "=3", "lr="):
        rc, _, err = _invoke("runs", "list", "--where", expr)
        assert rc == 2 and f"--where {expr!r}" in err and "KEY=VALUE, KEY!=VALUE, KEY>VALUE" in err, expr
    for args, named in ((("--since", "yesterday"), "--since"), (("--status", "done"), "--status"),
                        (("--phase", "train"), "--phase"), (("/no/such/folder",), "/no/such/folder")):
        rc, _, err = _invoke("runs", "list", *args)
        assert rc == 2 and named in err, args


def test_gc_never_touches_a_run_whose_lock_is_held(tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    (live / "manifest.json").write_text(json.dumps({"phase": "train-moe", "status": "running",
                                                    "start_time": "2026-12-01T10:00:00+00:00"}))
    fd = os.open(live / "run.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert listed(str(tmp_path))[0]["status"] == "running"
        rc, out, err = _invoke("runs", "gc", str(tmp_path), "--yes", "--json")
        assert rc == 0 and json.loads(out)["count"] == 0 and live.is_dir()
    finally:
        os.close(fd)
    assert listed(str(tmp_path))[0]["status"] == "stopped"


def test_paired_losses_is_a_paired_bootstrap():
    a = [2.0 + 0.01 * (i % 7) for i in range(50)]
    b = [x - 0.05 + 0.002 * (i % 3) for i, x in enumerate(a)]
    c = paired_losses(a, b, "A", "B")
    assert (c["diff"], c["diff_low"], c["diff_high"]) == paired_bootstrap_diff(a, b)
    assert c["beyond_noise"] and c["verdict"].startswith("B is better beyond noise (0.04") and "n=50" in c["verdict"]
    assert paired_losses(a, a)["verdict"].startswith("A and B differ within noise")


def test_compare_apoptosis_runs_is_a_paired_bootstrap_on_block_losses(tmp_path):
    tiny = ("apoptosis", "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size",
            "8", "--eval-iters", "2", "--device", "cpu", "--max-iters", "20", "--eval-interval", "10")
    for name, seed in (("p", "0"), ("q", "1")):
        rc, _, err = _invoke(*tiny, "--seed", seed, "--out", str(tmp_path / name))
        assert rc == 0, err
    rc, out, err = _invoke("runs", "compare", str(tmp_path / "p"), str(tmp_path / "q"), "--json")
    assert rc == 0, err
    got = json.loads(out)
    a, b = (json.loads((tmp_path / k / "val_block_losses.json").read_text()) for k in "pq")
    want = paired_losses(a, b, "A (p)", "B (q)")
    for key in ("n_shared", "mean_a", "mean_b", "diff", "diff_low", "diff_high", "beyond_noise", "verdict"):
        assert got[key] == want[key], key
    assert got["test"].startswith("paired bootstrap") and want["verdict"] in err


def test_gc_lists_then_deletes_failed_and_killed_runs(runs):
    """Last: it deletes runs of the shared lab."""
    ckpts = runs["a"].parents[2] / "checkpoints" / "train-moe"
    rc, out, err = _invoke("runs", "gc", "--json")
    assert rc == 0, err
    listed_gc = {Path(r["run_dir"]): r for r in json.loads(out)["runs"]}
    assert set(listed_gc) == {runs["failed"], runs["killed"]}
    assert listed_gc[runs["killed"]]["checkpoint_dir"] == str(ckpts / runs["killed"].name)
    assert runs["failed"].is_dir() and "gc --yes" in err  # listed only
    rc, out, err = _invoke("runs", "gc", "--yes", "--json")
    assert rc == 0, err
    assert all(r["deleted"] for r in json.loads(out)["runs"])
    assert not runs["failed"].exists() and not runs["killed"].exists()
    assert not (ckpts / runs["killed"].name).exists()
    for k in ("a", "b", "history"):
        assert (runs[k] / "metrics.json").is_file()
    assert (ckpts / runs["a"].name / "last.pt").is_file() and (ckpts / runs["b"].name / "best.pt").is_file()
    assert {Path(r["run_dir"]) for r in listed()} == {runs["a"], runs["b"], runs["history"]}


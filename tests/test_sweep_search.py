"""`nlab sweep` end to end with real train-moe runs on digits: a grid sweep killed mid-way resumes running only
the unfinished trial and pipes its best configuration's seeds into ensemble-vote; a TPE study killed with
SIGKILL resumes from its SQLite storage without losing or repeating a finished trial; bad input exits 2 with
nothing written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import nlab_executable
from phases.core.jsonio import read_json, read_jsonl

RECIPE = ["--", "--epochs", "2", "--train-limit", "300", "--experts", "4"]  # a few seconds per run


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([nlab_executable(), "sweep", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _kill_when(proc: subprocess.Popen, predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    try:
        while not predicate():
            if proc.poll() is not None or time.monotonic() > end:
                pytest.fail(f"the sweep ended or timed out before {what}")
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its runs, as a crash would
        proc.wait()


def _trials(sweep: Path) -> list[dict]:
    path = sweep / "trials.jsonl"
    return read_jsonl(path) if path.is_file() else []


def test_killed_grid_resumes_only_the_unfinished_trial_then_pipes_into_ensemble(nlab, nlab_home):
    sweep = nlab_home / "grid"
    args = ["train-moe", "--param", "lr=1e-3,4e-3", "--seeds", "2", "--workers", "2"]
    proc = _start(*args, "--out", str(sweep), *RECIPE)
    _kill_when(proc, lambda: len(_trials(sweep)) == 1 and (sweep / "configs" / "lr=0.004" / "seed-0").is_dir(),
               120, "trial 0 finished and trial 1 started")
    assert read_json(sweep / "manifest.json")["status"] == "running"  # SIGKILL: nothing could mark it
    first = (sweep / "configs" / "lr=0.001" / "seed-0" / "metrics.json").read_bytes()

    bad = nlab("sweep", "train-moe", "--param", "lr=1e-3,2e-3", "--seeds", "2", "--resume", str(sweep), *RECIPE)
    assert bad.returncode == 2 and "params" in bad.stderr and bad.stdout == "", bad.stderr
    assert len(_trials(sweep)) == 1  # the refused resume ran and wrote nothing

    res = nlab("sweep", "--resume", str(sweep), "--json")  # phase, params, options: the sweep's own
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)
    assert [t["trial"] for t in _trials(sweep)] == [0, 1]  # one record per trial: none lost, none written twice
    assert (sweep / "configs" / "lr=0.001" / "seed-0" / "metrics.json").read_bytes() == first  # not rerun
    assert (sweep / "configs" / "lr=0.004" / "seed-0.attempt1").is_dir()  # the killed run, set aside
    assert m["n_trials"] == 2 and m["baseline_trial"] == 0 and m["configs"][0]["vs_baseline"] is None
    assert m["configs"][1]["vs_baseline"]["verdict"]  # in words, whichever it is
    best = m["configs"][m["best_trial"]]
    other = m["configs"][1 - m["best_trial"]]
    assert best["select_mean"] >= other["select_mean"]  # chosen on validation
    assert {t["seed"] for t in m["top_k"]} == {0, 1} and Path(m["plots"][0]).is_file()

    ens = nlab("ensemble-vote", "-", "--top-k", "2", "--json", input=res.stdout)
    assert ens.returncode == 0, ens.stderr
    e = json.loads(ens.stdout)
    assert [x["run_dir"] for x in e["members"]] == [t["run_dir"] for t in m["top_k"]]
    assert all(Path(x["run_dir"]).parent.name == m["best_config"] for x in e["members"])


def test_tpe_killed_and_resumed_from_sqlite_loses_and_repeats_no_trial(nlab, nlab_home):
    optuna = pytest.importorskip("optuna")
    sweep = nlab_home / "tpe"
    storage = f"sqlite:///{sweep / 'study.db'}"

    def states():
        if not (sweep / "study.db").is_file():
            return []
        try:
            return [t.state.name for t in optuna.load_study(study_name="sweep", storage=storage).trials]
        except Exception:  # the study is being created
            return []

    proc = _start("train-moe", "--design", "tpe", "--trials", "2", "--pruner", "none", "--param",
                  "lr=log:1e-3..1e-2", "--seeds", "1", "--baseline", "none", "--out", str(sweep), *RECIPE)
    _kill_when(proc, lambda: states() == ["COMPLETE", "RUNNING"], 120, "trial 0 complete, trial 1 running")
    before = optuna.load_study(study_name="sweep", storage=storage).trials
    kept = (before[0].number, before[0].params, before[0].value)

    res = nlab("sweep", "--resume", str(sweep), "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)
    after = optuna.load_study(study_name="sweep", storage=storage).trials
    assert (after[0].number, after[0].params, after[0].value) == kept  # the finished trial, untouched
    assert [t.state.name for t in after] == ["COMPLETE", "FAIL", "COMPLETE"]  # 1 interrupted, then retried as 2
    assert after[2].user_attrs["retry_of"] == 1 and after[2].params == before[1].params
    assert [r["trial"] for r in _trials(sweep)] == [0, 2]  # finished trials recorded once each
    assert m["tpe"]["n_complete"] == 2 and m["tpe"]["n_interrupted"] == 1 and m["n_trials"] == 2
    assert {Path(p).name for p in m["plots"]} == {"configs.png", "tpe_history.png"}
    assert m["baseline_trial"] is None and all("vs_baseline" not in r for r in m["configs"])  # --baseline none


@pytest.mark.parametrize("args, says", [
    (["nosuch", "--param", "lr=1,2"], "not a phase a sweep can run"),
    (["train-moe", "--param", "lrr=1e-3,2e-3"], "choose among: "),
    (["train-moe", "--param", "lr=1e-3..x"], "not a valid float"),
    (["train-moe", "--param", "strategy=joint..mixed"], "a range on a categorical option"),
    (["train-moe", "--design", "taguchi"] + [f"--param={o}=1,2,3" for o in (
        "epochs", "experts", "top-k", "d-model", "expert-hidden", "router-hidden", "width", "balance-coef",
        "z-coef", "route-weight", "lr", "eval-batch-size", "warmup-epochs", "grad-clip")],
     "more than the largest array holds"),  # 14 three-level factors: L27 holds 13
    (["train-moe", "--param", "lr=1e-3,2e-3", "--seeds", "1"], "comparing configurations across seeds"),
    (["train-moe", "--param", "lr=1e-3,2e-3", "--select", "test_acc", "--report", "val_acc"], "a test metric"),
    (["train-moe", "--param", "lr=1e-3,2e-3", "--", "--lr", "0.1"], "is swept"),
    (["train-moe", "--param", "lr=1e-3,2e-3", "--", "--epochs", "0"], "--epochs 0"),
    (["train-moe", "--param", "top-k=1,8", "--", "--experts", "4"], "--top-k 8: must be at most --experts"),
    (["train-moe", "--design", "tpe", "--param", "lr=1e-3,2e-3"], "needs --trials"),
    (["train-moe", "--param", "lr=1e-3,2e-3", "--baseline", "lr=5e-3"], "no configuration of the design"),
    (["train-moe"], "no --param given"),
])
def test_bad_input_exits_2_and_writes_nothing(cli, nlab_home, args, says):
    code, out, err = cli("sweep", *args)
    assert code == 2 and out == "", err
    assert says in " ".join(err.split()), err
    assert not (nlab_home / "logs").exists()

"""seed-sweep end to end with real train-moe runs on digits: a sweep killed mid-way resumes running only the seeds
that did not finish, the installed commands chain into ensemble-vote, and the Ray launcher runs a real local Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import nlab_executable
from phases.core.jsonio import read_json

# a short real recipe: a few seconds per seed on 2 cores
RECIPE = ["--", "--epochs", "2", "--train-limit", "300", "--experts", "4"]


def _wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_killed_sweep_resumes_only_missing_seeds_then_pipes_into_ensemble(nlab, nlab_home):
    sweep = nlab_home / "sweep"
    seeds = sweep / "seeds"
    # the installed command, killed (with its seed processes) while seed 1 runs
    proc = subprocess.Popen([nlab_executable(), "seed-sweep", "train-moe", "--seeds", "3", "--out", str(sweep),
                             "--json", *RECIPE], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait_for(lambda: (seeds / "seed-1").is_dir(), 120, "seed 1 to start")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert read_json(sweep / "manifest.json")["status"] == "running"  # SIGKILL: nothing could mark it
    assert (seeds / "seed-0" / "metrics.json").is_file() and not (seeds / "seed-1" / "metrics.json").is_file()
    seed0 = (seeds / "seed-0" / "metrics.json").read_bytes()

    # resuming with other phase options is refused before anything runs
    bad = nlab("seed-sweep", "train-moe", "--seeds", "3", "--resume", str(sweep), "--", "--epochs", "3")
    assert bad.returncode == 2 and "phase_args" in bad.stderr, bad.stderr

    res = nlab("seed-sweep", "--resume", str(sweep), "--json")  # phase, options and seeds: the sweep's own
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)
    assert m["n_completed"] == 3 and m["n_failed"] == 0
    assert [s["rerun"] for s in m["seeds"]] == [False, True, True]
    assert (seeds / "seed-0" / "metrics.json").read_bytes() == seed0  # the finished seed was left alone
    assert (seeds / "seed-1.attempt1").is_dir()  # the killed seed's folder is kept aside, not reused
    assert {t["seed"] for t in m["top_k"]} == {0, 1, 2} and Path(m["plot"]).is_file()
    ranked = sorted(m["seeds"], key=lambda s: (-s["select"], s["seed"]))
    assert [t["seed"] for t in m["top_k"]] == [s["seed"] for s in ranked]  # chosen on val, never on test

    # the pipeline of the README: the sweep's JSON on stdin, its top 3 vote
    ens = nlab("ensemble-vote", "-", "--top-k", "3", "--method", "soft", "--json", input=res.stdout)
    assert ens.returncode == 0, ens.stderr
    e = json.loads(ens.stdout)
    assert e["n_members"] == 3 and e["n"] == 360
    assert [Path(x["run_dir"]).name for x in e["members"]] == [f"seed-{t['seed']}" for t in m["top_k"]]


def test_ray_launcher_runs_seeds_on_a_local_ray(cli, nlab_home):
    pytest.importorskip("ray", reason="ray is not installed (the `distributed` extra; `make test` installs it)")
    code, out, err = cli("seed-sweep", "train-moe", "--seeds", "2", "--launcher", "ray", "--num-cpus", "1",
                         "--json", *RECIPE)
    assert code == 0, err
    m = json.loads(out)
    assert m["n_completed"] == 2 and all(s["rerun"] for s in m["seeds"])
    for s in m["seeds"]:
        assert read_json(Path(s["run_dir"]) / "manifest.json")["status"] == "completed"


@pytest.mark.parametrize("args, expect", [
    (["--select", "test_acc", "--report", "test_acc"], "reported on the data it was chosen on"),
    (["--select", "test_acc", "--report", "val_acc"], "--select test_acc: a test metric of train-moe"),
    (["--select", "val_acc", "--report", "val_acc"], "reported on the data it was chosen on"),
])
def test_selection_on_test_data_refused_before_any_seed(cli, nlab_home, args, expect):
    code, out, err = cli("seed-sweep", "train-moe", "--seeds", "2", *args, "--", "--epochs", "1")
    assert code == 2 and expect in " ".join(err.split()) and out == "", err
    assert not (nlab_home / "logs").exists()  # refused before anything ran or was written


def test_phase_registry_is_the_one_list():
    from nlab_cli.main import app
    from phases import registry
    from phases.sweep.config import SWEEPABLE

    assert [c.name for c in app.registered_commands] == [p.command for p in registry.PHASES if not p.group]
    assert [g.name for g in app.registered_groups] == [p.command for p in registry.PHASES if p.group]
    assert SWEEPABLE == ("train-moe", "apoptosis", "ewc", "eval-gsm8k", "train-lora")
    moe = registry.get("train-moe")
    assert moe.is_test_metric("test_acc") and moe.is_val_metric("val_acc") and not moe.is_test_metric("val_acc")
    for p in registry.PHASES:  # every entry points at a real command and config
        assert callable(p.load("cli")) and p.load("config").__dataclass_fields__

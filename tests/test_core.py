"""The shared core: run folders and their status, crash-safe files, seeding, devices, checkpoints, optimizer
schedule, statistics and voting."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from phases.core import jsonio, stats, voting
from phases.core.errors import InputError, RunFailed
from phases.core.runs import Run


def manifest(run_dir) -> dict:
    return json.loads((Path(run_dir) / "manifest.json").read_text())


# --- run folders -----------------------------------------------------------------------------------------------

def test_run_lifecycle_completed(nlab_home):
    with Run.create("demo", {"seed": 3, "device": "cpu"}, name="x1") as run:
        assert manifest(run.dir)["status"] == "running"
        run.log({"step": 1, "split": "train", "loss": 0.5})
        run.predict({"id": 0, "target": 1, "prediction": 1, "correct": True})
        metrics = run.write_metrics({"acc": 1.0}, primary="acc")
    assert run.dir.parent == nlab_home / "logs" / "demo" and run.dir.name.endswith("-x1")
    m = manifest(run.dir)
    assert m["status"] == "completed" and m["end_time"] and m["phase"] == "demo"
    assert m["versions"]["torch"] and m["python"] and m["host"]
    assert run.checkpoint_dir == nlab_home / "checkpoints" / "demo" / run.dir.name
    assert json.loads((run.dir / "config.json").read_text()) == {"seed": 3, "device": "cpu"}
    assert metrics["primary"] == "acc" and metrics["run_dir"] == str(run.dir)
    assert jsonio.read_jsonl(run.dir / "history.jsonl") == [{"step": 1, "split": "train", "loss": 0.5}]
    assert not [p for p in run.dir.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_run_failed_on_exception_and_ctrl_c(nlab_home):
    with pytest.raises(RunFailed):
        with Run.create("demo", {}) as run:
            raise RunFailed("non-finite loss at step 7")
    assert manifest(run.dir)["status"] == "failed"
    assert manifest(run.dir)["exit_reason"] == "non-finite loss at step 7"
    with pytest.raises(KeyboardInterrupt):
        with Run.create("demo", {}) as run2:
            raise KeyboardInterrupt
    assert manifest(run2.dir)["exit_reason"] == "interrupted (Ctrl-C)"
    with pytest.raises(ZeroDivisionError):
        with Run.create("demo", {}) as run3:
            1 / 0
    assert manifest(run3.dir)["exit_reason"].startswith("ZeroDivisionError")
    assert len({run.dir, run2.dir, run3.dir}) == 3  # created within a second, never reused


def test_sigterm_marks_the_run_failed(nlab_home, tmp_path):
    script = textwrap.dedent(f"""
        import time
        from phases.core.runs import Run
        with Run.create("demo", {{}}, out={str(tmp_path / 'run')!r}) as run:
            print("ready", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    m = manifest(tmp_path / "run")
    assert m["status"] == "failed" and "terminated by signal" in m["exit_reason"]


def test_out_folder_and_resume_checks(nlab_home, tmp_path):
    out = tmp_path / "run"
    with Run.create("demo", {"lr": 0.1}, out=out):
        pass
    assert (out / "manifest.json").is_file() and not (nlab_home / "logs").exists()
    with pytest.raises(InputError, match="already exists"):
        Run.create("demo", {}, out=out)
    with pytest.raises(InputError, match="'demo' run, not 'other'"):
        Run.resume(out, "other")
    with pytest.raises(InputError, match="not an nlab run folder"):
        Run.resume(tmp_path, "demo")
    run = Run.resume(out, "demo")
    run.check_same_config({"lr": 0.1})
    with pytest.raises(InputError, match=r"--lr 0.2 \(the run.s: 0.1\)"):
        run.check_same_config({"lr": 0.2})
    run.check_same_config({"lr": 0.1, "epochs": 5}, may_differ=("epochs",))
    with run:
        pass
    assert manifest(out)["resumes"][0]["previous_status"] == "completed"
    with pytest.raises(InputError, match="--name"):
        Run.create("demo", {}, name="../escape")


# --- crash-safe files ------------------------------------------------------------------------------------------

def test_jsonl_writer_cuts_the_record_in_flight(tmp_path):
    p = tmp_path / "h.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b"')  # killed mid-record
    assert jsonio.read_jsonl(p) == [{"a": 1}, {"a": 2}]  # readers skip it
    with jsonio.JsonlWriter(p) as w:  # a resumed writer removes it and appends after the last whole record
        w.write({"a": 3})
    assert p.read_text() == '{"a": 1}\n{"a": 2}\n{"a": 3}\n'


def test_jsonl_errors_name_file_and_line(tmp_path):
    p = tmp_path / "h.jsonl"
    p.write_text('{"a": 1}\n[1, 2]\n{"a": 3}\n')
    with pytest.raises(InputError, match=r"h\.jsonl:2: malformed JSON line"):
        jsonio.read_jsonl(p)
    bad: list[int] = []
    assert jsonio.read_jsonl(p, skip_bad_lines=True, bad=bad) == [{"a": 1}, {"a": 3}] and bad == [2]


def test_json_values_are_plain_and_finite(tmp_path):
    (tmp_path / "j").mkdir()
    p = tmp_path / "j" / "m.json"
    jsonio.atomic_write_json(p, {"x": np.float32(0.5), "n": np.int64(3), "bad": float("nan"), "arr": np.arange(2),
                                 "path": tmp_path})
    assert json.loads(p.read_text()) == {"x": 0.5, "n": 3, "bad": None, "arr": [0, 1], "path": str(tmp_path)}
    assert [f.name for f in p.parent.iterdir()] == ["m.json"]


# --- seeding, devices, checkpoints, optimizers ------------------------------------------------------------------

def test_seeding_and_rng_state_roundtrip():
    import torch

    from phases.core.seeding import rng_state, seed_everything, set_rng_state

    seed_everything(5)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    state = rng_state()
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == b


def test_checkpoint_roundtrip_weights_only(tmp_path):
    import torch

    from phases.core.checkpoint import load_checkpoint, save_checkpoint
    from phases.core.seeding import rng_state

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "ck" / "last.pt", {"model": model.state_dict(), "opt": opt.state_dict(),
                                                         "epoch": 2, "rng": rng_state()})
    state = load_checkpoint(path)
    assert state["epoch"] == 2 and torch.equal(state["model"]["weight"], model.weight.detach())
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable nlab checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(InputError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_device_resolution():
    import torch

    from phases.core.device import resolve_device

    assert resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    with pytest.raises(InputError, match="not a device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")


def test_schedule_optimizer_and_divergence():
    import torch

    from phases.core.training import Schedule, build_optimizer, check_finite

    schedule = Schedule(1e-3, 1e-4, 100, 2000)
    assert schedule.at(0) == pytest.approx(1e-3 / 101)
    assert schedule.at(100) == pytest.approx(1e-3)
    assert schedule.at(1050) == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert schedule.at(2000) == pytest.approx(1e-4)
    assert schedule.at(5000) == 1e-4
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model.named_parameters(), "sgd", 0.1, weight_decay=5e-4)
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]
    assert len(opt.param_groups[0]["params"]) == 1 and opt.param_groups[0]["nesterov"]
    with pytest.raises(InputError, match="--optimizer"):
        build_optimizer(model.named_parameters(), "lion", 0.1)
    with pytest.raises(RunFailed, match="step 12"):
        check_finite(float("nan"), 12)


# --- statistics and voting -------------------------------------------------------------------------------------

def test_statistics_against_known_values():
    low, high = stats.wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)  # textbook Wilson 95% interval for 8/10
    assert stats.mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert stats.mcnemar_exact(0, 0) == 1.0
    diff, lo, hi = stats.paired_bootstrap_diff([1] * 60 + [0] * 40, [0] * 60 + [0] * 40)
    assert diff == pytest.approx(0.6) and 0.45 < lo < 0.6 < hi < 0.75 and stats.beyond_noise(lo, hi)
    d, lo, hi = stats.bootstrap_diff_of_means([0.70, 0.71, 0.69, 0.72], [0.70, 0.69, 0.71, 0.70])
    assert lo < d < hi and not stats.beyond_noise(lo, hi)
    assert stats.lower_is_better("val_loss") and stats.lower_is_better("ppl")
    assert not stats.lower_is_better("test_acc")


def test_majority_vote_tie_breaks_are_deterministic():
    assert voting.majority_vote(["18", "18", "20"]) == ("18", 2)
    assert voting.majority_vote([None, None]) == (None, 0)
    assert voting.majority_vote([None, "3"]) == ("3", 1)  # abstentions do not vote
    tied = ["5", "7", "7", "5"]
    assert voting.majority_vote(tied, "first") == ("5", 2)
    assert voting.majority_vote(tied, "best-member", member_rank=[3, 0, 2, 1]) == ("7", 2)
    assert voting.majority_vote(tied, "confidence", confidences=[0.9, 0.2, 0.3, 0.9]) == ("5", 2)
    assert voting.majority_vote(tied, "confidence", confidences=[0.5, 0.5, 0.5, 0.5]) == ("5", 2)
    for _ in range(3):  # same input, same answer, every time
        assert voting.majority_vote(["b", "a"], "first") == ("b", 1)
    winner, mean = voting.soft_vote([[0.2, 0.8], [0.6, 0.4]])
    assert winner == 1 and mean == pytest.approx([0.4, 0.6])
    assert voting.soft_vote([[0.5, 0.5]])[0] == 0
    with pytest.raises(ValueError):
        voting.majority_vote(["a"], "coin")


def test_progress_is_silent_off_a_terminal(capfd):
    from phases.core.render import progress

    with progress(10, "work") as p:
        for _ in range(10):
            p.advance()
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # stderr is not a terminal under pytest: no bar, no noise

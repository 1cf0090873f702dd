"""nlab ewc end to end on real data (tiny step counts): the comparison table's numbers, R, heatmaps, histories that
analyze-history reads, predictions, each scenario's own outputs, and every kind of bad input (exit 2, the option
named, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phases.core.jsonio import read_jsonl
from phases.ewc.metrics import matrix_metrics


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Small models on a shared 2-core machine run several times faster on one thread (no spin-waiting on a busy
    core); torch's thread count is restored afterwards for the rest of the suite."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("NLAB_NUM_THREADS", "1")
    yield
    torch.set_num_threads(before)


def _run(cli, *args):
    code, out, err = cli("ewc", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_permuted_digits_end_to_end(cli, nlab, tmp_path):
    m = _run(cli, "--tasks-count", "3", "--steps", "20", "--method", "naive,ewc,l2,replay", "--fisher-samples",
             "64", "--buffer-size", "50", "--log-interval", "2", "--out", str(tmp_path / "run"))
    run = Path(m["run_dir"])
    assert m["primary"] == "ewc_average_acc" and m["n_test"] == [360, 360, 360]
    for method in ("naive", "ewc", "l2", "replay"):
        per = m["methods"][method]
        assert len(per["R"]) == 3 and all(len(row) == 3 for row in per["R"])
        # the flat keys are the shared metric definitions applied to the stored matrix
        again = matrix_metrics(per["R"], [0, 1, 2])
        assert m[f"{method}_average_acc"] == pytest.approx(again["average"])
        assert m[f"{method}_mean_forgetting"] == pytest.approx(again["mean_forgetting"])
        assert (run / "methods" / method / "R.png").stat().st_size > 1000
        preds = read_jsonl(run / "methods" / method / "predictions.jsonl")
        assert len(preds) == 3 * 360 and {"id", "target", "prediction", "correct", "probs", "task"} <= set(preds[0])
        hist = read_jsonl(run / "methods" / method / "history.jsonl")
        tagged = [r for r in hist if r["split"] == "test" and r["stage"] == "perm3" and r["task"] == "perm1"]
        assert tagged and tagged[0]["acc"] == pytest.approx(per["R"][2][0])
        assert len(per["spikes"]) == 2
    # identical data and seed: every method's first stage is the same run
    assert len({tuple(m["methods"][k]["R"][0]) for k in ("naive", "ewc", "l2", "replay")}) == 1
    assert m["methods"]["ewc"]["fisher"].startswith("empirical per-sample (torch.func")
    assert m["methods"]["ewc"]["vs_naive"]["paired"]["n_items"] == 3 * 360
    assert sum(m["methods"]["replay"]["buffer"].values()) == 50
    # analyze-history reads a method's history (stages, task-tagged evaluations) through the installed command
    p = nlab("analyze-history", str(run / "methods" / "naive"), "--json", "--no-plot")
    assert p.returncode == 0, p.stderr
    boundaries = json.loads(p.stdout)["runs"][0]["boundaries"]
    assert [b["spike_factor"] for b in boundaries] == pytest.approx(
        [s["spike_factor"] for s in m["methods"]["naive"]["spikes"]])


def test_split_digits_single_head_and_moe_with_batch_fisher(cli, tmp_path):
    m = _run(cli, "--scenario", "split-digits", "--heads", "single", "--model", "moe", "--steps", "4",
             "--method", "naive,ewc", "--fisher", "batch", "--fisher-samples", "32", "--heatmap", "--out",
             str(tmp_path / "r"))
    assert m["tasks"] == ["digits0-4", "digits5-9"] and m["model"] == "moe"
    assert m["methods"]["ewc"]["fisher"].startswith("batch")
    assert sum(m["n_test"]) == 360


def test_moe_multitask_digits_then_sst2(cli, tmp_path):
    m = _run(cli, "--scenario", "moe-multitask", "--method", "naive,replay", "--steps", "2", "--train-limit", "100",
             "--eval-limit", "40", "--buffer-size", "20", "--out", str(tmp_path / "r"))
    assert m["tasks"] == ["digits", "sst2"] and m["n_test"] == [40, 40] and m["model"] == "moe"
    assert m["data"]["test_splits"] == ["test", "dev"]
    assert m["methods"]["replay"]["buffer"] == {"digits": 20}


def test_scan_curriculum_mixed_gated(cli, tmp_path):
    m = _run(cli, "--scenario", "scan", "--method", "naive,mixed,gated", "--steps", "3", "--train-limit", "64",
             "--eval-limit", "12", "--mix", "100:0,50:50,20:80", "--n-embd", "32", "--out", str(tmp_path / "r"))
    assert m["tasks"] == ["base", "modified"] and m["n_test"] == [12, 12]
    mixed = m["methods"]["mixed"]
    assert [s["mix"] for s in mixed["stages"]] == [{"base": 1.0}, {"base": 0.5, "modified": 0.5},
                                                    {"base": 0.2, "modified": 0.8}]
    assert [s["mix"] for s in m["methods"]["naive"]["stages"]] == [{"base": 1.0}, {"modified": 1.0},
                                                                    {"modified": 1.0}]
    for k in ("base_retention", "modification_success", "targets_hit"):
        assert k in mixed
    gates = m["methods"]["gated"]["gates"]["mean_gate_by_task"]
    assert set(gates) == {"base", "modified"} and all(0 < g < 1 for g in gates["base"])
    assert m["data"]["base"]["n_train"] == 64 and 0 <= m["data"]["modified_test_seen_in_base_train"] <= 1
    preds = read_jsonl(Path(m["run_dir"]) / "methods" / "naive" / "predictions.jsonl")
    assert len(preds) == 24 and " -> " in preds[0]["id"]


def test_shakespeare_wikitext_loss_matrix(cli, tmp_path):
    m = _run(cli, "--scenario", "shakespeare-wikitext", "--method", "naive,ewc", "--steps", "3", "--eval-limit",
             "16", "--n-embd", "32", "--block-size", "32", "--fisher-samples", "8", "--out", str(tmp_path / "r"))
    assert m["metric"] == "loss" and m["higher_is_better"] is False
    assert m["tasks"] == ["tinyshakespeare", "wikitext2"] and m["n_test"] == [16, 16]
    R = m["methods"]["naive"]["R"]
    assert m["methods"]["naive"]["forgetting"][0] == pytest.approx(R[1][0] - R[0][0])



def test_reconsolidation_with_neuron_turnover_and_stage_diff(cli, tmp_path):
    m = _run(cli, "--scenario", "shakespeare-wikitext", "--method", "naive,apoptosis", "--reconsolidate",
             "--steps", "6", "--turnover-interval", "3", "--maturity", "1", "--prune-rate", "0.1", "--eval-limit",
             "12", "--n-embd", "32", "--block-size", "32", "--stage-diff", "--out", str(tmp_path / "r"))
    run = Path(m["run_dir"])
    naive, apo = m["methods"]["naive"], m["methods"]["apoptosis"]
    assert [s["name"] for s in naive["stages"]] == ["tinyshakespeare", "wikitext2", "tinyshakespeare-2"]
    # the first stage trains the same model on the same batches: every method meets the shift from the same weights
    assert apo["R"][0] == naive["R"][0]
    for method, per in (("naive", naive), ("apoptosis", apo)):
        R, rec = per["R"], per["reconsolidation"]
        assert (rec["first_before_shift"], rec["first_after_shift"], rec["first_after_return"]) == (
            R[0][0], R[1][0], R[2][0])
        assert (rec["second_after_shift"], rec["second_after_return"]) == (R[1][1], R[2][1])
        assert m[f"{method}_first_after_return"] == R[2][0]
        # per-window losses after every stage, and the stage diff computed from exactly those
        staged = read_jsonl(run / "methods" / method / "stage_predictions.jsonl")
        assert len(staged) == 3 * 2 * 12 and {r["stage"] for r in staged} == {s["name"] for s in per["stages"]}
        first = [r["loss"] for r in staged if r["stage"] == "wikitext2" and r["task"] == "tinyshakespeare"]
        second = [r["loss"] for r in staged if r["stage"] == "tinyshakespeare-2" and r["task"] == "tinyshakespeare"]
        row = next(d for d in per["stage_diff"] if d["to"] == "tinyshakespeare-2" and d["task"] == "tinyshakespeare")
        assert row["n"] == 12 and row["improved"] == sum(b < a for a, b in zip(first, second))
        assert row["diff"] == pytest.approx(sum(second) / 12 - sum(first) / 12)
    turnover = apo["turnover"]
    # events every 3 steps in the two stages after the first (6 steps each), none in the first
    assert turnover["n_events"] == 4 and [e["stage"] for e in turnover["events"]] == ["wikitext2"] * 2 + [
        "tinyshakespeare-2"] * 2
    assert turnover["neurons_replaced"] > 0
    assert apo["vs_naive"]["paired"]["n_items"] == 24


def test_gate_from_both_inputs_with_per_item_gates(cli, tmp_path):
    m = _run(cli, "--scenario", "scan", "--method", "gated", "--gate-input", "both", "--steps", "3",
             "--train-limit", "64", "--eval-limit", "12", "--mix", "100:0,0:100", "--n-embd", "32",
             "--out", str(tmp_path / "r"))
    gated = m["methods"]["gated"]
    layers = gated["gates"]["layers"]
    assert gated["gates"]["gate_input"] == "both" and layers
    preds = read_jsonl(Path(m["run_dir"]) / "methods" / "gated" / "predictions.jsonl")
    assert len(preds) == 24
    for p in preds:
        assert 0 < p["gate"] < 1 and len(p["gate_by_layer"]) == len(layers)
        assert p["gate"] == pytest.approx(sum(p["gate_by_layer"]) / len(layers), abs=1e-4)
    # the stage diff on correctness: fixed and broken items are those whose correctness changed
    staged = read_jsonl(Path(m["run_dir"]) / "methods" / "gated" / "stage_predictions.jsonl")
    before = {(r["task"], r["id"]): r["correct"] for r in staged if r["stage"] == "base"}
    after = {(r["task"], r["id"]): r["correct"] for r in staged if r["stage"] == "modified"}
    row = next(d for d in gated["stage_diff"] if d["task"] == "modified")
    assert row["fixed"] == sum(after[k] and not before[k] for k in after if k[0] == "modified")
    assert row["broken"] == sum(before[k] and not after[k] for k in after if k[0] == "modified")


BAD = [
    (["--ewc-lambda", "-1"], "--ewc-lambda"),
    (["--scenario", "scan", "--mix", ""], "--mix"),
    (["--scenario", "scan", "--mix", "100:0,60:30"], "--mix"),
    (["--buffer-size", "100000"], "--buffer-size"),
    (["--method", "mixed"], "--method mixed does not apply"),
    (["--method", "naive,dropout"], "--method"),
    (["--method", ""], "--method"),
    (["--scenario", "cifar"], "--scenario"),
    (["--model", "moe", "--scenario", "scan"], "--model"),
    (["--gamma", "1.5"], "--gamma"),
    (["--fisher-samples", "0"], "--fisher-samples"),
    (["--method", "naive,apoptosis"], "--method apoptosis does not apply"),
    (["--scenario", "scan", "--reconsolidate"], "--reconsolidate"),
    (["--scenario", "shakespeare-wikitext", "--method", "apoptosis", "--steps", "10", "--turnover-interval", "10"],
     "--turnover-interval"),
    (["--scenario", "scan", "--method", "gated", "--gate-input", "output"], "--gate-input"),
    (["--prune-rate", "0"], "--prune-rate"),
]


@pytest.mark.parametrize("args, named", BAD)
def test_bad_input_exit_2_nothing_written(cli, nlab_home, args, named):
    code, out, err = cli("ewc", *args)
    assert code == 2 and named in err and out == ""
    assert not (nlab_home / "logs").exists() or not any((nlab_home / "logs").rglob("*.json"))


def test_missing_dataset_lists_the_files(nlab, tmp_path, nlab_home):
    p = nlab("ewc", "--scenario", "scan", "--data-dir", str(tmp_path))
    assert p.returncode == 2
    assert "tasks_train_simple.txt" in p.stderr and "tasks_test_addprim_jump.txt" in p.stderr
    assert not (nlab_home / "logs").exists()


def test_killed_run_resumes_keeping_finished_methods(cli, nlab, tmp_path):
    import os
    import signal
    import subprocess
    import time

    from conftest import nlab_executable

    args = ["--tasks-count", "3", "--steps", "300", "--method", "naive,ewc", "--fisher-samples", "64",
            "--deterministic", "--no-heatmap"]
    run = tmp_path / "killed"
    proc = subprocess.Popen([nlab_executable(), "ewc", *args, "--out", str(run)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    end = time.monotonic() + 300
    while not (run / "methods" / "naive" / "result.json").is_file():
        assert proc.poll() is None and time.monotonic() < end, "naive never finished"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # while ewc trains
    proc.wait()
    assert not (run / "methods" / "ewc" / "result.json").exists() and not (run / "metrics.json").exists()
    naive_history = (run / "methods" / "naive" / "history.jsonl").read_bytes()

    code, _, err = cli("ewc", "--resume", str(run), "--steps", "100")  # another option: refused, named
    assert code == 2 and "--steps 100" in err
    resumed = _run(cli, "--resume", str(run))  # the run's own options
    whole = _run(cli, *args, "--out", str(tmp_path / "whole"))
    assert resumed["run_dir"] == str(run)
    assert (run / "methods" / "naive" / "history.jsonl").read_bytes() == naive_history  # kept, not rerun
    for method in ("naive", "ewc"):
        assert resumed["methods"][method]["R"] == whole["methods"][method]["R"]
        for f in ("history.jsonl", "predictions.jsonl"):
            assert (run / "methods" / method / f).read_bytes() == (tmp_path / "whole" / "methods" / method / f
                                                                    ).read_bytes(), (method, f)
    assert resumed["ewc_average_acc"] == whole["ewc_average_acc"]
    code, _, err = cli("ewc", "--resume", str(run))
    assert code == 2 and "already completed" in err

"""train-moe: the MoE layer against a per-token reference, the balance loss on real features, real training runs
on digits / SST-2 / CIFAR-format files written here, multi-task masks, exact resume after a non-finite loss, and
every kind of bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from phases.core.data.classification import prepare_task
from phases.core.jsonio import read_jsonl
from phases.core.models import moe
from phases.core.models.moe import MoELayer, balance_loss
from phases.core.models.moe_classifier import MoEModelConfig, build_model, training_loss, LossWeights

QUICK = ("--epochs", "4", "--train-limit", "400", "--batch-size", "32")


def train(cli, *args: str) -> dict:
    code, out, err = cli("train-moe", *args, "--json")
    assert code == 0, err
    return json.loads(out)


# --- the layer -------------------------------------------------------------------------------------------------

def reference_moe(layer: MoELayer, x: torch.Tensor, capacity: int | None) -> torch.Tensor:
    """One token at a time: sum of gate * expert(x) over the token's top-k experts, skipping assignments past an
    expert's capacity (first choices of all tokens before second choices, each in token order)."""
    probs = layer.router(x).softmax(-1)
    top, idx = probs.topk(layer.top_k, -1)
    gates = top / top.sum(-1, keepdim=True)
    used = [0] * layer.n_experts
    out = torch.zeros(x.shape[0], layer.w2.shape[2])
    for j in range(layer.top_k):
        for t in range(x.shape[0]):
            e = int(idx[t, j])
            if capacity is not None and used[e] >= capacity:
                continue
            used[e] += 1
            h = torch.nn.functional.gelu(x[t] @ layer.w1[e] + layer.b1[e])
            out[t] += gates[t, j] * (h @ layer.w2[e] + layer.b2[e])
    return out


@pytest.mark.parametrize("grouped", [False, True], ids=["padded-bmm", "grouped-slices"])
@pytest.mark.parametrize("capacity_factor", [0.0, 0.5])
def test_dispatch_matches_per_token_reference(capacity_factor, grouped, monkeypatch):
    # both dispatch paths: the padded batched matmul (small batches) and per-expert slices (large batches)
    monkeypatch.setattr(moe, "GROUPED_MIN_TOKENS_PER_EXPERT", 1 if grouped else 10**9)
    torch.manual_seed(0)
    layer = MoELayer(16, n_experts=5, top_k=2, hidden=24, capacity_factor=capacity_factor)
    x = torch.randn(40, 16, requires_grad=True)
    y, routing = layer(x)
    cap = layer.capacity(40)
    assert torch.allclose(y, reference_moe(layer, x, cap), atol=1e-5)
    dropped = 1 - routing.kept.float().mean().item()
    assert (dropped > 0) == (capacity_factor > 0)  # 0.5 * 40 * 2 / 5 = 8 slots for 16 assignments on average
    y.sum().backward()
    assert x.grad is not None and layer.w1.grad.abs().sum() > 0 and layer.router.net.weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def digits():
    return prepare_task("digits", seed=0)


def test_digits_splits_are_fixed_and_disjoint(digits):
    assert len(digits.test) == 360 and len(digits.train) + len(digits.val) == 1437
    assert not set(digits.train.ids) & set(digits.val.ids)
    again = prepare_task("digits", seed=0)
    assert again.val.ids == digits.val.ids
    assert prepare_task("digits", seed=1).val.ids != digits.val.ids
    assert torch.equal(prepare_task("digits", seed=1).test.y, digits.test.y)  # the test split never moves


def test_balance_loss_one_when_uniform_grows_when_collapsed(digits):
    torch.manual_seed(0)
    model = build_model([digits], MoEModelConfig(experts=12, top_k=2))
    model.eval()
    with torch.no_grad():
        h = model.features(digits.train.x[:600], 0)
        router = model.moe.router.net
        router.weight.zero_()
        router.bias.zero_()
        _, uniform = model.classify(h, 0)
        assert torch.allclose(uniform.probs, torch.full_like(uniform.probs, 1 / 12))
        assert balance_loss(uniform.probs, uniform.experts) == pytest.approx(1.0, abs=1e-6)
        losses = []
        for bias in (0.5, 2.0, 8.0):  # more and more of the probability on experts 0 and 1
            router.bias[:2] = bias
            _, r = model.classify(h, 0)
            losses.append(float(balance_loss(r.probs, r.experts)))
    assert 1.0 < losses[0] < losses[1] < losses[2]
    assert losses[2] == pytest.approx(6.0, rel=0.01)  # all on 2 of 12 experts at prob 1/2 each: 12 * 2 * (1/2)^2


def test_training_loss_parts(digits):
    torch.manual_seed(0)
    model = build_model([digits], MoEModelConfig(experts=10))
    x, y = digits.train.x[:64], digits.train.y[:64]
    loss, stats = training_loss(model, x, y, 0, LossWeights(balance=0.5, z=0.1, route=2.0))
    expected = stats["task_loss"] + 0.5 * stats["balance_loss"] + 0.1 * stats["z_loss"] + 2.0 * stats["route_loss"]
    assert loss.item() == pytest.approx(float(expected), rel=1e-5)
    assert int(stats["expert_counts"].sum()) == 64 * 2
    _, forced = training_loss(model, x, y, 0, LossWeights(), route_by_assignment=True)
    assert torch.equal(model.assignment[0][:10], torch.arange(10))  # class c -> expert c mod 10
    assert forced["expert_counts"].tolist() == torch.bincount(y, minlength=10).tolist()


# --- real runs -------------------------------------------------------------------------------------------------

def test_digits_run_metrics_predictions_history(cli, nlab_home):
    m = train(cli, *QUICK)
    run = Path(m["run_dir"])
    assert m["primary"] == "test_acc" and m["test_n"] == 360 and m["val_n"] == 144 and m["test_split"] == "test"
    assert m["test_acc"] > 0.5
    assert m["test_acc_ci_low"] < m["test_acc"] < m["test_acc_ci_high"]
    assert m["test_oracle_acc"] >= m["test_acc"]
    assert m["test_oracle_gap"] == pytest.approx(m["test_oracle_acc"] - m["test_acc"])
    assert sum(m["test_utilisation"]) == pytest.approx(1.0) and len(m["test_utilisation"]) == 12
    assert m["test_routing_acc"] is None  # joint routing has no assignment
    assert 0 <= m["test_router_entropy"] <= np.log(12) + 1e-9
    preds = read_jsonl(run / "predictions.jsonl")
    assert len(preds) == 360 and [p["id"] for p in preds] == list(range(360))
    assert sum(p["correct"] for p in preds) == m["test_correct"]
    assert all(abs(sum(p["probs"]) - 1) < 1e-4 and len(p["probs"]) == 10 and len(p["experts"]) == 2 for p in preds)
    assert all(p["prediction"] == int(np.argmax(p["probs"])) for p in preds)
    assert sum(p["oracle_correct"] for p in preds) / 360 == pytest.approx(m["test_oracle_acc"])
    hist = read_jsonl(run / "history.jsonl")
    # per epoch: training and validation only; the test split is evaluated once, on the epoch chosen on validation
    assert [(h["epoch"], h["split"]) for h in hist] == [(e, s) for e in (1, 2, 3, 4) for s in ("train", "val")]
    assert {"loss", "task_loss", "balance_loss", "z_loss", "acc", "lr", "utilisation"} <= set(hist[0])
    val = [h["acc"] for h in hist if h["split"] == "val"]
    assert m["select"] == "best-val" and m["selected_epoch"] == m["best_val_epoch"] == 1 + val.index(max(val))
    assert m["val_acc"] == max(val) == m["best_val_acc"]  # the chosen epoch's weights, evaluated again
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert (nlab_home / "checkpoints" / "train-moe" / run.name / "last.pt").is_file()
    from phases import registry  # every number it writes is one the registry lets seed-sweep select or report

    numeric = [k for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert [k for k in numeric if not registry.get("train-moe").writes_metric(k)] == []


@pytest.mark.parametrize("strategy", ["supervised", "two-phase", "mixed"])
def test_routing_strategies_learn_the_assignment(cli, strategy):
    m = train(cli, "--strategy", strategy, "--experts", "10", "--epochs", "8", "--train-limit", "1000")
    assert m["test_routing_acc"] is not None and m["test_oracle_acc"] >= m["test_acc"]
    assert m["test_routing_acc"] > 0.5, m["test_routing_acc"]  # class c -> expert c; chance is 0.1
    hist = read_jsonl(Path(m["run_dir"]) / "history.jsonl")
    stages = [h.get("stage") for h in hist if h["split"] == "train"]
    assert stages == (["experts"] * 4 + ["router"] * 4 if strategy == "two-phase" else [None] * 8)
    assert ("route_loss" in hist[0]) == (strategy != "two-phase")


def test_multitask_masks_keep_tasks_apart(cli):
    m = train(cli, "--tasks", "digits,sst2", "--task-masks", "--epochs", "1", "--train-limit", "300",
              "--batch-size", "32")
    t = m["tasks"]
    assert set(t) == {"digits", "sst2"} and t["sst2"]["test_n"] == 872 and t["sst2"]["test_split"] == "dev"
    assert m["test_acc"] == pytest.approx((t["digits"]["test_acc"] + t["sst2"]["test_acc"]) / 2)
    assert m["test_acc_digits"] == t["digits"]["test_acc"] and m["test_n"] == 360 + 872
    assert all(u == 0 for u in t["digits"]["test_utilisation"][6:]) and sum(t["digits"]["test_utilisation"]) == 1
    assert all(u == 0 for u in t["sst2"]["test_utilisation"][:6])
    assert t["sst2"]["test_expert_acc"][:6] == [None] * 6 and None not in t["sst2"]["test_expert_acc"][6:]
    preds = read_jsonl(Path(m["run_dir"]) / "predictions.jsonl")
    assert len(preds) == 360 + 872 and len({p["id"] for p in preds}) == len(preds)
    for p in preds:
        allowed = range(0, 6) if p["task"] == "digits" else range(6, 12)
        assert p["id"].startswith(p["task"] + ":") and all(e in allowed for e in p["experts"])
    hist = read_jsonl(Path(m["run_dir"]) / "history.jsonl")
    assert {(h["split"], h.get("task")) for h in hist} == {("train", None), ("val", "digits"), ("val", "sst2")}


def test_sst2_vocabulary_from_training_part_only():
    task = prepare_task("sst2", seed=0, train_limit=2000)
    from phases.core.data.sentences import read_labelled_tsv

    assert len(task.test) == 872 and len(task.train) == 2000
    train_sentences = read_labelled_tsv(Path(task.data_path) / "train.tsv")[0]
    seen = {w for i in task.train.ids for w in train_sentences[i].lower().split()}
    assert set(task.vocab.words[2:]) == seen
    assert (task.test.x == 1).any()  # dev words outside the training part map to <unk>


def test_nonfinite_loss_fails_then_resume_matches_uninterrupted(cli, monkeypatch, tmp_path):
    args = ("--epochs", "3", "--train-limit", "200", "--batch-size", "32", "--deterministic", "--device", "cpu")
    whole = train(cli, *args, "--out", str(tmp_path / "whole"))

    import phases.moe.train as moe_train

    real, calls = moe_train.training_loss, {"n": 0}
    steps_per_epoch = 7  # ceil(200 / 32)

    def nan_in_epoch_2(*a, **kw):
        loss, stats = real(*a, **kw)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] > steps_per_epoch + 2 else loss), stats

    monkeypatch.setattr(moe_train, "training_loss", nan_in_epoch_2)
    run_dir = tmp_path / "broken"
    code, _, err = cli("train-moe", *args, "--out", str(run_dir))
    assert code == 1 and "non-finite" in err
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "non-finite" in manifest["exit_reason"]
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    assert {h["epoch"] for h in read_jsonl(run_dir / "history.jsonl")} == {1}

    monkeypatch.setattr(moe_train, "training_loss", real)
    resumed = train(cli, "--resume", str(run_dir))  # the run's own options
    assert resumed["run_dir"] == str(run_dir)
    for key in ("test_acc", "val_acc", "test_loss", "train_loss", "test_oracle_acc", "test_utilisation", "steps"):
        assert resumed[key] == whole[key], key
    strip = lambda rows: [{k: v for k, v in r.items()} for r in rows]  # noqa: E731
    assert strip(read_jsonl(run_dir / "history.jsonl")) == strip(read_jsonl(tmp_path / "whole" / "history.jsonl"))
    assert read_jsonl(run_dir / "predictions.jsonl") == read_jsonl(tmp_path / "whole" / "predictions.jsonl")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["resumes"][0]["previous_status"] == "failed"
    code, _, err = cli("train-moe", *args, "--resume", str(run_dir))
    assert code == 2 and "already completed" in err


def test_select_last_reports_the_last_epoch(cli):
    m = train(cli, *QUICK, "--select", "last")
    assert m["select"] == "last" and m["selected_epoch"] == 4


def test_killed_run_resumes_alone_to_the_uninterrupted_result(cli, tmp_path):
    """kill -9 after the first epoch's checkpoint; `--resume RUN` alone (the run's own options) ends exactly where
    an uninterrupted run ends: metrics, history and predictions."""
    from conftest import kill_when

    args = ["train-moe", "--epochs", "4", "--train-limit", "300", "--batch-size", "32", "--deterministic",
            "--device", "cpu"]
    whole = train(cli, *args[1:], "--out", str(tmp_path / "whole"))
    killed = tmp_path / "killed"
    kill_when([*args, "--out", str(killed)], (killed / "checkpoints" / "last.pt").exists)
    assert json.loads((killed / "manifest.json").read_text())["status"] == "running"
    resumed = train(cli, "--resume", str(killed))
    for key in ("test_acc", "val_acc", "test_loss", "train_loss", "selected_epoch", "steps", "test_utilisation"):
        assert resumed[key] == whole[key], key
    assert read_jsonl(killed / "history.jsonl") == read_jsonl(tmp_path / "whole" / "history.jsonl")
    assert read_jsonl(killed / "predictions.jsonl") == read_jsonl(tmp_path / "whole" / "predictions.jsonl")


# --- CIFAR-format files ------------------------------------------------------------------------------------------

def _images(labels: np.ndarray, rng) -> np.ndarray:
    """Class-coloured noise: the label shifts the mean of one channel, so the task is learnable."""
    x = rng.integers(0, 96, size=(len(labels), 3, 32, 32))
    x[np.arange(len(labels)), labels % 3] += 8 * (labels[:, None, None] % 16)
    return x.astype(np.uint8).reshape(len(labels), -1)


def write_cifar100(root: Path, per_class: int = 3) -> dict:
    rng = np.random.default_rng(0)
    folder = root / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    splits = {}
    for split, n in (("train", per_class), ("test", 1)):
        fine = np.repeat(np.arange(100), n)
        splits[split] = (_images(fine, rng), fine)
        batch = {b"data": splits[split][0], b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist()}
        (folder / split).write_bytes(pickle.dumps(batch))
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                                b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}))
    return splits


def write_cifar10(root: Path, per_batch: int = 30) -> dict:
    rng = np.random.default_rng(1)
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = np.arange(per_batch) % 10
        written[name] = (_images(labels, rng), labels)
        (folder / name).write_bytes(pickle.dumps({b"data": written[name][0], b"labels": labels.tolist()}))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"k{i}".encode() for i in range(10)]}))
    return written


def test_cifar10_loader_on_written_files(tmp_path):
    written = write_cifar10(tmp_path)
    task = prepare_task("cifar10", tmp_path, val_fraction=0.1, seed=0)
    assert len(task.train) + len(task.val) == 150 and len(task.test) == 30 and task.in_channels == 3
    all_train = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    assert np.array_equal(task.train.x.numpy(), all_train[task.train.ids])
    assert np.array_equal(task.test.x.numpy(), written["test_batch"][0].reshape(-1, 3, 32, 32))
    scaled = all_train[task.train.ids].astype(np.float64) / 255
    assert task.mean == pytest.approx(scaled.mean(axis=(0, 2, 3)).tolist())
    assert task.std == pytest.approx(scaled.std(axis=(0, 2, 3)).tolist())
    assert task.augment and task.class_groups is None


def test_cifar100_supervised_by_superclass(cli, tmp_path):
    write_cifar100(tmp_path)
    m = train(cli, "--dataset", "cifar100", "--data-dir", str(tmp_path), "--strategy", "supervised",
              "--assignment", "coarse", "--epochs", "1", "--batch-size", "32", "--out", str(tmp_path / "run"))
    assert m["test_n"] == 100 and m["val_n"] == 100 and m["test_routing_acc"] is not None
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["model"]["assignment"][0].tolist() == [(c // 5) % 12 for c in range(100)]  # superclass mod 12


# --- bad input ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, names", [
    (("--top-k", "13"), "--top-k"),
    (("--experts", "0"), "--experts"),
    (("--dataset", "imagenet"), "--dataset"),
    (("--tasks", "digits,mnist"), "--tasks"),
    (("--dataset", "tinyshakespeare"), "--dataset"),
    (("--strategy", "greedy"), "--strategy"),
    (("--router", "tree"), "--router"),
    (("--tasks", "digits,sst2", "--experts", "1", "--top-k", "1", "--task-masks"), "without experts"),
    (("--tasks", "digits,sst2", "--mask-layout", "0-11/"), "without experts"),
    (("--tasks", "digits,sst2", "--mask-layout", "0-5/6-12"), "--mask-layout"),
    (("--tasks", "digits,sst2", "--task-masks", "--experts", "3"), "--top-k"),
    (("--task-masks",), "several tasks"),
    (("--assignment", "coarse", "--strategy", "supervised"), "superclasses"),
    (("--strategy", "two-phase", "--epochs", "1"), "--phase1-epochs"),
    (("--val-fraction", "0.6"), "--val-fraction"),
    (("--synthetic-labels", "1.5"), "--synthetic-labels"),
    (("--router-entropy-weight", "nan"), "--router-entropy-weight"),
    (("--grow-experts", "4-12-2"), "--grow-experts"),
    (("--grow-experts", "12:4:1"), "--grow-experts"),
    (("--grow-experts", "1:4:1"), "--top-k"),
    (("--grow-experts", "4:12:2", "--epochs", "10"), "--epochs 17"),
    (("--grow-experts", "4:6:1", "--strategy", "supervised"), "--strategy joint"),
    (("--dataset", "sst2", "--data-dir", "/nonexistent"), "--data-dir"),
])
def test_bad_input_exit_2_nothing_written(cli, nlab_home, args, names):
    code, out, err = cli("train-moe", *args)
    assert code == 2, err
    assert names in err and out == ""
    assert not (nlab_home / "logs").exists() and not (nlab_home / "checkpoints").exists()


def test_resume_of_another_phase_or_config_exit_2(cli, tmp_path):
    hist = tmp_path / "h.jsonl"
    hist.write_text(json.dumps({"step": 1, "split": "train", "loss": 1.0}) + "\n")
    code, out, err = cli("analyze-history", str(hist), "--no-plot", "--json")
    other = json.loads(out)["run_dir"]
    code, _, err = cli("train-moe", "--resume", other)
    assert code == 2 and "analyze-history" in err
    run_dir = tmp_path / "r"
    code, _, err = cli("train-moe", "--epochs", "1", "--train-limit", "100", "--out", str(run_dir))
    assert code == 0
    before = (run_dir / "manifest.json").read_text()
    code, _, err = cli("train-moe", "--epochs", "2", "--train-limit", "100", "--resume", str(run_dir))
    assert code == 2 and "epochs" in err and (run_dir / "manifest.json").read_text() == before


def test_installed_nlab_pipes_into_analyze_history(nlab):
    first = nlab("train-moe", "--epochs", "2", "--train-limit", "200", "--json")
    assert first.returncode == 0, first.stderr
    m = json.loads(first.stdout)
    piped = nlab("analyze-history", "-", "--no-plot", "--json", input=first.stdout)
    assert piped.returncode == 0, piped.stderr
    analysis = json.loads(piped.stdout)
    assert analysis["n_runs"] == 1 and analysis["runs"][0]["n_points"] == 4  # train and val, per epoch
    assert "routing diagnostics" not in first.stdout and "oracle accuracy" in first.stderr
    assert Path(m["run_dir"]).is_dir()

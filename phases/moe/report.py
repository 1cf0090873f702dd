"""What train-moe writes and shows: history records, metrics (per task, and averaged over tasks), predictions
with class probabilities, and the summary tables."""

from __future__ import annotations

import math

import torch

from phases.core import render
from phases.core.data.classification import TaskData
from phases.core.models.moe_classifier import EvalResult
from phases.core.runs import Run
from phases.core.stats import wilson_interval

_EVAL_KEYS = ("routing_acc", "oracle_acc", "oracle_gap", "load_cv", "router_entropy", "dropped_frac")


def _cv(share: torch.Tensor) -> float | None:
    return (share.std(unbiased=False) / share.mean()).item() if share.sum() > 0 else None


def train_record(step: int, epoch: int, stage: str | None, sums: dict, n_batches: int, lr: float) -> dict:
    """The epoch's training numbers: mean losses over its batches (and the router entropy's), the entropy term's
    share of the loss (its magnitude over the sum of every term's magnitude), the share of targets replaced by
    synthetic labels and how many of those equalled the label anyway, accuracy, utilisation of the experts."""
    counts = sums["expert_counts"].double().cpu()
    share = counts / counts.sum()
    rec = {"step": step, "epoch": epoch, "split": "train", **({"stage": stage} if stage else {})}
    for k in ("loss", "task_loss", "balance_loss", "z_loss", "route_loss", "router_entropy", "entropy_term"):
        if k in sums:
            rec[k] = float(sums[k]) / n_batches
    if "entropy_term" in sums:
        rec["entropy_share"] = abs(float(sums["entropy_term"])) / float(sums["abs_loss"])
    if "synthetic_n" in sums:
        rec["synthetic_frac"] = float(sums["synthetic_n"]) / sums["n"]
        rec["synthetic_agree"] = float(sums["synthetic_agree"]) / max(1, sums["synthetic_n"])
    rec.update(acc=float(sums["correct"]) / sums["n"], lr=lr, load_cv=_cv(share), utilisation=share.tolist())
    return rec


def eval_record(step: int, epoch: int, split: str, stage: str | None, task: str | None, res: EvalResult) -> dict:
    rec = {"step": step, "epoch": epoch, "split": split, **({"stage": stage} if stage else {}),
           **({"task": task} if task else {}), "loss": res.loss, "acc": res.acc}
    rec.update({k: res.diagnostics[k] for k in _EVAL_KEYS if res.diagnostics[k] is not None})
    rec["utilisation"] = res.diagnostics["utilisation"]
    return rec


def task_metrics(task: TaskData, val: EvalResult | None, test: EvalResult) -> dict:
    """One task's metrics; without a validation split (None) its val_* are null."""
    low, high = wilson_interval(test.correct, test.n)
    m = {"test_acc": test.acc, "test_n": test.n, "test_correct": test.correct, "test_acc_ci_low": low,
         "test_acc_ci_high": high, "test_loss": test.loss, "test_split": task.test_split,
         "val_acc": val.acc if val else None, "val_n": val.n if val else 0, "val_loss": val.loss if val else None}
    for prefix, res in (("test", test), ("val", val)):
        m.update({f"{prefix}_{k}": res.diagnostics[k] if res else None for k in test.diagnostics})
    return m


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def build_metrics(tasks: list[TaskData], val: list[EvalResult] | None, test: list[EvalResult]) -> dict:
    """Single task: that task's metrics, flat. Several tasks: the mean over tasks of each scalar metric (each task
    weighs the same), totals of the counts, the utilisation pooled over all test items, `test_acc_<task>` and
    `val_acc_<task>`, and every task's full metrics under `tasks`."""
    per_task = {t.name: task_metrics(t, v, r) for t, v, r in zip(tasks, val or [None] * len(tasks), test)}
    if len(tasks) == 1:
        return dict(next(iter(per_task.values())))
    out: dict = {}
    for key in ("test_acc", "val_acc", "test_loss", "val_loss",
                *(f"{p}_{k}" for p in ("test", "val") for k in _EVAL_KEYS)):
        out[key] = _mean([m[key] for m in per_task.values()])
    out["test_n"] = sum(m["test_n"] for m in per_task.values())
    out["val_n"] = sum(m["val_n"] for m in per_task.values())
    counts = sum(torch.bincount(r.experts.reshape(-1), minlength=r.expert_predictions.shape[1]) for r in test)
    share = counts.double() / counts.sum()
    out["test_utilisation"], out["test_load_cv"] = share.tolist(), _cv(share)
    for name, m in per_task.items():
        out[f"test_acc_{name}"], out[f"val_acc_{name}"] = m["test_acc"], m["val_acc"]
    out["tasks"] = per_task
    return out


def write_predictions(run: Run, tasks: list[TaskData], test: list[EvalResult]) -> None:
    """predictions.jsonl on the test split(s): one line per item with its class probabilities, the experts it
    was routed to with their gates, and whether some expert alone would have been right (the oracle)."""
    multi = len(tasks) > 1
    for task, res in zip(tasks, test):
        alone_right = (res.expert_predictions == res.targets[:, None]).any(1)
        for i, item in enumerate(task.test.ids):
            target, pred = int(res.targets[i]), int(res.predictions[i])
            run.predict({"id": f"{task.name}:{item}" if multi else item, "task": task.name, "target": target,
                         "prediction": pred, "correct": target == pred,
                         "probs": [round(p, 6) for p in res.probs[i].tolist()],
                         "experts": res.experts[i].tolist(), "gates": [round(g, 4) for g in res.gates[i].tolist()],
                         "oracle_correct": bool(alone_right[i])})


def _acc_ci(m: dict) -> str:
    return (f"{render.fmt(m['test_acc'])} [{render.fmt(m['test_acc_ci_low'], 3)}, "
            f"{render.fmt(m['test_acc_ci_high'], 3)}]")


def render_summary(metrics: dict, tasks: list[TaskData], title: str) -> None:
    per_task = metrics.get("tasks") or {tasks[0].name: metrics}
    if len(per_task) > 1:
        render.table(f"{title}: tasks", ["task", "test acc [95% CI]", "n", "val acc", "routing acc", "oracle acc",
                                         "oracle gap", "load CV"],
                     [(name, _acc_ci(m), m["test_n"], m["val_acc"], m["test_routing_acc"], m["test_oracle_acc"],
                       m["test_oracle_gap"], m["test_load_cv"]) for name, m in per_task.items()])
    rows = [("test accuracy" + (" (mean over tasks)" if len(per_task) > 1 else f" [95% CI] ({tasks[0].test_split})"),
             render.fmt(metrics["test_acc"]) if len(per_task) > 1 else _acc_ci(metrics)),
            ("test items", metrics["test_n"]), ("val accuracy (selection)", metrics["val_acc"]),
            ("routing accuracy", metrics["test_routing_acc"]), ("oracle accuracy", metrics["test_oracle_acc"]),
            ("oracle gap", metrics["test_oracle_gap"]), ("load-balance CV", metrics["test_load_cv"]),
            ("router entropy (nats, max ln N = "
             f"{math.log(len(metrics['test_utilisation'])):.2f})", metrics["test_router_entropy"]),
            ("dropped by capacity", metrics["test_dropped_frac"]), ("epochs / steps",
                                                                    f"{metrics['epochs']} / {metrics['steps']}"),
            ("training time (s)", metrics["train_seconds"])]
    render.table(title, ["metric (test unless said)", "value"], [r for r in rows if r[1] is not None])
    for name, m in per_task.items():
        render.table(f"experts on {name} test items", ["expert", "utilisation", "alone acc", "acc on its tokens"],
                     [(e, u, a, ra) for e, (u, a, ra) in enumerate(zip(m["test_utilisation"], m["test_expert_acc"],
                                                                       m["test_expert_routed_acc"]))])
    render.say(f"run folder: {metrics['run_dir']}", markup=False)

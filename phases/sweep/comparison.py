"""`nlab seed-sweep --compare A B`: is configuration A better than B across seeds, or is it noise?

Bouthillier et al. (2021): compare distributions over seeds rather than a best-versus-baseline pair. Reports
P(A>B) (a random seed of A beats a random seed of B) with a bootstrap interval, a bootstrap interval for the
difference of means, and a verdict: A (or B) is better when P(A>B) reaches the threshold (or 1 - threshold) and
its interval excludes 0.5; otherwise no reliable difference."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from phases.core import render
from phases.core.errors import InputError
from phases.core.options import check_options
from phases.core.runs import Run, load_run_dir
from phases.core.stats import bootstrap_diff_of_means
from phases.sweep import stats
from phases.sweep.config import CompareConfig

PHASE = "seed-sweep"


def _seed_values(path: str, metric: str | None) -> tuple[dict, list[float], str]:
    run = load_run_dir(path)
    m = run["metrics"]
    if run["manifest"].get("phase") != PHASE or not m or "seeds" not in m:
        raise InputError(f"--compare {path}: not a finished seed-sweep run folder",
                         "pass two folders printed as run_dir by `nlab seed-sweep`")
    metric = metric or m["report_metric"]
    values = []
    for row in m["seeds"]:
        if row["status"] != "completed":
            continue
        seed_metrics = load_run_dir(row["run_dir"])["metrics"] or {}
        if not isinstance(seed_metrics.get(metric), (int, float)):
            raise InputError(f"--compare {path}: seed {row['seed']} has no metric {metric!r}",
                             "pass --metric with a metric both sweeps' seeds report")
        values.append(float(seed_metrics[metric]))
    if len(values) < 2:
        raise InputError(f"--compare {path}: fewer than 2 completed seeds", "finish the sweep first (--resume)")
    return m, values, metric


def compare(c: CompareConfig) -> dict:
    check_options(c)
    ma, a, metric = _seed_values(c.sweep_a, c.metric)
    mb, b, _ = _seed_values(c.sweep_b, metric)
    mode = c.mode or ma["mode"]
    if mode not in ("max", "min"):
        raise InputError(f"--mode {mode!r}: use max or min", "max for accuracies, min for losses")
    p = stats.prob_a_beats_b(a, b, mode)
    p_low, p_high = stats.prob_a_beats_b_interval(a, b, mode)
    diff, d_low, d_high = bootstrap_diff_of_means(a, b)
    if p >= c.threshold and p_low > 0.5:
        verdict = "A is better"
    elif p <= 1 - c.threshold and p_high < 0.5:
        verdict = "B is better"
    else:
        verdict = "no reliable difference"
    metrics = {
        "kind": "compare", "metric": metric, "mode": mode, "sweep_a": str(Path(c.sweep_a).resolve()),
        "sweep_b": str(Path(c.sweep_b).resolve()), "phase_a": ma["phase_swept"], "phase_b": mb["phase_swept"],
        "n_a": len(a), "n_b": len(b), "mean_a": sum(a) / len(a), "mean_b": sum(b) / len(b),
        "p_a_beats_b": p, "p_a_beats_b_low": p_low, "p_a_beats_b_high": p_high,
        "mean_diff": diff, "mean_diff_low": d_low, "mean_diff_high": d_high,
        "threshold": c.threshold, "verdict": verdict, "values_a": a, "values_b": b,
    }
    with Run.create(PHASE, {**asdict(c), "kind": "compare"}, out=c.out, name=c.name) as run:
        out = run.write_metrics(metrics, primary="p_a_beats_b")
    render.table(f"seed-sweep compare on {metric} ({mode})", ["", "A", "B"],
                 [("seeds", len(a), len(b)), ("mean", metrics["mean_a"], metrics["mean_b"])])
    render.say(f"P(A>B) = {p:.3f} (95% bootstrap interval {p_low:.3f}-{p_high:.3f}); mean difference A-B = "
               f"{diff:+.4f} ({d_low:+.4f} to {d_high:+.4f}). Verdict at threshold {c.threshold:g}: {verdict}.")
    render.say(f"run folder: {out['run_dir']}")
    return out

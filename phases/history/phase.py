"""The analyze-history phase: read histories, analyse each, write metrics and a plot, show the findings."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from phases.core import render
from phases.core.errors import InputError
from phases.core.options import check_options
from phases.core.runs import Run
from phases.history.analyze import analyze
from phases.history.config import HistoryConfig
from phases.history.load import read_history
from phases.history.plot import plot_histories

PHASE = "analyze-history"


def _check(c: HistoryConfig) -> None:
    check_options(c)  # each option's own range (declared in the config, thresholds included)
    if not c.inputs:
        raise InputError("no history given", "pass one or more run folders, history.jsonl or metrics.csv files")


def _check_metrics(histories: list, t) -> None:
    """The metrics named by --loss-metric and --val-metric must be logged somewhere (a typo would otherwise read
    as 'no findings')."""
    logged = sorted({m for h in histories for m in h.metric_names()})
    if t.loss_metric not in logged:
        raise InputError(f"--loss-metric {t.loss_metric}: not logged in the given histories",
                         f"choose one of the metrics present: {', '.join(logged)}")
    splits = sorted({p.split for h in histories for p in h.points})
    if t.val_split not in splits and t.val_split != type(t)().val_split:  # the default may be absent: train only
        raise InputError(f"--val-split {t.val_split}: no point of the given histories is in that split",
                         f"choose one of the splits present: {', '.join(splits)}")
    val_logged = sorted({m for h in histories for p in h.points if p.split == t.val_split for m in p.metrics})
    if t.val_metric is not None and t.val_metric not in val_logged:
        raise InputError(f"--val-metric {t.val_metric}: not logged in split {t.val_split!r} of the given histories",
                         f"choose one of the metrics present there: {', '.join(val_logged)}" if val_logged else
                         f"no metric is logged in split {t.val_split!r}: check --val-split")


def run(config: HistoryConfig) -> dict:
    _check(config)
    histories = [read_history(p, config.skip_bad_lines) for p in config.inputs]  # input errors before any write
    _check_metrics(histories, config.thresholds)
    analyses = [analyze(h, config.thresholds) for h in histories]
    found = [f for a in analyses for f in a["findings"]]
    factors = [b["spike_factor"] for a in analyses for b in a["boundaries"] if b["spike_factor"] is not None]
    drops = [g["drop"] for a in analyses for g in a["forgetting"]]
    metrics = {
        "n_findings": len(found),
        "n_runs": len(histories),
        "n_spikes": sum(f["kind"] == "spike" for f in found),
        "max_spike_factor": max(factors) if factors else None,
        "n_stagnant_stages": sum(f["kind"] == "stagnation" for f in found),
        "n_overfitting": sum(f["kind"] == "overfitting" for f in found),
        "n_forgetting": sum(f["kind"] == "forgetting" for f in found),
        "max_forgetting_drop": max(drops) if drops else None,
        "n_bad_lines": sum(a["n_bad_lines"] for a in analyses),
        "findings": found,
        "runs": analyses,
        "thresholds": asdict(config.thresholds),
    }
    cfg = {**asdict(config), "inputs": [str(Path(p).resolve()) for p in config.inputs]}
    with Run.create(PHASE, cfg, out=config.out, name=config.name) as run_:
        if config.plot:
            metrics["plot"] = str(plot_histories(histories, analyses, run_.path("history.png")))
        out = run_.write_metrics(metrics, primary="n_findings")
    _render(out, analyses)
    return out


def _render(metrics: dict, analyses: list[dict]) -> None:
    for a in analyses:
        rows = [(str(s["stage"]) if s["stage"] is not None else "(all)", f"{s['first_step']}-{s['last_step']}",
                 s.get("loss_first"), s.get("loss_last"), s.get("loss_min"), s.get("loss_mean"),
                 s.get("val_best"), s.get("val_best_step")) for s in a["stages"]]
        render.table(f"{a['name']}: stages ({a['n_points']} points"
                     + (f", {a['n_bad_lines']} bad lines skipped" if a["n_bad_lines"] else "") + ")",
                     ["stage", "steps", "loss first", "loss last", "loss min", "loss mean", "val best", "at step"],
                     rows)
        if a["boundaries"]:
            render.table(f"{a['name']}: stage boundaries",
                         ["boundary", "step", "baseline loss", "peak loss", "spike factor"],
                         [(f"{b['from_stage']} -> {b['to_stage']}", b["boundary_step"], b["baseline_loss"],
                           b["peak_loss"], b["spike_factor"]) for b in a["boundaries"]])
    if metrics["findings"]:
        render.say(f"[bold]{len(metrics['findings'])} finding(s):[/bold]")
        for f in metrics["findings"]:
            render.say(f"  - {f['kind']} ({f['run']}): {f['text']}", markup=False)
    else:
        render.say("no findings: no loss spike, stagnant stage, overfitting or forgetting beyond the thresholds.")
    if metrics.get("plot"):
        render.say(f"plot: {metrics['plot']}")
    render.say(f"run folder: {metrics['run_dir']}")

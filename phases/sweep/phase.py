"""The seed-sweep phase: one run of a phase per seed, then honest statistics over the seeds.

Selection and reporting are kept apart: the best seed is chosen on `select` (validation data) and only its
`report` metric (test data) is the number to quote; the gap between the two shows the winner's curse."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from phases.core import plots, render
from phases.core.errors import InputError, RunFailed
from phases.core.jsonio import read_json
from phases.core.options import check_options
from phases.core.runs import Run
from phases.sweep import launch, stats
from phases.sweep.config import SWEEPABLE, SweepConfig

PHASE = "seed-sweep"
_CONTROLLED = ("--seed", "--out", "--json", "--resume", "--name")


def _check(c: SweepConfig) -> None:
    check_options(c)  # each option's own range or choice (declared in the config); below, options together
    if c.phase not in SWEEPABLE:
        raise InputError(f"seed-sweep {c.phase!r}: not a phase a sweep can run", f"use one of: {', '.join(SWEEPABLE)}")
    seeds = c.seed_values()
    if len(seeds) < 2:
        raise InputError(f"--seeds {len(seeds)}: a sweep needs at least 2 seeds", "use --seeds 2 or more")
    if len(set(seeds)) != len(seeds):
        raise InputError(f"--seed-list {seeds}: repeated seeds", "list each seed once")
    if any(s < 0 for s in seeds):
        raise InputError("seeds must be non-negative", "use --seed-start 0 or a --seed-list of non-negative ints")
    for arg in c.phase_args:
        if arg.split("=")[0] in _CONTROLLED:
            raise InputError(f"phase option {arg.split('=')[0]} is set by the sweep for every seed",
                             "remove it from the options after --")


def check_selection(phase: str, select: str, report: str) -> None:
    """Honest selection: the seed is chosen on validation data and reported on other data, never on the metric it
    is reported with, nor on a test metric (the phase registry says which metrics are which)."""
    from phases import registry

    info = registry.get(phase)
    for option, name in (("--select", select), ("--report", report)):
        if info is not None and not info.writes_metric(name):
            raise InputError(f"{option} {name}: {phase} writes no such metric",
                             f"choose one of the metrics {phase} writes: {', '.join(info.metrics)}")
    if select == report:
        raise InputError(f"--select {select} --report {report}: the best seed would be reported on the data it was "
                         "chosen on (the winner's curse)", "choose on a validation metric, e.g. --select val_acc "
                         "--report test_acc")
    if info is not None and info.is_test_metric(select):
        raise InputError(f"--select {select}: a test metric of {phase}; choosing on it makes the report optimistic",
                         f"select on a validation metric ({', '.join(info.val_metrics) or 'none in ' + phase})"
                         + (f"; {info.note}" if info.note else ""))


def _seed_dir(sweep_dir: Path, seed: int) -> Path:
    return sweep_dir / "seeds" / f"seed-{seed}"


def _launch(c: SweepConfig, sweep_dir: Path, seeds: list[int]) -> list[dict]:
    threads = launch.threads_per_job(c)
    jobs = [launch.SeedJob(s, launch.seed_argv(c.phase, c.phase_args, s, _seed_dir(sweep_dir, s)),
                           str(_seed_dir(sweep_dir, s)), str(sweep_dir / "seed-logs" / f"seed-{s}.log"), threads)
            for s in seeds]
    return launch.run_jobs(c, jobs, sweep_dir)


def run(config: SweepConfig) -> dict:
    _check(config)
    check_selection(config.phase, config.select, config.report)
    with Run.open(PHASE, config, asdict(config), completed_ok=True) as run_:
        seeds = config.seed_values()
        todo = []
        for s in seeds:
            d = _seed_dir(run_.dir, s)
            if launch.finished(d):
                continue
            if d.exists():
                launch.set_aside(d)
            todo.append(s)
        skipped = len(seeds) - len(todo)
        render.say(f"seed-sweep {config.phase}: {len(seeds)} seeds, {skipped} already finished, running {len(todo)} "
                   f"with the {config.launcher} launcher")
        results = {r["seed"]: r for r in _launch(config, run_.dir, todo)} if todo else {}
        rows = []
        for s in seeds:
            d = _seed_dir(run_.dir, s)
            row = {"seed": s, "run_dir": str(d), "status": "completed" if launch.finished(d) else "failed",
                   "rerun": s in results}
            if row["status"] == "failed":
                row["error"] = launch.log_tail(run_.dir / "seed-logs" / f"seed-{s}.log")
                row["returncode"] = results.get(s, {}).get("returncode")
            else:
                m = read_json(d / "metrics.json")
                for key in (config.select, config.report):
                    if not isinstance(m.get(key), (int, float)):
                        raise InputError(f"seed {s}: metric {key!r} is not in {d / 'metrics.json'}",
                                         f"choose --select/--report among: "
                                         f"{', '.join(k for k, v in m.items() if isinstance(v, (int, float)))}")
                row["select"], row["report"] = float(m[config.select]), float(m[config.report])
            rows.append(row)
        metrics = sweep_statistics(rows, config)
        metrics["plot"] = str(_plot(metrics, run_.path("expected_max.png")))
        out = run_.write_metrics(metrics, primary="best_report")
    _render(out)
    return out


def sweep_statistics(rows: list[dict], c: SweepConfig) -> dict:
    done = [r for r in rows if r["status"] == "completed"]
    failed = [r for r in rows if r["status"] == "failed"]
    if len(done) < 2:
        raise RunFailed(f"only {len(done)} of {len(rows)} seeds finished: no statistics over seeds",
                        "see the seed logs in the sweep's seed-logs/ folder, fix the cause, and --resume the sweep")
    sel = np.array([r["select"] for r in done])
    rep = np.array([r["report"] for r in done])
    order = np.argsort(-sel if c.mode == "max" else sel, kind="stable")  # ties: the lower seed first
    best = done[int(order[0])]
    s_sel, s_rep = stats.summary(sel), stats.summary(rep)
    n = len(done)
    sign = 1 if c.mode == "max" else -1
    select_adv = sign * (best["select"] - s_sel["mean"])
    report_adv = sign * (best["report"] - s_rep["mean"])
    return {
        "phase_swept": c.phase, "n_seeds": len(rows), "n_completed": n, "n_failed": len(failed),
        "failed_seeds": [{"seed": r["seed"], "returncode": r.get("returncode"), "error": r.get("error")}
                         for r in failed],
        "select_metric": c.select, "report_metric": c.report, "mode": c.mode,
        **{f"select_{k}": v for k, v in s_sel.items() if k != "n"},
        **{f"report_{k}": v for k, v in s_rep.items() if k != "n"},
        "best_seed": best["seed"], "best_run_dir": best["run_dir"],
        "best_select": best["select"], "best_report": best["report"],
        # winner's curse: the chosen seed's edge over the mean on selection data, and how much survives on test
        "winners_curse_gap": best["select"] - best["report"],
        "best_select_advantage": select_adv, "best_report_advantage": report_adv,
        "advantage_retained": report_adv / select_adv if select_adv > 0 else None,
        "best_report_z": report_adv / s_rep["std"] if s_rep["std"] > 0 else None,
        "gaussian_expected_max": stats.gaussian_expected_max(s_rep["mean"], sign * s_rep["std"], n),
        "normal_exact_expected_max": s_rep["mean"] + sign * s_rep["std"] * stats.normal_max_factor(n),
        "observed_best_report": float(rep.max() if c.mode == "max" else rep.min()),
        "expected_max_curve_report": stats.expected_max_curve(rep, c.mode),
        "expected_max_curve_select": stats.expected_max_curve(sel, c.mode),
        "top_k": [{"rank": i + 1, "seed": done[j]["seed"], "run_dir": done[j]["run_dir"],
                   "select": done[j]["select"], "report": done[j]["report"]} for i, j in enumerate(order[: c.top_k])],
        "seeds": rows,
    }


def _plot(m: dict, path: Path) -> Path:
    fig, axes = plots.pyplot().subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "select", m["select_metric"]), (axes[1], "report", m["report_metric"])):
        curve = m[f"expected_max_curve_{key}"]
        n = [p["n"] for p in curve]
        e = np.array([p["expected"] for p in curve])
        s = np.array([p["std"] for p in curve])
        ax.plot(n, e, "-o", ms=3, label="expected best of n (Dodge et al. 2019)")
        ax.fill_between(n, e - s, e + s, alpha=0.2, label="+/- 1 std")
        mean, std = m[f"{key}_mean"], m[f"{key}_std"]
        sign = 1 if m["mode"] == "max" else -1
        ax.plot(n, [stats.gaussian_expected_max(mean, sign * std, k) for k in n], "--",
                label="mean + std*sqrt(2 ln n)")
        ax.plot(n, [mean + sign * std * stats.normal_max_factor(k) for k in n], ":", label="exact under normality")
        ax.axhline(m[f"{key}_max"] if m["mode"] == "max" else m[f"{key}_min"], color="grey", lw=0.8,
                   label="observed best")
        ax.set_xlabel("n seeds")
        ax.set_title(f"{label} ({m['n_completed']} seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return plots.save(fig, path)


def _render(m: dict) -> None:
    render.table(f"seed-sweep of {m['phase_swept']}: {m['n_completed']} of {m['n_seeds']} seeds completed",
                 ["statistic", m["select_metric"] + " (select)", m["report_metric"] + " (report)"],
                 [(k, m[f"select_{k}"], m[f"report_{k}"]) for k in ("mean", "std", "median", "min", "max")])
    n = m["n_completed"]
    render.table(f"expected best of {n} seeds ({m['report_metric']})", ["estimate", "value"], [
        ("mean + std*sqrt(2 ln N) (Gaussian formula)", m["gaussian_expected_max"]),
        ("exact expected max under normality", m["normal_exact_expected_max"]),
        (f"empirical expected max, n={n} (Dodge et al.)", m["expected_max_curve_report"][-1]["expected"]),
        ("observed best", m["observed_best_report"])])
    render.say(f"best seed on {m['select_metric']}: seed {m['best_seed']} ({m['select_metric']} "
               f"{m['best_select']:.4f}; {m['report_metric']} {m['best_report']:.4f}). Its edge over the mean was "
               f"{m['best_select_advantage']:+.4f} on selection data and {m['best_report_advantage']:+.4f} on report "
               f"data" + (f" ({m['best_report_z']:+.2f} std of the seeds)" if m["best_report_z"] is not None else "")
               + ": the rest is the winner's curse.")
    render.say("top seeds for ensemble-vote: " + ", ".join(f"{t['seed']}" for t in m["top_k"]))
    for f in m["failed_seeds"]:
        render.warn(f"seed {f['seed']} failed (exit {f['returncode']}): {f['error']}")
    render.say(f"plot: {m['plot']}\nrun folder: {m['run_dir']}")

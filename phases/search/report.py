"""The sweep's result: per configuration the selection metric's mean ± std and 95% interval over its seeds and
its comparison with the baseline; the configuration chosen on the selection metric and only then its report
metric (never shown for the others: a test number next to each configuration invites choosing on it); the
best configuration's seeds in seed-sweep's `top_k`/`seeds` keys, so `nlab ensemble-vote -` reads either sweep.
Plots: the metric by configuration with intervals, Taguchi's main effects, TPE's optimisation history."""

from __future__ import annotations

from pathlib import Path

from phases.core import plots, render
from phases.core import stats as core_stats
from phases.core.compare import against_baseline
from phases.core.errors import RunFailed
from phases.search.config import SearchConfig
from phases.search.params import Param
from phases.sweep import stats


def _label(params: dict) -> str:
    return " ".join(f"{k}={render.fmt(v)}" for k, v in params.items())


def _completed(record: dict, key: str = "select") -> dict[int, float]:
    return {s["seed"]: s[key] for s in record["seeds"] if s["status"] == "completed"}


def _row(record: dict) -> dict:
    row = {k: record[k] for k in ("trial", "config", "params", "state")}
    sel = _completed(record)
    row.update(n_completed=len(sel), n_seeds=len(record["seeds"]))
    if sel and record["state"] != "pruned":  # a pruned trial's seeds stopped early: nothing final to compare
        s = stats.summary(list(sel.values()))
        low, high = core_stats.mean_interval(list(sel.values()))
        row.update(select_mean=s["mean"], select_std=s["std"], select_low=low, select_high=high)
    return row


def summarise(c: SearchConfig, params: list[Param], records: dict[int, dict], baseline: int | None,
              extra: dict, sweep_dir: Path) -> dict:
    """metrics.json of the sweep (seed folders named in full: trials.jsonl names them relative to the sweep)."""
    rows = [_row(records[n]) for n in sorted(records)]
    ranked = [r for r in rows if "select_mean" in r]
    if not ranked:
        raise RunFailed("no configuration finished a seed: nothing to choose from",
                        "see the seed logs (configs/*/seed-S.log in the sweep folder), fix the cause, and --resume")
    sign = -1 if c.mode == "min" else 1
    best = max(ranked, key=lambda r: (sign * r["select_mean"], -r["trial"]))  # ties: the earlier trial
    base = next((r for r in ranked if r["trial"] == baseline), None)
    if baseline is not None and base is None:
        render.warn(f"baseline trial {baseline} has no finished seed: no comparisons")
    best_vs_base = None
    if base is not None:
        comps = against_baseline([_completed(records[r["trial"]]) for r in ranked], ranked.index(base),
                                 c.mode == "min", c.alpha)
        for r, comp in zip(ranked, comps):
            r["vs_baseline"] = comp
        if best is not base:  # the one comparison on report data: of the configuration chosen without it
            best_vs_base = against_baseline([_completed(records[best["trial"]], "report"),
                                             _completed(records[base["trial"]], "report")], 1,
                                            core_stats.lower_is_better(c.report), c.alpha)[0]
    rep = list(_completed(records[best["trial"]], "report").values())
    rep_low, rep_high = core_stats.mean_interval(rep)
    seeds = [{**s, "run_dir": str(sweep_dir / s["run_dir"])} for s in records[best["trial"]]["seeds"]]
    order = sorted((s for s in seeds if s["status"] == "completed"), key=lambda s: (-sign * s["select"], s["seed"]))
    return {
        "phase_swept": c.phase, "design": c.design, "select_metric": c.select, "report_metric": c.report,
        "mode": c.mode, "alpha": c.alpha, "seed_values": c.seed_values(), "swept": [p.label for p in params],
        "n_trials": len(rows), "n_ranked": len(ranked),
        "baseline_trial": base["trial"] if base else None, "baseline_params": base["params"] if base else None,
        "configs": rows,
        "best_trial": best["trial"], "best_params": best["params"], "best_config": best["config"],
        **{f"best_select_{k}": best[f"select_{k}"] for k in ("mean", "std", "low", "high")},
        "best_report": sum(rep) / len(rep), "best_report_std": stats.summary(rep)["std"],
        "best_report_low": rep_low, "best_report_high": rep_high, "best_report_vs_baseline": best_vs_base,
        # seed-sweep's keys, for ensemble-vote: the chosen configuration's seeds, best on the selection metric first
        "top_k": [{"rank": i + 1, "seed": s["seed"], "run_dir": s["run_dir"], "select": s["select"],
                   "report": s["report"]} for i, s in enumerate(order[: c.top_k])],
        "seeds": seeds,
        **extra,
    }


def draw(m: dict, sweep_dir: Path) -> list[str]:
    out = [str(_plot_configs(m, sweep_dir / "configs.png"))]
    if "taguchi" in m:
        out.append(str(_plot_effects(m, sweep_dir / "main_effects.png")))
    if "tpe" in m:
        out.append(str(_plot_history(m, sweep_dir / "tpe_history.png")))
    return out


def _plot_configs(m: dict, path: Path) -> Path:
    rows = [r for r in m["configs"] if "select_mean" in r]
    fig, ax = plots.pyplot().subplots(figsize=(max(6, 0.5 * len(rows) + 3), 4))
    for x, r in enumerate(rows):
        colour = "tab:red" if r["trial"] == m["best_trial"] else "grey" if r["trial"] == m["baseline_trial"] \
            else "tab:blue"
        ax.errorbar([x], [r["select_mean"]], yerr=[[r["select_mean"] - r["select_low"]],
                                                   [r["select_high"] - r["select_mean"]]], fmt="o", color=colour,
                    capsize=3)
    ax.set_xticks(range(len(rows)), [str(r["trial"]) for r in rows], fontsize=7)
    ax.set_xlabel("trial (red: chosen; grey: baseline)")
    ax.set_ylabel(f"{m['select_metric']} (mean, 95% interval)")
    ax.set_title(f"{m['phase_swept']}: {m['design']} sweep, {len(m['seed_values'])} seeds per configuration")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return plots.save(fig, path)


def _plot_effects(m: dict, path: Path) -> Path:
    factors = m["taguchi"]["factors"]
    fig, axes = plots.pyplot().subplots(2, len(factors), figsize=(3 * len(factors), 5), squeeze=False)
    for j, f in enumerate(factors):
        labels = [render.fmt(x["level"]) for x in f["levels"]]
        for i, key in enumerate(("mean", "sn")):
            axes[i, j].plot(labels, [x[key] for x in f["levels"]], "o-")
            axes[i, j].grid(alpha=0.3)
        axes[0, j].set_title(f["factor"], fontsize=9)
        axes[0, j].axhline(m["taguchi"]["grand_mean"], color="grey", lw=0.8)
    axes[0, 0].set_ylabel(f"mean {m['select_metric']}")
    axes[1, 0].set_ylabel("S/N (dB)")
    fig.suptitle(f"main effects ({m['taguchi']['array']})", fontsize=10)
    fig.tight_layout()
    return plots.save(fig, path)


def _plot_history(m: dict, path: Path) -> Path:
    fig, ax = plots.pyplot().subplots(figsize=(7, 4))
    done = [r for r in m["configs"] if "select_mean" in r]
    ax.plot([r["trial"] for r in done], [r["select_mean"] for r in done], "o", label="trial (mean over seeds)")
    best, pts = None, []
    for r in done:
        if best is None or (r["select_mean"] < best if m["mode"] == "min" else r["select_mean"] > best):
            best = r["select_mean"]
        pts.append((r["trial"], best))
    ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", color="tab:red", label="best so far")
    pruned = [r["trial"] for r in m["configs"] if r["state"] == "pruned"]
    if pruned:
        for t in pruned:
            ax.axvline(t, color="grey", ls=":", lw=0.8)
        ax.plot([], [], color="grey", ls=":", label="pruned")
    ax.set_xlabel("trial")
    ax.set_ylabel(m["select_metric"])
    ax.set_title("TPE optimisation history")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return plots.save(fig, path)


def _mean_std(r: dict) -> str:
    return f"{render.fmt(r['select_mean'])} ± {render.fmt(r['select_std'])}"


def render_sweep(m: dict) -> None:
    rows = []
    for r in m["configs"]:
        mark = " (chosen)" if r["trial"] == m["best_trial"] else ""
        mark += " (baseline)" if r["trial"] == m["baseline_trial"] else ""
        comp = r.get("vs_baseline")
        rows.append((f"{r['trial']}{mark}", _label(r["params"]), f"{r['n_completed']}/{r['n_seeds']}",
                     _mean_std(r) if "select_mean" in r else r["state"],
                     f"[{render.fmt(r['select_low'])}, {render.fmt(r['select_high'])}]" if "select_mean" in r else "",
                     comp["verdict"] if comp else ""))
    render.table(f"sweep of {m['phase_swept']} ({m['design']}): {m['select_metric']} ({m['mode']}) per "
                 f"configuration", ["trial", "configuration", "seeds", "mean ± std", "95% interval",
                                    "against the baseline"], rows)
    if "taguchi" in m:
        _render_taguchi(m)
    if "tpe" in m:
        t = m["tpe"]
        render.say(f"tpe: {t['n_complete']} complete, {t['n_pruned']} pruned, {t['n_failed']} failed trials "
                   f"({t['n_interrupted']} interrupted and rerun); study {t['study']} (study name {t['study_name']!r})")
    render.say(f"chosen on {m['select_metric']}: trial {m['best_trial']} ({_label(m['best_params'])}), "
               f"{m['select_metric']} {render.fmt(m['best_select_mean'])} ± {render.fmt(m['best_select_std'])}; "
               f"then {m['report_metric']} {render.fmt(m['best_report'])} ± {render.fmt(m['best_report_std'])} "
               f"[{render.fmt(m['best_report_low'])}, {render.fmt(m['best_report_high'])}]")
    if m["best_report_vs_baseline"]:
        render.say(f"chosen against baseline on {m['report_metric']}: {m['best_report_vs_baseline']['verdict']}")
    render.say(f"plots: {', '.join(m['plots'])}\nrun folder: {m['run_dir']}")


def _render_taguchi(m: dict) -> None:
    t = m["taguchi"]
    rows = [(f["factor"], render.fmt(x["level"]), x["runs"], x["mean"], x["sn"],
             "best" if x["level"] == f["best"] else "", f["rank"] if i == 0 else "")
            for f in t["factors"] for i, x in enumerate(f["levels"])]
    render.table(f"main effects ({t['array']}), grand mean {render.fmt(t['grand_mean'])}",
                 ["factor", "level", "runs", f"mean {m['select_metric']}", "S/N (dB)", "", "rank"], rows)
    conf = next((r for r in m["configs"] if r["trial"] == t["confirmation_trial"]), None)
    seen = f"{_mean_std(conf)}" if conf and "select_mean" in conf else "not finished"
    render.say(f"taguchi: predicted best {_label(t['predicted_best'])}"
               f" with {m['select_metric']} {render.fmt(t['predicted_mean'])} (additive model); confirmation trial "
               f"{t['confirmation_trial']}" + (" (in the array)" if t["confirmation_in_array"] else "")
               + f": {seen}")

"""Metrics of every method (all from phases/ewc/metrics.py), the comparison with naive fine-tuning, the heatmaps
of R, and the tables shown at the end."""

from __future__ import annotations

from pathlib import Path

from phases.core import render
from phases.core.compare import paired_correctness, paired_losses
from phases.ewc.config import EwcConfig
from phases.ewc.metrics import matrix_metrics, retention, spike_factors
from phases.ewc.scenarios import Scenario
from phases.ewc.train import MethodResult

# the lab's targets for a base/modified curriculum
TARGETS = {"spike_factor_below": 2.0, "base_retention_above": 0.8, "modification_success_above": 0.6}


def _keyed(items: list[dict], field: str) -> dict:
    return {(r["task"], r["id"]): r[field] for r in items}


def _paired(a: MethodResult, b: MethodResult) -> dict | None:
    """The final models compared item by item over every task's test items (phases/core/compare.py): McNemar's
    exact test on per-item correctness decides "beyond noise"; for text, a paired bootstrap on per-window losses."""
    if not a.items or not b.items:
        return None
    if "correct" not in a.items[0]:
        la, lb = _keyed(a.items, "loss"), _keyed(b.items, "loss")
        keys = [k for k in la if k in lb]
        c = paired_losses([la[k] for k in keys], [lb[k] for k in keys], a.method, b.method)
        return {"test": "paired bootstrap on held-out window losses", "n_items": c["n_shared"],
                "loss_diff": c["diff"], "loss_diff_low": c["diff_low"], "loss_diff_high": c["diff_high"],
                "beyond_noise": c["beyond_noise"], "verdict": c["verdict"]}
    c = paired_correctness(_keyed(a.items, "correct"), _keyed(b.items, "correct"), a.method, b.method)
    return {"test": "McNemar exact on per-item correctness", "only_this_right": c["only_a_right"], "only_naive_right": c["only_b_right"], "n_items": c["n_shared"],
            "p_value": c["mcnemar_p"], "beyond_noise": c["beyond_noise"],
            # accuracy over the pooled items (vs_naive's `difference` is that of the per-task average)
            "item_acc_diff": c["diff"], "item_acc_diff_low": c["diff_low"], "item_acc_diff_high": c["diff_high"],
            "verdict": c["verdict"]}


def stage_diff(scn: Scenario, r: MethodResult, n_ids: int = 20) -> list[dict]:
    """Which held-out items each stage changed: every task's items after stage s against after stage s - 1,
    paired (McNemar on correctness: items fixed and broken; for text, a paired bootstrap on window losses), with
    the first `n_ids` ids of each kind (all of them are in stage_predictions.jsonl)."""
    out = []
    for s in range(1, len(r.stage_items)):
        for t in scn.tasks:
            after = [it for it in r.stage_items[s] if it["task"] == t.name]
            before = [it for it in r.stage_items[s - 1] if it["task"] == t.name]
            if not after or not before:
                continue
            row = {"from": r.stages[s - 1].name, "to": r.stages[s].name, "task": t.name}
            if "correct" in after[0]:
                c = paired_correctness({it["id"]: it["correct"] for it in after},
                                       {it["id"]: it["correct"] for it in before}, "after", "before")
                row.update(n=c["n_shared"], fixed=c["only_a_right"], broken=c["only_b_right"],
                           changed_predictions=sum(a["prediction"] != b["prediction"] for a, b in zip(after, before)),
                           diff=c["diff"], diff_low=c["diff_low"], diff_high=c["diff_high"], p_value=c["mcnemar_p"],
                           beyond_noise=c["beyond_noise"], fixed_ids=c["ids_only_a_right"][:n_ids],
                           broken_ids=c["ids_only_b_right"][:n_ids], verdict=c["verdict"])
            else:
                la, lb = [it["loss"] for it in after], [it["loss"] for it in before]
                c = paired_losses(la, lb, "after", "before")
                row.update(n=c["n_shared"], improved=sum(a < b for a, b in zip(la, lb)),
                           worsened=sum(a > b for a, b in zip(la, lb)), diff=c["diff"], diff_low=c["diff_low"],
                           diff_high=c["diff_high"], beyond_noise=c["beyond_noise"], verdict=c["verdict"])
            out.append(row)
    return out


def reconsolidation(r: MethodResult) -> dict | None:
    """A shift and a return (stages training tasks a, b, then a again): task a's metric before the shift, after
    it and after the return, and task b's after the shift and after the return."""
    trained = [st.task for st in r.stages]
    if len(trained) != 3 or trained[0] != trained[2] or trained[0] == trained[1]:
        return None
    a, b = trained[0], trained[1]
    R = r.R
    return {"first": r.stages[0].name, "second": r.stages[1].name,
            "first_before_shift": R[0][a], "first_after_shift": R[1][a], "first_after_return": R[2][a],
            "second_after_shift": R[1][b], "second_after_return": R[2][b]}


def method_metrics(scn: Scenario, r: MethodResult, window: int) -> dict:
    trained = [st.task for st in r.stages]
    m = matrix_metrics(r.R, trained, scn.higher_is_better)
    m["loss_matrix"] = r.loss_R
    m["loss_forgetting"] = matrix_metrics(r.loss_R, trained, higher_is_better=False)["forgetting"]
    m.update(R=r.R, stages=[{"name": st.name, "task": scn.tasks[st.task].name,
                            "mix": {scn.tasks[t].name: share for t, share in st.mix}} for st in r.stages],
             seconds=r.seconds, **r.extra)
    m["spikes"] = spike_factors(r.history, window, TARGETS["spike_factor_below"])
    factors = [s["spike_factor"] for s in m["spikes"] if s["spike_factor"] is not None]
    m["max_spike"] = max(factors) if factors else None
    m["stage_diff"] = stage_diff(scn, r)
    recon = reconsolidation(r)
    if recon is not None:
        m["reconsolidation"] = recon
    if scn.curriculum is not None:
        m.update(retention(r.R, trained))
        m["targets_hit"] = {
            "spike": m["max_spike"] is not None and m["max_spike"] < TARGETS["spike_factor_below"],
            "retention": m["base_retention"] is not None and m["base_retention"] > TARGETS["base_retention_above"],
            "modification": m["modification_success"] > TARGETS["modification_success_above"]}
    return m


def build_metrics(scn: Scenario, results: list[MethodResult], c: EwcConfig) -> dict:
    per = {r.method: method_metrics(scn, r, c.spike_window) for r in results}
    naive = next((r for r in results if r.method == "naive"), None)
    flat: dict = {}
    for r in results:
        m = per[r.method]
        flat[f"{r.method}_average_{scn.metric}"] = m["average"]
        flat[f"{r.method}_mean_forgetting"] = m["mean_forgetting"]
        flat[f"{r.method}_bwt"] = m["bwt"]
        flat[f"{r.method}_max_spike"] = m["max_spike"]
        if scn.curriculum is not None:
            flat[f"{r.method}_base_retention"] = m["base_retention"]
            flat[f"{r.method}_modification_success"] = m["modification_success"]
        for k, v in m.get("reconsolidation", {}).items():
            if k not in ("first", "second"):
                flat[f"{r.method}_{k}"] = v
        if naive is not None and r is not naive:
            m["vs_naive"] = {"difference": m["average"] - per["naive"]["average"], "paired": _paired(r, naive)}
    methods = [r.method for r in results]
    primary = "ewc" if "ewc" in methods else methods[0]
    info = {k: v for k, v in scn.info.items() if k not in ("vocab", "eos")}
    return {**flat, "primary_key": f"{primary}_average_{scn.metric}", "scenario": scn.name, "model": scn.family,
            "metric": scn.metric, "higher_is_better": scn.higher_is_better, "tasks": [t.name for t in scn.tasks],
            "n_test": results[0].n, "methods": per, "data": info,
            "targets": TARGETS if scn.curriculum is not None else None,
            "held_out": "every R[i][j] is measured on task j's held-out test items (n_test), never trained on; "
                        "validation curves in history use a separate held-out subset"}


def write_plots(run_dir: Path, scn: Scenario, results: list[MethodResult]) -> list[str]:
    """methods/<method>/R.png: R as a heatmap, stages down, tasks across, each cell annotated."""
    import numpy as np

    from phases.core import plots

    plt = plots.pyplot()
    paths = []
    for r in results:
        R = np.asarray(r.R, dtype=float)
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * R.shape[1], 1.0 + 0.6 * R.shape[0]))
        cmap = "viridis" if scn.higher_is_better else "viridis_r"
        im = ax.imshow(R, cmap=cmap, aspect="auto",
                       vmin=0 if scn.higher_is_better else None, vmax=1 if scn.higher_is_better else None)
        for (i, j), v in np.ndenumerate(R):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if (v < 0.5) == scn.higher_is_better
                    else "k", fontsize=8)
        ax.set_xticks(range(R.shape[1]), [t.name for t in scn.tasks], rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(R.shape[0]), [f"after {st.name}" for st in r.stages], fontsize=8)
        ax.set_title(f"{scn.name}: {r.method} ({scn.metric})", fontsize=9)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        paths.append(str(plots.save(fig, run_dir / "methods" / r.method / "R.png")))
    return paths


def render_summary(scn: Scenario, results: list[MethodResult], metrics: dict, stage_diffs: bool = False) -> None:
    per = metrics["methods"]
    word = {"acc": "accuracy", "exact_match": "exact match", "loss": "loss"}[scn.metric]
    for r in results:
        render.table(f"{r.method}: R[i][j] ({word} on task j's held-out data after stage i)",
                     ["after stage", *(f"{t.name} (n={n})" for t, n in zip(scn.tasks, r.n))],
                     [[st.name, *row] for st, row in zip(r.stages, r.R)])
    cols = ["method", f"avg {scn.metric}", "forgetting", "BWT", "learning", "max spike"]
    if scn.curriculum is not None:
        cols += ["retention", "modified"]
    cols += ["vs naive", "McNemar p" if scn.kind != "lm" else "paired bootstrap", "s"]
    rows = []
    for r in results:
        m = per[r.method]
        row = [r.method, m["average"], m["mean_forgetting"], m["bwt"], m["learning"], m["max_spike"]]
        if scn.curriculum is not None:
            row += [m["base_retention"], m["modification_success"]]
        vs = m.get("vs_naive")
        paired = vs["paired"] if vs else None
        if paired and scn.kind == "lm":  # a bootstrap interval, no p-value: say which side of noise it falls
            paired = "beyond noise" if paired["beyond_noise"] else "within noise"
        elif paired:
            paired = paired["p_value"]
        row += [vs["difference"] if vs else None, paired, round(m["seconds"], 1)]
        rows.append(row)
    better = "higher" if scn.higher_is_better else "lower"
    render.table(f"{scn.name}: methods compared on identical data and seed ({better} is better; forgetting and BWT "
                 "signed so that forgetting > 0 and BWT < 0 mean harm)", cols, rows)
    if scn.curriculum is not None:
        t = metrics["targets"]
        for r in results:
            hit = per[r.method]["targets_hit"]
            render.say(f"  {r.method}: spike < {t['spike_factor_below']}x {'hit' if hit['spike'] else 'MISSED'}, "
                       f"base retention > {t['base_retention_above']:.0%} {'hit' if hit['retention'] else 'MISSED'}, "
                       f"modification success > {t['modification_success_above']:.0%} "
                       f"{'hit' if hit['modification'] else 'MISSED'}")
    for r in results:
        vs = per[r.method].get("vs_naive")
        if scn.kind == "lm" and vs and vs["paired"]:
            render.say(f"  {vs['paired']['verdict']}", markup=False)
    recon = [(r.method, per[r.method]["reconsolidation"]) for r in results if "reconsolidation" in per[r.method]]
    if recon:
        first, second = recon[0][1]["first"], recon[0][1]["second"]
        render.table(f"reconsolidation: {first}, then {second}, then back ({word} on the held-out windows)",
                     ["method", f"{first} before shift", "after shift", "after return",
                      f"{second} after shift", "after return"],
                     [[m, v["first_before_shift"], v["first_after_shift"], v["first_after_return"],
                       v["second_after_shift"], v["second_after_return"]] for m, v in recon])
    if stage_diffs:
        for r in results:
            rows = per[r.method]["stage_diff"]
            if not rows:
                continue
            lm = "improved" in rows[0]
            render.table(f"{r.method}: what each stage changed on the held-out items (after - before)",
                         ["stage", "task", "n", *(("improved", "worsened") if lm else ("fixed", "broken")),
                          "diff", "95% CI", "beyond noise"],
                         [[f"{d['from']} -> {d['to']}", d["task"], d["n"],
                           *((d["improved"], d["worsened"]) if lm else (d["fixed"], d["broken"])), d["diff"],
                           f"[{render.fmt(d['diff_low'])}, {render.fmt(d['diff_high'])}]",
                           "yes" if d["beyond_noise"] else "no"] for d in rows])
    render.say(f"run folder: {metrics['run_dir']}")

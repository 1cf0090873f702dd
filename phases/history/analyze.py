"""What a training history says: per-stage loss statistics, loss spikes at stage boundaries, stagnation,
overfitting and forgetting. Every finding carries the numbers behind it and a sentence in plain words.

Definitions (thresholds are options of `nlab analyze-history`, defaults in `Thresholds`):
- spike factor at a boundary = peak training loss over the first `window` points of the new stage / mean
  training loss over the last `window` points of the previous stage (phases/core/spikes.py); a spike is a factor
  >= `spike_threshold`.
- stagnation: over the second half of a stage's training-loss points, the fitted linear trend changes the loss
  by less than `stagnation_tol` (relative to the mean loss there) from the half's first to its last step.
- overfitting: within a stage, the best validation evaluation is followed by at least `patience` evaluations,
  none better and the last strictly worse, while the training loss fell from that step to the stage's end.
  It began at the step of that best evaluation.
- forgetting: for evaluations tagged with a `task` (the data evaluated) that continue after a later stage,
  the drop of the final value from the task's best value; reported when the drop exceeds
  `forgetting_threshold` of the best value.
"""

from __future__ import annotations

import numpy as np

from phases.core.spikes import spike_factor
from phases.core.stats import lower_is_better
from phases.history.config import Thresholds
from phases.history.load import History


def _stage_label(stage: str | None) -> str:
    return "(whole run)" if stage is None else repr(stage)


def _series(pairs: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) sorted by step."""
    pairs = sorted(pairs)
    return np.array([s for s, _ in pairs], dtype=float), np.array([v for _, v in pairs], dtype=float)


def _select(hist: History, split: str, metric: str, stage=..., own_data_only: bool = True) -> list[tuple]:
    """Points of one metric of one split (optionally one stage). `own_data_only` drops evaluations tagged with
    another stage's task, which belong to forgetting, not to this stage's curve."""
    out = []
    for p in hist.points:
        if p.split != split or metric not in p.metrics:
            continue
        if stage is not ... and p.stage != stage:
            continue
        if own_data_only and p.task is not None and p.task != p.stage:
            continue
        out.append((p.step, p.metrics[metric]))
    return out


def _pick_val_metric(hist: History, t: Thresholds) -> str | None:
    if t.val_metric:
        return t.val_metric
    val_metrics = sorted({m for p in hist.points if p.split == t.val_split for m in p.metrics})
    if hist.selection_metric in val_metrics:
        return hist.selection_metric
    if t.loss_metric in val_metrics:
        return t.loss_metric
    return val_metrics[0] if val_metrics else None


def _train_split(hist: History, t: Thresholds) -> str | None:
    """The split whose loss is 'the training loss': train if it logs the loss metric, else the first that does."""
    splits = sorted({p.split for p in hist.points if t.loss_metric in p.metrics})
    if "train" in splits:
        return "train"
    return splits[0] if splits else None


def stage_stats(hist: History, t: Thresholds) -> list[dict]:
    train_split, val_metric = _train_split(hist, t), _pick_val_metric(hist, t)
    rows = []
    for stage in hist.stages():
        in_stage = [p.step for p in hist.points if p.stage == stage]
        row = {"stage": stage, "first_step": min(in_stage), "last_step": max(in_stage)}
        if train_split:
            steps, loss = _series(_select(hist, train_split, t.loss_metric, stage))
            if len(loss):
                row.update(n_loss_points=len(loss), loss_first=loss[0], loss_last=loss[-1], loss_min=loss.min(),
                           loss_mean=loss.mean())
        if val_metric:
            vsteps, vals = _series(_select(hist, t.val_split, val_metric, stage))
            if len(vals):
                best = int(np.argmin(vals) if lower_is_better(val_metric) else np.argmax(vals))
                row.update(val_metric=f"{t.val_split}_{val_metric}", val_best=vals[best],
                           val_best_step=int(vsteps[best]), val_last=vals[-1])
        rows.append(row)
    return rows


def spikes(hist: History, t: Thresholds) -> list[dict]:
    train_split = _train_split(hist, t)
    stages = hist.stages()
    out = []
    if train_split is None or len(stages) < 2:
        return out
    for prev, new in zip(stages, stages[1:]):
        _, before = _series(_select(hist, train_split, t.loss_metric, prev))
        after_steps, after = _series(_select(hist, train_split, t.loss_metric, new))
        if not len(before) or not len(after):
            continue
        s = spike_factor(before[-t.window:], after[: t.window])
        factor, peak_i = s["spike_factor"], s["peak_index"]
        out.append({"from_stage": prev, "to_stage": new, "boundary_step": int(after_steps[0]),
                    "baseline_loss": s["loss_before"], "peak_loss": s["peak_after"],
                    "peak_step": int(after_steps[peak_i]), "spike_factor": factor, "window": t.window,
                    "is_spike": factor is not None and factor >= t.spike_threshold})
    return out


def stagnation(hist: History, t: Thresholds) -> list[dict]:
    from scipy.stats import linregress

    train_split = _train_split(hist, t)
    out = []
    if train_split is None:
        return out
    for stage in hist.stages():
        steps, loss = _series(_select(hist, train_split, t.loss_metric, stage))
        if len(loss) < 4:
            continue  # too short to judge a trend
        s, v = steps[len(steps) // 2:], loss[len(loss) // 2:]
        if s[-1] == s[0]:
            continue
        fit = linregress(s, v)
        mean = float(np.abs(v).mean())
        rel = float(fit.slope * (s[-1] - s[0]) / mean) if mean > 0 else 0.0
        out.append({"stage": stage, "from_step": int(s[0]), "to_step": int(s[-1]), "n_points": len(v),
                    "slope_per_step": float(fit.slope), "p_value": float(fit.pvalue), "relative_change": rel,
                    "mean_loss": float(v.mean()), "is_stagnant": abs(rel) < t.stagnation_tol})
    return out


def _value_at(steps: np.ndarray, values: np.ndarray, step: float) -> float:
    """The last logged value at or before `step` (the first one if none came before)."""
    i = int(np.searchsorted(steps, step, side="right")) - 1
    return float(values[max(i, 0)])


def overfitting(hist: History, t: Thresholds) -> list[dict]:
    """Per stage: the validation metric's best evaluation is followed by at least `patience` evaluations, none
    better, the last strictly worse, while the training loss fell over the same steps."""
    train_split, val_metric = _train_split(hist, t), _pick_val_metric(hist, t)
    out = []
    if train_split is None or val_metric is None:
        return out
    lower = lower_is_better(val_metric)
    for stage in hist.stages():
        vsteps, vals = _series(_select(hist, t.val_split, val_metric, stage))
        tsteps, tloss = _series(_select(hist, train_split, t.loss_metric, stage))
        if len(vals) <= t.patience or not len(tloss):
            continue
        best = int(np.argmin(vals) if lower else np.argmax(vals))  # first occurrence of the stage's best
        worse_at_end = vals[-1] > vals[best] if lower else vals[-1] < vals[best]
        if len(vals) - 1 - best < t.patience or not worse_at_end:
            continue
        train_then = _value_at(tsteps, tloss, vsteps[best])
        train_last = float(tloss[-1])
        if train_last < train_then:
            out.append({"stage": stage, "val_metric": f"{t.val_split}_{val_metric}",
                        "began_step": int(vsteps[best]), "detected_step": int(vsteps[best + t.patience]),
                        "evaluations_after_best": len(vals) - 1 - best, "val_best": float(vals[best]),
                        "val_last": float(vals[-1]), "train_loss_at_best": train_then,
                        "train_loss_last": train_last, "patience": t.patience})
    return out


def forgetting(hist: History, t: Thresholds) -> list[dict]:
    stages = hist.stages()
    order = {s: i for i, s in enumerate(stages)}
    out = []
    tasks = sorted({p.task for p in hist.points if p.task is not None})
    for task in tasks:
        tagged = [p for p in hist.points if p.task == task]
        first_stage = min((p.stage for p in tagged), key=lambda s: order[s])
        own = task if task in order else first_stage  # the stage that trained on this task's data
        for split in sorted({p.split for p in tagged}):
            for metric in sorted({m for p in tagged if p.split == split for m in p.metrics}):
                pts = sorted((p for p in tagged if p.split == split and metric in p.metrics), key=lambda p: p.step)
                later = [p for p in pts if order[p.stage] > order[own]]
                if not later:
                    continue  # never evaluated after a later stage
                vals = np.array([p.metrics[metric] for p in pts])
                lower = lower_is_better(metric)
                best_i = int(np.argmin(vals) if lower else np.argmax(vals))
                best, final = float(vals[best_i]), float(vals[-1])
                drop = (final - best) if lower else (best - final)
                rel = drop / abs(best) if best != 0 else (0.0 if drop == 0 else float("inf"))
                out.append({"task": task, "metric": f"{split}_{metric}", "trained_in_stage": own,
                            "best": best, "best_step": pts[best_i].step, "final": final, "final_step": pts[-1].step,
                            "final_stage": pts[-1].stage, "drop": drop, "relative_drop": rel,
                            "is_forgetting": rel > t.forgetting_threshold})
    return out


def analyze(hist: History, t: Thresholds) -> dict:
    """All analyses of one history, plus its findings in plain words."""
    result = {
        "name": hist.name, "source": str(hist.source), "n_points": len(hist.points),
        "n_bad_lines": len(hist.bad_lines), "bad_lines": hist.bad_lines[:100],
        "stages": stage_stats(hist, t), "boundaries": spikes(hist, t), "stagnation": stagnation(hist, t),
        "overfitting": overfitting(hist, t), "forgetting": forgetting(hist, t),
    }
    result["findings"] = findings(result, t)
    return result


# What each kind of finding says, filled from the thresholds (`Thresholds` fields, `tol_pct` and `forgetting_pct`
# in percent), the entry's own numbers (which win a name clash) and its stage labels (`<key>_label`).
_SENTENCES = {
    "spike": "loss spike x{spike_factor:.2f} entering stage {to_stage_label} (step {boundary_step}): peak training "
             "loss {peak_loss:.4g} at step {peak_step} within its first {window} points, against {baseline_loss:.4g}"
             " averaged over the last {window} points of stage {from_stage_label} (threshold x{spike_threshold:g}).",
    "stagnation": "stage {stage_label} stagnated: over its second half (steps {from_step}-{to_step}, {n_points} "
                  "points) the training loss trend changed it by {relative_change:+.2%} (slope "
                  "{slope_per_step:.3g}/step, p={p_value:.2f}) around a mean of {mean_loss:.4g}; tolerance "
                  "+/-{tol_pct:g}%.",
    "overfitting": "overfitting from step {began_step} in stage {stage_label}: {val_metric} was best at "
                   "{val_best:.4g} there and never improved in the {evaluations_after_best} evaluations after it "
                   "(last {val_last:.4g}; patience {patience} reached at step {detected_step}) while the training "
                   "loss fell from {train_loss_at_best:.4g} to {train_loss_last:.4g}.",
    "forgetting": "forgetting of task {task!r} ({metric}): best {best:.4g} at step {best_step}, final {final:.4g} "
                  "at step {final_step} after stage {final_stage_label}: a drop of {drop:.4g} ({relative_drop:.1%} "
                  "of its best; threshold {forgetting_pct:g}%).",
}
# kind, the analysis it reads, the flag an entry must carry (None: every entry), its stage and value
_FINDINGS = (("spike", "boundaries", "is_spike", "to_stage", "spike_factor"),
             ("stagnation", "stagnation", "is_stagnant", "stage", "relative_change"),
             ("overfitting", "overfitting", None, "stage", "began_step"),
             ("forgetting", "forgetting", "is_forgetting", "final_stage", "drop"))


def _sentence(kind: str, entry: dict, t: Thresholds) -> str:
    labels = {f"{k}_label": _stage_label(entry[k]) for k in ("stage", "from_stage", "to_stage", "final_stage")
              if k in entry}
    return _SENTENCES[kind].format(**{**vars(t), "tol_pct": 100 * t.stagnation_tol,
                                      "forgetting_pct": 100 * t.forgetting_threshold, **entry, **labels})


def findings(r: dict, t: Thresholds) -> list[dict]:
    """Every flagged entry of the analyses, kind by kind, with its numbers in a sentence."""
    return [{"kind": kind, "run": r["name"], "stage": x[stage], "value": x[value], "text": _sentence(kind, x, t)}
            for kind, key, flag, stage, value in _FINDINGS for x in r[key] if flag is None or x[flag]]

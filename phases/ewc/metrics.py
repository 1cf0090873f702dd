"""Continual-learning metrics, defined once and used by every scenario and method (as Avalanche does).

R[i][j] is the metric (accuracy, exact match or loss) on task j's held-out data after training stage i. Stage i
trains task `trained[i]` (several stages may train the same task: a curriculum). With S stages, for each task j
that was trained before the last stage (its training ended at stage e_j = the last stage training j, e_j < S-1):

- average accuracy (or loss) = mean over the tasks of R[S-1][j] (the final model on every task);
- forgetting f_j = best R[i][j] over the stages i from the first that trained j up to S-2, minus R[S-1][j]
  (Chaudhry et al. 2018); for a loss the sign is turned so that forgetting is positive when the loss rose;
- backward transfer BWT = mean over those tasks of R[S-1][j] - R[e_j][j] (Lopez-Paz & Ranzato 2017), signed so
  that a negative BWT always means the later stages hurt task j;
- learning accuracy = mean over the tasks of R[e_j][j] (how well each task was learnt when it was trained);
- the loss spike factor at a stage boundary is `nlab analyze-history`'s definition (phases.history.analyze.spikes):
  the peak training loss over the first `window` logged points of the new stage over the mean of the last
  `window` points of the previous stage;
- base retention (a base/modified curriculum) = final base metric / base metric at the end of the base stage,
  and modification success = the final metric on the modified task.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _ends(trained: list[int]) -> dict[int, int]:
    return {j: max(i for i, t in enumerate(trained) if t == j) for j in set(trained)}


def _starts(trained: list[int]) -> dict[int, int]:
    return {j: min(i for i, t in enumerate(trained) if t == j) for j in set(trained)}


def matrix_metrics(R, trained: list[int], higher_is_better: bool = True) -> dict:
    """Average, per-task and mean forgetting, BWT and learning accuracy of a stage x task matrix R."""
    R = np.asarray(R, dtype=float)
    S, T = R.shape
    if len(trained) != S:
        raise ValueError(f"R has {S} rows but {len(trained)} stages")
    sign = 1.0 if higher_is_better else -1.0
    ends, starts = _ends(trained), _starts(trained)
    final = R[-1]
    forgetting: list[float | None] = [None] * T
    bwt_terms = []
    for j, e in ends.items():
        if e >= S - 1:
            continue  # trained at the last stage: nothing came after it
        rows = R[starts[j]:S - 1, j]
        best = rows.max() if higher_is_better else rows.min()
        forgetting[j] = float(sign * (best - final[j]))
        bwt_terms.append(sign * (final[j] - R[e, j]))
    given = [f for f in forgetting if f is not None]
    return {
        "average": float(final.mean()),
        "final": final.tolist(),
        "learning": float(np.mean([R[e, j] for j, e in ends.items()])),
        "forgetting": forgetting,
        "mean_forgetting": float(np.mean(given)) if given else None,
        "bwt": float(np.mean(bwt_terms)) if bwt_terms else None,
    }


def retention(R, trained: list[int], base: int = 0, modified: int = 1) -> dict:
    """Base retention and modification success of a base/modified curriculum (higher-is-better metric)."""
    R = np.asarray(R, dtype=float)
    base_end = _ends(trained)[base]
    at_end = R[base_end, base]
    return {"base_after_base_stage": float(at_end), "base_final": float(R[-1, base]),
            "base_retention": float(R[-1, base] / at_end) if at_end > 0 else None,
            "modification_success": float(R[-1, modified])}


def spike_factors(records: list[dict], window: int, threshold: float = 2.0) -> list[dict]:
    """Spike factor at every stage boundary of a history (records as in history.jsonl), by analyze-history's own
    definition and code."""
    from phases.history.analyze import spikes
    from phases.history.config import Thresholds
    from phases.history.load import RESERVED, History, Point

    points = [Point(int(r["step"]), r.get("split", "train"), r.get("stage"), r.get("task"),
                    {k: float(v) for k, v in r.items() if k not in RESERVED and isinstance(v, (int, float))
                     and not isinstance(v, bool)})
              for r in records]
    return spikes(History("ewc", Path("history.jsonl"), points), Thresholds(window=window, spike_threshold=threshold))

"""Taguchi's analysis of an orthogonal-array sweep: signal-to-noise ratios over each run's seeds, the main effect of
each factor (the mean metric and S/N at each of its levels, averaged over the runs at that level: balanced
because the array is), the predicted best level of each factor, and the additive prediction of the metric at the
combination of best levels (grand mean + each factor's best-level effect), which a confirmation run checks.
Main effects assume interactions are small; the confirmation run is the test of that assumption."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def sn_ratio(values: Sequence[float], lower_is_better: bool) -> float:
    """Taguchi's S/N in dB: smaller-the-better -10 log10(mean y^2), larger-the-better -10 log10(mean 1/y^2).
    Higher is better either way; -inf when a larger-the-better value is 0."""
    y = np.asarray(values, dtype=float)
    if lower_is_better:
        return float(-10 * np.log10(np.mean(y ** 2))) if np.any(y) else math.inf
    if np.any(y == 0):
        return -math.inf
    return float(-10 * np.log10(np.mean(1 / y ** 2)))


def main_effects(runs: list[dict], factors: list[tuple[str, list]], lower_is_better: bool) -> dict:
    """`runs`: {"levels": {factor: value}, "values": [the metric per seed]} for each array row that finished;
    `factors`: (name, its levels in order). Per factor and level: runs, mean, S/N; the factor's range (max - min
    of the level means) and rank; the best level (highest mean S/N; the best mean where S/N is not finite)."""
    for r in runs:
        r["mean"], r["sn"] = float(np.mean(r["values"])), sn_ratio(r["values"], lower_is_better)
    grand = float(np.mean([r["mean"] for r in runs]))
    sign = -1 if lower_is_better else 1
    table = []
    for name, levels in factors:
        rows = []
        for value in levels:
            at = [r for r in runs if r["levels"][name] == value]
            rows.append({"level": value, "runs": len(at), "mean": float(np.mean([r["mean"] for r in at])) if at
                         else math.nan, "sn": float(np.mean([r["sn"] for r in at])) if at else math.nan})
        seen = [x for x in rows if x["runs"]]
        by_sn = all(math.isfinite(x["sn"]) for x in seen)
        best = max(seen, key=lambda x: x["sn"] if by_sn else sign * x["mean"])
        means = [x["mean"] for x in seen]
        table.append({"factor": name, "levels": rows, "best": best["level"], "chosen_by": "sn" if by_sn else "mean",
                      "range": max(means) - min(means), "effect": best["mean"] - grand})
    for rank, f in enumerate(sorted(table, key=lambda f: -f["range"]), start=1):
        f["rank"] = rank
    predicted = grand + sum(f["effect"] for f in table)
    return {"grand_mean": grand, "factors": table, "predicted_best": {f["factor"]: f["best"] for f in table},
            "predicted_mean": predicted}

"""The loss spike factor, written once: apoptosis measures it around every turnover event, analyze-history (and
ewc, through analyze-history) at every stage boundary.

spike factor = peak training loss over the `window` losses after a boundary
               / mean training loss over the `window` losses before it.

A factor of 1 means the boundary did not disturb training; the lab's target is below 2. The callers differ only
in what one loss is: apoptosis passes the loss of every update (the boundary is the event's step), analyze-history
the logged training-loss points of the two stages (the boundary is the new stage's first point). The mean is
math.fsum's (exactly rounded); the peak is the first maximum. The factor is None when either side is empty or the
mean before is not positive."""

from __future__ import annotations

import math
from typing import Sequence


def spike_factor(before: Sequence[float], after: Sequence[float]) -> dict:
    """The factor of a boundary from the losses just before it and just after it (already cut to the window):
    {"loss_before": mean before, "peak_after": peak after, "peak_index": its position in `after`,
    "window_after": len(after), "spike_factor": peak_after / loss_before or None}."""
    before, after = [float(v) for v in before], [float(v) for v in after]
    loss_before = math.fsum(before) / len(before) if before else math.nan
    peak_i = max(range(len(after)), key=after.__getitem__) if after else None
    peak = after[peak_i] if after else math.nan
    factor = peak / loss_before if before and after and loss_before > 0 else None
    return {"loss_before": loss_before, "peak_after": peak, "peak_index": peak_i, "window_after": len(after),
            "spike_factor": factor}


def spike_stats(losses: Sequence[float], index: int, window: int) -> dict:
    """The factor at position `index` of one loss series: losses[index - window:index] before it (mean),
    losses[index:index + window] after it (peak)."""
    return spike_factor(losses[max(0, index - window):index], losses[index:index + window])

"""Options of analyze-history, with their documented defaults. Light to import: the CLI builds these."""

from __future__ import annotations

from dataclasses import dataclass, field

from phases.core.options import at_least, in_range, positive


@dataclass
class Thresholds:
    loss_metric: str = "loss"  # the metric that is 'the loss'
    val_split: str = "val"  # the split holding validation evaluations
    # default: the metric the run chose its weights on (metrics.json `selection_metric`, e.g. train-lora's
    # accuracy), else the loss when validation logs it, else validation's first metric
    val_metric: str | None = None
    window: int = at_least(1, 5)  # logged points on each side of a stage boundary, for the spike factor
    # a boundary whose spike factor reaches this is a spike (the lab's target: < 2x)
    spike_threshold: float = in_range(2.0, 1, lo_open=True)
    # |relative loss change| over a stage's second half below this is stagnation
    stagnation_tol: float = positive(0.01)
    # validation evaluations without improvement (last one worse) that make overfitting
    patience: int = at_least(1, 3)
    forgetting_threshold: float = at_least(0, 0.05)  # relative drop from a task's best that counts as forgetting


@dataclass
class HistoryConfig:
    inputs: list[str]
    thresholds: Thresholds = field(default_factory=Thresholds)
    skip_bad_lines: bool = False
    plot: bool = True
    out: str | None = None
    name: str | None = None

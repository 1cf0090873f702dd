"""Options of `nlab sweep`. Light to import: the CLI builds this."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from phases.core.options import at_least, choice, in_range
from phases.sweep.config import MODES, LaunchOptions

DESIGNS = ("grid", "random", "taguchi", "tpe")
PRUNERS = ("median", "halving", "none")  # tpe: Optuna's MedianPruner, SuccessiveHalvingPruner, or no pruning


@dataclass
class SearchConfig(LaunchOptions):
    phase: str
    params: list[str] = field(default_factory=list)  # NAME=SPEC, as given to --param
    phase_args: list[str] = field(default_factory=list)  # the fixed options after --, the same for every run
    design: str = choice("grid", DESIGNS)
    trials: int | None = at_least(1, None)  # random and tpe: how many configurations (required there)
    levels: int = in_range(3, 2, 9)  # grid and taguchi: points a range is cut into (taguchi: 2 or 3)
    design_seed: int = 0  # draws of random, TPE's sampler: the same seed gives the same configurations
    pruner: str = choice("median", PRUNERS)
    seeds: int = at_least(1, 3)  # per configuration; every configuration runs the same seeds
    seed_start: int = 0
    baseline: str | None = None  # a trial number or NAME=VALUE[,NAME=VALUE]; "none": no comparison; default 0
    select: str = "val_acc"  # chooses the configuration (validation data)
    report: str = "test_acc"  # reported for the chosen configuration, never used to choose
    mode: str | None = choice(None, MODES, "max for accuracies, min for losses")  # default: from --select's name
    alpha: float = in_range(0.05, 0, 1, lo_open=True, hi_open=True)  # the level of "beyond noise"
    top_k: int = at_least(1, 3)  # the best configuration's seeds listed for ensemble-vote
    resume: str | None = None
    out: str | None = None
    name: str | None = None

    # how the runs are launched and the finished ones summarised, not what any run computes; and --trials, so that a
    # resumed random or tpe sweep may go on further (random's first draws are the same whatever their number)
    resume_may_differ: ClassVar[tuple[str, ...]] = (*LaunchOptions.LAUNCH_FIELDS, "report", "alpha", "top_k",
                                                    "baseline", "trials")

    def seed_values(self) -> list[int]:
        return list(range(self.seed_start, self.seed_start + self.seeds))

    @property
    def compares(self) -> bool:
        return (self.baseline or "").lower() != "none"

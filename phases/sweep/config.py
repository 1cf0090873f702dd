"""Options of seed-sweep (and its --compare mode). Light to import: the CLI builds these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from phases.core.options import at_least, choice, in_range
from phases.registry import SWEEPABLE  # noqa: F401  (the phases a sweep can run: declared in the registry)

LAUNCHERS = ("local", "ray", "submitit")
MODES = ("max", "min")  # which direction of the metric is better


@dataclass(kw_only=True)
class LaunchOptions:
    """Where and how the seeds' processes run (seed-sweep and sweep alike): never part of what a seed computes."""

    workers: int = at_least(1, 1)  # local launcher: seeds run in parallel, CPU threads divided between them
    launcher: str = choice("local", LAUNCHERS)
    ray_address: str | None = None  # None: a local Ray instance
    num_cpus: float = at_least(0, 1.0)  # ray: per seed
    num_gpus: float = at_least(0, 0.0)  # ray: per seed
    slurm_partition: str | None = None  # submitit: Slurm partition (local processes where Slurm is absent)
    timeout_min: int = at_least(1, 60)  # submitit: per seed

    LAUNCH_FIELDS: ClassVar[tuple[str, ...]] = ("workers", "launcher", "ray_address", "num_cpus", "num_gpus",
                                                "slurm_partition", "timeout_min")


@dataclass
class SweepConfig(LaunchOptions):
    phase: str
    phase_args: list[str] = field(default_factory=list)  # passed through unchanged to every seed's run
    seeds: int = 5
    seed_start: int = 0
    seed_list: list[int] | None = None
    select: str = "val_acc"  # chooses the best seed
    report: str = "test_acc"  # reported for the chosen seed, never used to choose
    mode: str = choice("max", MODES, "max for accuracies, min for losses")
    top_k: int = at_least(1, 3)
    resume: str | None = None
    out: str | None = None
    name: str | None = None

    # how the seeds are run and how the finished ones are summarised; not what each seed computes
    resume_may_differ: ClassVar[tuple[str, ...]] = (*LaunchOptions.LAUNCH_FIELDS, "select", "report", "mode",
                                                    "top_k")

    def seed_values(self) -> list[int]:
        return list(self.seed_list) if self.seed_list else list(range(self.seed_start, self.seed_start + self.seeds))


@dataclass
class CompareConfig:
    sweep_a: str
    sweep_b: str
    metric: str | None = None  # default: the sweeps' report metric
    mode: str | None = choice(None, MODES)  # default: the sweeps' mode
    # P(A>B) at or above this (and its interval above 0.5) calls A better; Bouthillier et al. suggest 0.75
    threshold: float = in_range(0.75, 0.5, 1, lo_open=True, hi_open=True)
    out: str | None = None
    name: str | None = None

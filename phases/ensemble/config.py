"""Options of ensemble-vote. Light to import: the CLI builds these."""

from __future__ import annotations

from dataclasses import dataclass, field

METHODS = ("hard", "soft")


@dataclass
class EnsembleConfig:
    runs: list[str] = field(default_factory=list)
    from_sweep: str | None = None  # take the sweep's top-k seeds (ranked on its selection metric)
    top_k: int = 3
    method: str = "hard"  # hard: majority vote of answers; soft: mean class probabilities (classifiers)
    tie_break: str = "best-member"  # best-member | confidence | first (see phases.core.voting)
    out: str | None = None
    name: str | None = None

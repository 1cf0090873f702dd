"""Options of ensemble-vote. Light to import: the CLI builds these."""

from __future__ import annotations

from dataclasses import dataclass, field

from phases.core.options import at_least, choice
from phases.core.voting import TIE_BREAKS

METHODS = ("hard", "soft")


@dataclass
class EnsembleConfig:
    runs: list[str] = field(default_factory=list)
    from_sweep: str | None = None  # take the sweep's top-k seeds (ranked on its selection metric)
    top_k: int = at_least(1, 3)
    # hard: majority vote of answers; soft: mean class probabilities (classifiers)
    method: str = choice("hard", METHODS)
    tie_break: str = choice("best-member", TIE_BREAKS)  # see phases.core.voting
    out: str | None = None
    name: str | None = None

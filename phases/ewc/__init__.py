"""`nlab ewc`: a sequence of tasks learned one after another, with Elastic Weight Consolidation, an L2 control,
replay, a mixed curriculum and a gated modification layer against catastrophic forgetting, measured with one
set of continual-learning metrics."""

from phases.ewc.config import METHODS, SCENARIOS, EwcConfig


def run(config: EwcConfig) -> dict:
    from phases.ewc.phase import run as _run

    return _run(config)


__all__ = ["EwcConfig", "METHODS", "SCENARIOS", "run"]

"""`nlab apoptosis`: neuron death and rebirth in the MLPs of a char-level GPT while it trains."""

from phases.apoptosis.config import CROSSOVERS, FITNESSES, STRATEGIES, ApoptosisConfig


def run(config: ApoptosisConfig) -> dict:
    from phases.apoptosis.phase import run as _run

    return _run(config)


__all__ = ["ApoptosisConfig", "CROSSOVERS", "FITNESSES", "STRATEGIES", "run"]

"""`nlab ensemble-vote`: majority or soft voting over the predictions of several runs."""

from phases.ensemble.config import METHODS, EnsembleConfig


def run(config: EnsembleConfig) -> dict:
    from phases.ensemble.phase import run as _run

    return _run(config)


__all__ = ["METHODS", "EnsembleConfig", "run"]

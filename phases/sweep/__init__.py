"""`nlab seed-sweep`: one configuration under N seeds, with honest best-seed selection and statistics."""

from phases.sweep.config import LAUNCHERS, SWEEPABLE, CompareConfig, SweepConfig


def run(config: SweepConfig) -> dict:
    from phases.sweep.phase import run as _run

    return _run(config)


def compare(config: CompareConfig) -> dict:
    from phases.sweep.comparison import compare as _compare  # not a module named `compare`: it would replace this

    return _compare(config)


__all__ = ["LAUNCHERS", "SWEEPABLE", "CompareConfig", "SweepConfig", "compare", "run"]

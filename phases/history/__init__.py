"""`nlab analyze-history`: spikes, stagnation, forgetting and overfitting in training histories."""

from phases.history.config import HistoryConfig, Thresholds


def run(config: HistoryConfig) -> dict:
    from phases.history.phase import run as _run

    return _run(config)


__all__ = ["HistoryConfig", "Thresholds", "run"]

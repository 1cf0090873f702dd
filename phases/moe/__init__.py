"""`nlab train-moe`: mixture-of-experts training with routing diagnostics and multi-task gating."""

from phases.moe.config import TrainMoEConfig


def run(config: TrainMoEConfig) -> dict:
    from phases.moe.phase import run as _run

    return _run(config)


__all__ = ["TrainMoEConfig", "run"]

"""`nlab sweep`: which of several configurations of a phase is really better, each under K seeds."""

from phases.search.config import DESIGNS, PRUNERS, SearchConfig


def run(config: SearchConfig) -> dict:
    from phases.search.phase import run as _run

    return _run(config)


def argvs_to_check(config: SearchConfig) -> list[list[str]]:
    from phases.search.phase import argvs_to_check as _argvs

    return _argvs(config)


__all__ = ["DESIGNS", "PRUNERS", "SearchConfig", "argvs_to_check", "run"]

"""ewc's methods as strategies: small objects whose hooks (as Avalanche's plugins) add a method to the one
training loop in `phases/ewc/train.py`. `build` is the one place a method's name is looked up. `mixed` is a
curriculum rather than a hook: the naive strategy over the mixed stages the scenario plans for it
(`Scenario.stages`)."""

from __future__ import annotations

import torch

from phases.core.errors import InputError
from phases.ewc.config import EwcConfig
from phases.ewc.scenarios import Scenario
from phases.ewc.strategies.apoptosis import Apoptosis
from phases.ewc.strategies.ewc import L2, Ewc
from phases.ewc.strategies.gated import Gated
from phases.ewc.strategies.naive import Strategy
from phases.ewc.strategies.replay import Replay

STRATEGIES: dict[str, type[Strategy]] = {"naive": Strategy, "ewc": Ewc, "l2": L2, "replay": Replay,
                                         "mixed": Strategy, "gated": Gated, "apoptosis": Apoptosis}


def build(method: str, scenario: Scenario, config: EwcConfig, generator: torch.Generator, device) -> Strategy:
    if method not in STRATEGIES:
        raise InputError(f"--method {method!r}: unknown method", f"choose from {', '.join(STRATEGIES)}")
    return STRATEGIES[method](scenario, config, generator, device)


__all__ = ["STRATEGIES", "Strategy", "build"]

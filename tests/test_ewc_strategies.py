"""ewc's methods as strategies: each method name maps to its strategy (an unknown one is refused), and a strategy
of one's own plugs into the training loop through its hooks."""

from __future__ import annotations

import pytest
import torch

from phases.core.errors import InputError
from phases.ewc.config import METHODS, EwcConfig
from phases.ewc.scenarios import build as build_scenario
from phases.ewc.strategies import STRATEGIES, Strategy, build
from phases.ewc.strategies.apoptosis import Apoptosis
from phases.ewc.strategies.ewc import L2, Ewc
from phases.ewc.strategies.gated import Gated
from phases.ewc.strategies.replay import Replay
from phases.ewc.train import train_method

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    """Three permuted-digits tasks, a few steps each, on little data."""
    c = EwcConfig(tasks_count=3, steps=3, train_limit=100, eval_limit=20, batch_size=16, log_interval=1)
    return build_scenario(c), c


def test_each_method_maps_to_its_strategy(tiny):
    scn, c = tiny
    expected = {"naive": Strategy, "ewc": Ewc, "l2": L2, "replay": Replay, "mixed": Strategy, "gated": Gated,
                "apoptosis": Apoptosis}
    assert set(STRATEGIES) == set(METHODS) == set(expected)
    for method, cls in expected.items():
        assert type(build(method, scn, c, torch.Generator(), CPU)) is cls
    assert not Ewc.uniform and L2.uniform  # the L2 control: the same penalty, uniform importance
    with pytest.raises(InputError, match="--method 'si': unknown method"):
        build("si", scn, c, torch.Generator(), CPU)


class Counting(Strategy):
    """Counts its hook calls, adds a zero loss term and a record field, and reports the counts."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = {"before_stage": [], "extra_batches": 0, "extra_loss": 0, "after_stage": []}

    def before_stage(self, index, stage, model):
        self.calls["before_stage"].append((index, stage.name))

    def extra_batches(self):
        self.calls["extra_batches"] += 1
        return []

    def extra_loss(self, model):
        self.calls["extra_loss"] += 1
        zero = sum(p.sum() for p in model.parameters()) * 0.0
        return zero, {"hook_calls": self.calls["extra_loss"]}

    def after_stage(self, index, stage, model):
        self.calls["after_stage"].append((index, stage.name))

    def summary(self, model):
        return {"calls": self.calls}


def test_a_strategy_of_ones_own_plugs_in(tiny):
    scn, c = tiny
    r = train_method(scn, "counting", c, CPU, strategy=Counting)
    calls = r.extra["calls"]
    assert calls["before_stage"] == [(0, "perm1"), (1, "perm2"), (2, "perm3")]
    assert calls["extra_batches"] == calls["extra_loss"] == 3 * 3  # once per step
    assert calls["after_stage"] == [(0, "perm1"), (1, "perm2")]  # not after the last stage
    train = [h for h in r.history if h["split"] == "train"]
    assert [h["hook_calls"] for h in train] == list(range(1, 10))  # its record fields are logged
    assert r.method == "counting" and len(r.R) == 3
    # a zero loss term and no extra batches change nothing: the same R as naive fine-tuning
    assert r.R == train_method(scn, "naive", c, CPU).R

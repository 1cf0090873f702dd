"""Neuron turnover as a continual-learning method: `nlab apoptosis`'s own fitness tracking and turnover
(`phases/apoptosis/`) on the GPT's MLPs, with events every `--turnover-interval` steps in every stage after the
first, so that neurons the first domain no longer needs can die and be reborn for the shift (and for the return,
with --reconsolidate). Fitness (gradient x activation, an EMA) is tracked from the first step; neurons younger than
`--maturity` steps are never replaced; each newborn's Adam moments start at zero (the stage's optimizer). The first
stage trains exactly the naive model (the output bias that function-preserving deaths need is added, at zero, only
when turnover begins), so every method meets the shift from the same weights."""

from __future__ import annotations

import torch
import torch.nn as nn

from phases.ewc.scenarios import Stage
from phases.ewc.strategies.naive import Strategy


class Apoptosis(Strategy):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.turnover = None
        self.active = False
        self.stage = ""
        self.events: list[dict] = []

    def _start(self, model: nn.Module) -> None:
        from phases.apoptosis.config import ApoptosisConfig
        from phases.apoptosis.fitness import FitnessTracker
        from phases.apoptosis.lineage import Lineage
        from phases.apoptosis.turnover import PRESERVING, Turnover

        c = self.config
        self.settings = ApoptosisConfig(strategy=c.turnover_strategy, interval=c.turnover_interval,
                                        prune_rate=c.prune_rate, turnover_rate=c.prune_rate, maturity=c.maturity,
                                        seed=c.seed)
        gpt = model.gpt
        self.preserving = c.turnover_strategy in PRESERVING
        tracker = FitnessTracker(gpt.mlps, self.settings.fitness, self.settings.fitness_decay)
        lineage = Lineage([m.width for m in gpt.mlps])
        # the optimizer is the stage's (set at each stage's first event); the turnover's draws come from the
        # method's own generator, apart from the batches'
        gen = torch.Generator().manual_seed(int(torch.randint(2 ** 62, (1,), generator=self.generator)))
        self.turnover = Turnover(gpt, None, self.settings, tracker, lineage, gen)

    def before_stage(self, index: int, stage: Stage, model: nn.Module) -> None:
        if index == 0:
            self._start(model)
        elif index == 1 and self.preserving:
            from phases.apoptosis.surgery import ensure_output_bias

            for mlp in model.gpt.mlps:  # the dying neurons' mean contribution goes into c_proj's (zero) bias;
                ensure_output_bias(mlp)  # added before this stage's optimizer is built, so it trains from here
            model.to(self.device)
        self.active, self.stage = index > 0, stage.name

    def after_step(self, model: nn.Module, optimizer, step: int, stage_step: int) -> None:
        if not self.active or stage_step % self.config.turnover_interval:
            return
        self.turnover.optimizer = optimizer
        layers = self.turnover.event(step)
        rec = {"step": step, "stage": self.stage, "n_replaced": sum(r["n_killed"] for r in layers),
               "layers": [{k: r[k] for k in ("layer", "n_killed", "fitness_threshold", "parent_angle_deg")}
                          for r in layers]}
        self.events.append(rec)

    def summary(self, model: nn.Module) -> dict:
        s = self.settings
        return {"turnover": {"strategy": s.strategy, "interval": s.interval, "prune_rate": s.prune_rate,
                             "maturity": s.maturity, "n_events": len(self.events),
                             "neurons_replaced": sum(e["n_replaced"] for e in self.events),
                             "mlp_width": model.gpt.config.mlp_width, "n_mlps": len(model.gpt.mlps),
                             "events": self.events}}

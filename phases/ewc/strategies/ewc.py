"""Elastic weight consolidation and its L2 control. After each stage, the diagonal Fisher information of the
stage's task (on `--fisher-samples` of its training examples) anchors the parameters with the penalty
lambda/2 * sum_i F_i (theta_i - theta*_i)^2: `--ewc-mode separate` keeps an anchor per stage (Kirkpatrick et al.
2017, "Overcoming catastrophic forgetting in neural networks"), `online` one decayed running anchor (Schwarz et
al. 2018, "Progress & compress"). The L2 control is the same penalty with every importance set to the mean of the
Fisher diagonal: the same lambda and total importance, without EWC's choice of where the importance goes."""

from __future__ import annotations

import torch
import torch.nn as nn

from phases.ewc.fisher import compute_fisher
from phases.ewc.penalties import QuadraticPenalty
from phases.ewc.scenarios import Stage
from phases.ewc.strategies.naive import Strategy


class Ewc(Strategy):
    uniform = False  # the L2 control: one importance for every parameter

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        c = self.config
        self.penalty = QuadraticPenalty(c.ewc_lambda, c.ewc_mode, c.gamma, uniform=self.uniform)
        self.fisher_kind = ""
        self.fisher_means: list[float] = []

    def extra_loss(self, model: nn.Module) -> tuple[torch.Tensor | None, dict]:
        if not self.penalty.anchors:
            return None, {}
        pen = self.penalty(model)
        return pen, {"penalty": float(pen.detach())}

    def after_stage(self, index: int, stage: Stage, model: nn.Module) -> None:
        c, task = self.config, self.scenario.tasks[stage.task]
        x, y = task.examples(c.fisher_samples, self.generator)
        fisher, self.fisher_kind = compute_fisher(c.fisher, model, x.to(self.device), y.to(self.device),
                                                  task.model_task, self.scenario.loss_fn, c.fisher_batch)
        self.penalty.consolidate(fisher, model)
        self.fisher_means.append(float(sum(f.sum() for f in fisher.values()) /
                                       sum(f.numel() for f in fisher.values())))

    def summary(self, model: nn.Module) -> dict:
        return {"fisher": self.fisher_kind, "fisher_mean": self.fisher_means} if self.fisher_means else {}


class L2(Ewc):
    uniform = True

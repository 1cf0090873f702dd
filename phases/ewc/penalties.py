"""Quadratic penalties that hold parameters near the values they had after earlier stages.

`QuadraticPenalty` keeps anchors (importance, theta*) and adds lambda/2 * sum_i F_i * (theta - theta*_i)^2:
- EWC, `separate` mode (Kirkpatrick et al. 2017): one anchor per consolidated stage, each with its own Fisher;
- EWC, `online` mode (Schwarz et al. 2018): one anchor, its importance gamma * F_old + F_new, theta* the latest;
- the L2 control: the same penalty with every parameter's importance set to the mean of that stage's Fisher
  diagonal, so it has the same lambda and the same total importance as EWC and differs only in not choosing
  where the importance goes."""

from __future__ import annotations

import torch
import torch.nn as nn


class QuadraticPenalty:
    def __init__(self, lam: float, mode: str = "separate", gamma: float = 1.0, uniform: bool = False):
        self.lam, self.mode, self.gamma, self.uniform = lam, mode, gamma, uniform
        self.anchors: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []

    def consolidate(self, fisher: dict[str, torch.Tensor], model: nn.Module) -> None:
        """Add the importance of a just-finished stage, anchored at the model's current parameters."""
        if self.uniform:
            total = sum(f.sum() for f in fisher.values())
            mean = total / sum(f.numel() for f in fisher.values())
            fisher = {n: torch.full_like(f, float(mean)) for n, f in fisher.items()}
        theta = {n: p.detach().clone() for n, p in model.named_parameters() if n in fisher}
        if self.mode == "online" and self.anchors:
            old, _ = self.anchors[0]
            fisher = {n: self.gamma * old[n] + f for n, f in fisher.items()}
            self.anchors = []
        self.anchors.append(({n: f.detach().clone() for n, f in fisher.items()}, theta))

    def importance(self) -> list[dict[str, torch.Tensor]]:
        return [f for f, _ in self.anchors]

    def __call__(self, model: nn.Module) -> torch.Tensor:
        params = dict(model.named_parameters())
        total = torch.zeros((), device=next(model.parameters()).device)
        for fisher, theta in self.anchors:
            for n, f in fisher.items():
                total = total + (f * (params[n] - theta[n]).pow(2)).sum()
        return 0.5 * self.lam * total

"""Gated modification (scan): after the base stage the model is frozen and each named Linear becomes
`gate * modification + (1 - gate) * original` (`phases/core/models/gated.py`), the modification a trainable copy
and the gate a per-token sigmoid starting almost shut; only modifications and gates train, and `--gate-penalty`
times the mean gate joins the loss, keeping the gates shut where the modification is not needed."""

from __future__ import annotations

import torch
import torch.nn as nn

from phases.ewc.scenarios import Stage
from phases.ewc.strategies.naive import Strategy


class Gated(Strategy):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.layers: list = []  # the GatedLinear layers, once wrapped

    def before_stage(self, index: int, stage: Stage, model: nn.Module) -> None:
        if index == 1:  # the base stage (0) trains the plain model
            from phases.core.models.gated import wrap_linears

            self.layers = wrap_linears(model, self.scenario.gated_layers, self.config.gate_bias)
            model.to(self.device)

    def extra_loss(self, model: nn.Module) -> tuple[torch.Tensor | None, dict]:
        if not self.layers or not self.config.gate_penalty:
            return None, {}
        gate_mean = torch.stack([g.last_gate.mean() for g in self.layers]).mean()
        return self.config.gate_penalty * gate_mean, {"gate_mean": float(gate_mean.detach())}

    def summary(self, model: nn.Module) -> dict:
        if not self.layers:
            return {}
        return {"gates": {"layers": self.scenario.gated_layers, "mean_gate_by_task": self._gate_means(model)}}

    def _gate_means(self, model: nn.Module) -> dict:
        """Mean gate per wrapped layer on each task's validation data (how far each input is routed through the
        modification)."""
        scn, out = self.scenario, {}
        with torch.no_grad():
            model.eval()
            for t in scn.tasks:
                x, y = (v.to(self.device) for v in t.val)
                model(x, t.model_task)
                mask = (y >= 0).float().unsqueeze(-1) if scn.kind != "cls" else None
                out[t.name] = [float((g.last_gate * mask).sum() / mask.sum()) if mask is not None
                               else float(g.last_gate.mean()) for g in self.layers]
            model.train()
        return out

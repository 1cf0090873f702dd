"""Gated modification (scan): after the base stage the model is frozen and each named Linear becomes
`gate * modification + (1 - gate) * original` (`phases/core/models/gated.py`), the modification a trainable copy
and the gate a per-token sigmoid starting almost shut, reading the layer's input or (`--gate-input both`) that and the
modification's change to the output; only modifications and gates train, and `--gate-penalty` times the mean gate
joins the loss, keeping the gates shut where the modification is not needed. Every held-out item gets its gate
values (mean over its target tokens, per layer) in the predictions, to see where the modification is applied."""

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

            self.layers = wrap_linears(model, self.scenario.gated_layers, self.config.gate_bias,
                                       self.config.gate_input)
            model.to(self.device)

    def extra_loss(self, model: nn.Module) -> tuple[torch.Tensor | None, dict]:
        if not self.layers or not self.config.gate_penalty:
            return None, {}
        gate_mean = torch.stack([g.last_gate.mean() for g in self.layers]).mean()
        return self.config.gate_penalty * gate_mean, {"gate_mean": float(gate_mean.detach())}

    def item_fields(self, model: nn.Module, task) -> list[dict] | None:
        """Each held-out item's gate: the mean over its target tokens, per wrapped layer and over the layers."""
        if not self.layers:
            return None
        x, y = task.test
        rows = []
        was = model.training
        model.eval()
        with torch.no_grad():
            for s in range(0, len(x), 256):
                xb, yb = x[s:s + 256].to(self.device), y[s:s + 256].to(self.device)
                model(xb, task.model_task)
                mask = (yb >= 0).float() if self.scenario.kind != "cls" else torch.ones(len(yb), 1, device=self.device)
                per_layer = [(g.last_gate.reshape(len(yb), -1) * mask).sum(1) / mask.sum(1).clamp(min=1)
                             for g in self.layers]
                rows.append(torch.stack(per_layer, dim=1).cpu())
        model.train(was)
        return [{"gate": round(float(r.mean()), 5), "gate_by_layer": [round(float(v), 5) for v in r]}
                for r in torch.cat(rows)]

    def summary(self, model: nn.Module) -> dict:
        if not self.layers:
            return {}
        return {"gates": {"layers": self.scenario.gated_layers, "gate_input": self.config.gate_input,
                          "mean_gate_by_task": self._gate_means(model)}}

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

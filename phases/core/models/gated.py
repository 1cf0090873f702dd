"""The gated modification layer: `output = gate * modification(x) + (1 - gate) * original(x)` around a frozen
Linear. The modification starts as a copy of the original and the gate (a sigmoid of a linear function of the
input, one value per token) starts almost shut, so a wrapped model starts out computing what the base computed.
The gates of the last forward pass are kept, detached, so they can be inspected (and penalised) afterwards."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class GatedLinear(nn.Module):
    def __init__(self, original: nn.Linear, gate_bias: float = -3.0):
        super().__init__()
        self.original = original.requires_grad_(False)
        self.modification = copy.deepcopy(original).requires_grad_(True)
        self.gate = nn.Linear(original.in_features, 1)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, gate_bias)
        self.last_gate: torch.Tensor | None = None  # gates of the last forward, (..., 1), with their graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(x))
        self.last_gate = g
        return g * self.modification(x) + (1 - g) * self.original(x)


def wrap_linears(model: nn.Module, names: list[str], gate_bias: float = -3.0) -> list[GatedLinear]:
    """Freeze `model` and replace each named Linear submodule by a GatedLinear around it; returns the new layers
    (the only trainable parameters left)."""
    model.requires_grad_(False)
    gated = []
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = GatedLinear(getattr(parent, attr), gate_bias)
        setattr(parent, attr, layer)
        gated.append(layer)
    return gated

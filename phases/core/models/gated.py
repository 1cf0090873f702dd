"""The gated modification layer: `output = gate * modification(x) + (1 - gate) * original(x)` around a frozen
Linear. The modification starts as a copy of the original and the gate (a sigmoid of a linear function, one value
per token) starts almost shut, so a wrapped model starts out computing what the base computed. The gate reads the
layer's input x (`original`), or x and the modification signal, modification(x) - original(x) (`both`: the research
diary's gate computed from both the original embedding and the modification), so it can open where the
modification would change the output.
The gates of the last forward pass are kept, detached, so they can be inspected (and penalised) afterwards."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class GatedLinear(nn.Module):
    def __init__(self, original: nn.Linear, gate_bias: float = -3.0, gate_input: str = "original"):
        super().__init__()
        if gate_input not in ("original", "both"):
            raise ValueError(f"gate_input {gate_input!r}: original or both")
        self.gate_input = gate_input
        self.original = original.requires_grad_(False)
        self.modification = copy.deepcopy(original).requires_grad_(True)
        extra = original.out_features if gate_input == "both" else 0
        self.gate = nn.Linear(original.in_features + extra, 1)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, gate_bias)
        self.last_gate: torch.Tensor | None = None  # gates of the last forward, (..., 1), with their graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base, mod = self.original(x), self.modification(x)
        g = torch.sigmoid(self.gate(x if self.gate_input == "original" else torch.cat([x, mod - base], dim=-1)))
        self.last_gate = g
        return g * mod + (1 - g) * base


def wrap_linears(model: nn.Module, names: list[str], gate_bias: float = -3.0,
                 gate_input: str = "original") -> list[GatedLinear]:
    """Freeze `model` and replace each named Linear submodule by a GatedLinear around it; returns the new layers
    (the only trainable parameters left)."""
    model.requires_grad_(False)
    gated = []
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = GatedLinear(getattr(parent, attr), gate_bias, gate_input)
        setattr(parent, attr, layer)
        gated.append(layer)
    return gated

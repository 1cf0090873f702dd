"""Per-neuron fitness of every MLP's hidden layer, tracked during training through hooks.

- grad_activation: EMA of mean |dL/dh * h| over the batch's positions, the first-order Taylor estimate of the
  loss change if the neuron were removed (Molchanov et al. 2017), read in the backward pass;
- activation: EMA of mean |h|;
- utility: EMA of mean |h| * sum_j |w_out[j, i]|, continual backprop's contribution utility (Dohare et al. 2024);
- weight_magnitude: ||w_in[i]|| * ||w_out[:, i]||, read from the weights when asked (nothing tracked).

EMAs start at zero at a neuron's birth and are bias-corrected by its age (in steps), so a young neuron's fitness
is its own average rather than a value pulled towards zero. The hooks also keep a reference to each MLP's latest
training input, the "recent activations" that function-preserving surgery works on."""

from __future__ import annotations

import torch

TRACKED = ("grad_activation", "activation", "utility")


def _position_mean(t: torch.Tensor) -> torch.Tensor:
    return t.abs().flatten(0, -2).mean(dim=0, dtype=torch.float32)


class FitnessTracker:
    def __init__(self, mlps, kind: str, decay: float):
        self.mlps, self.kind, self.decay = list(mlps), kind, decay
        self.ema = [torch.zeros(m.width, device=m.c_fc.weight.device) for m in self.mlps]
        self.inputs: list[torch.Tensor | None] = [None] * len(self.mlps)
        self._handles = []
        for layer, mlp in enumerate(self.mlps):
            self._handles.append(mlp.register_forward_pre_hook(self._input_hook(layer)))
            if kind in TRACKED:
                self._handles.append(mlp.gelu.register_forward_hook(self._activation_hook(layer)))

    @staticmethod
    def _tracking(module) -> bool:
        return module.training and torch.is_grad_enabled()

    def _input_hook(self, layer: int):
        def hook(module, args):
            if self._tracking(module):
                self.inputs[layer] = args[0].detach().flatten(0, -2)
        return hook

    def _update(self, layer: int, value: torch.Tensor) -> None:
        self.ema[layer].mul_(self.decay).add_(value, alpha=1.0 - self.decay)

    def _activation_hook(self, layer: int):
        def hook(module, args, h):
            if not self._tracking(module):
                return
            if self.kind == "grad_activation":
                act = h.detach()
                h.register_hook(lambda grad: self._update(layer, _position_mean(grad * act)))
            elif self.kind == "activation":
                self._update(layer, _position_mean(h.detach()))
            else:  # utility
                out_w = self.mlps[layer].c_proj.weight.detach().abs().sum(dim=0)
                self._update(layer, _position_mean(h.detach()) * out_w.float())
        return hook

    @torch.no_grad()
    def scores(self, layer: int, ages: torch.Tensor) -> torch.Tensor:
        """Fitness of every neuron of `layer` (higher is fitter); `ages` in tracked steps, by position."""
        if self.kind == "weight_magnitude":
            mlp = self.mlps[layer]
            return (mlp.c_fc.weight.float().norm(dim=1) * mlp.c_proj.weight.float().norm(dim=0)).cpu()
        ages = ages.to(torch.float64).clamp(min=1)
        correction = (1.0 - torch.pow(torch.tensor(self.decay, dtype=torch.float64), ages)).float()
        return self.ema[layer].cpu() / correction

    def reset(self, layer: int, index: torch.Tensor) -> None:
        """Newborns at positions `index` start with no history."""
        self.ema[layer][index.to(self.ema[layer].device)] = 0.0

    def grow(self, layer: int, k: int) -> None:
        self.ema[layer] = torch.cat([self.ema[layer], self.ema[layer].new_zeros(k)])

    def state_dict(self) -> dict:
        return {"kind": self.kind, "ema": [e.cpu() for e in self.ema]}

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

"""Neuron surgery on one MLP (n_embd -> width -> n_embd) and its AdamW state.

A hidden neuron i is row i of c_fc (its incoming weights and bias) and column i of c_proj (its outgoing weights).
Rebirth overwrites those in place and zeroes their Adam moments; growth appends rows and columns, and the
optimizer's state grows with them (the new entries start at zero) so AdamW keeps stepping the grown tensors."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F

from phases.core.training import replace_param

MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def _moment_tensors(optimizer, param: torch.Tensor) -> list[torch.Tensor]:
    state = optimizer.state.get(param, {})
    return [state[k] for k in MOMENTS if k in state and torch.is_tensor(state[k]) and state[k].shape == param.shape]


def reset_moments(optimizer, param: torch.Tensor, index: torch.Tensor, dim: int) -> None:
    """Zero the Adam moments of the slices `index` of `param` along `dim` (a reborn neuron's row or column)."""
    for m in _moment_tensors(optimizer, param):
        m.index_fill_(dim, index, 0.0)


def ensure_output_bias(mlp) -> bool:
    """Give c_proj a (zero) bias when the model has none: function-preserving deaths move the dying neurons' mean
    contribution into it. Call before the optimizer is built. Returns whether a bias was added."""
    if mlp.c_proj.bias is not None:
        return False
    w = mlp.c_proj.weight
    mlp.c_proj.bias = nn.Parameter(torch.zeros(w.shape[0], device=w.device, dtype=w.dtype))
    return True


@torch.no_grad()
def neuron_activations(mlp, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, k) hidden activations of the neurons `index` on MLP inputs x (N, n_embd)."""
    b = mlp.c_fc.bias[index] if mlp.c_fc.bias is not None else None
    return F.gelu(F.linear(x, mlp.c_fc.weight[index], b))


@torch.no_grad()
def contribution(mlp, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, n_embd): what the neurons `index` add to the MLP's output on inputs x."""
    return neuron_activations(mlp, x, index) @ mlp.c_proj.weight[:, index].T


@torch.no_grad()
def fold_mean_into_bias(mlp, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Move the mean contribution of the dying neurons `index` (over inputs x) into c_proj's bias, as continual
    backprop does, and return their contribution minus that mean (what the network loses with them)."""
    contrib = contribution(mlp, x, index)
    mean = contrib.mean(dim=0)
    mlp.c_proj.bias.add_(mean.to(mlp.c_proj.bias.dtype))
    return contrib - mean


@torch.no_grad()
def write_neurons(mlp, optimizer, index: torch.Tensor, w_in: torch.Tensor, b_in: torch.Tensor | None,
                  w_out: torch.Tensor) -> None:
    """Rebirth: neurons `index` get incoming rows w_in (k, n_embd), biases b_in (k,) and outgoing columns
    w_out (n_embd, k); their Adam moments are reset to zero."""
    fc, proj = mlp.c_fc, mlp.c_proj
    fc.weight[index] = w_in.to(fc.weight.dtype)
    reset_moments(optimizer, fc.weight, index, 0)
    if fc.bias is not None:
        fc.bias[index] = b_in.to(fc.bias.dtype)
        reset_moments(optimizer, fc.bias, index, 0)
    proj.weight[:, index] = w_out.to(proj.weight.dtype)
    reset_moments(optimizer, proj.weight, index, 1)


@torch.no_grad()
def grow(mlp, optimizer, w_in: torch.Tensor, b_in: torch.Tensor | None, w_out: torch.Tensor) -> None:
    """Add k neurons: c_fc gains k rows (and biases), c_proj k input columns; the optimizer follows."""
    fc, proj = mlp.c_fc, mlp.c_proj
    k = w_in.shape[0]
    new_fc = nn.Parameter(torch.cat([fc.weight, w_in.to(fc.weight.dtype)], dim=0))
    replace_param(optimizer, fc.weight, new_fc, 0)
    fc.weight = new_fc
    if fc.bias is not None:
        new_b = nn.Parameter(torch.cat([fc.bias, b_in.to(fc.bias.dtype)], dim=0))
        replace_param(optimizer, fc.bias, new_b, 0)
        fc.bias = new_b
    new_proj = nn.Parameter(torch.cat([proj.weight, w_out.to(proj.weight.dtype)], dim=1))
    replace_param(optimizer, proj.weight, new_proj, 1)
    proj.weight = new_proj
    fc.out_features += k
    proj.in_features += k


def fit_newborns(mlp, x: torch.Tensor, index: torch.Tensor, target: torch.Tensor, steps: int,
                 lr: float = 1e-3) -> tuple[float, float]:
    """`steps` of Adam fitting the newborns `index` (incoming rows, biases, outgoing columns) so that their summed
    contribution on inputs x matches `target` (N, n_embd): the part of the dying neurons' output that the bias
    could not keep. Writes the fitted weights back; returns the mean squared error before and after."""
    fc, proj = mlp.c_fc, mlp.c_proj
    w_in = fc.weight[index].detach().float().clone().requires_grad_()
    b_in = fc.bias[index].detach().float().clone().requires_grad_() if fc.bias is not None else None
    w_out = proj.weight[:, index].detach().float().clone().requires_grad_()
    params = [w_in, w_out] + ([b_in] if b_in is not None else [])
    opt = torch.optim.Adam(params, lr=lr)
    x, target = x.float(), target.float()

    def mse():
        return (F.gelu(F.linear(x, w_in, b_in)) @ w_out.T - target).pow(2).mean()

    with torch.enable_grad():
        before = mse().item()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = mse()
            loss.backward()
            opt.step()
    with torch.no_grad():
        after = mse().item()
        fc.weight[index] = w_in.to(fc.weight.dtype)
        if b_in is not None:
            fc.bias[index] = b_in.to(fc.bias.dtype)
        proj.weight[:, index] = w_out.to(proj.weight.dtype)
    return before, after


@torch.no_grad()
def copy_mlp(src, dst, optimizer) -> None:
    """Give MLP `dst` the weights of MLP `src` (same shapes) and their optimizer state (moments and step), as when
    an MLP moves to another block: hooks and the optimizer's parameter objects stay where they are."""
    for p_src, p_dst in zip(src.parameters(), dst.parameters()):
        p_dst.copy_(p_src)
        state = optimizer.state.get(p_src)
        if not state:
            optimizer.state.pop(p_dst, None)
            continue
        optimizer.state[p_dst] = {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()}

"""The diagonal Fisher information of a model on a task's data, three ways:

- `empirical_fisher`: the true per-sample empirical Fisher, the mean over examples of each example's squared
  gradient of its own loss (labels from the data), vectorised with torch.func (`vmap` of `grad`);
- `loop_fisher`: the same quantity, one backward pass per example (the reference, and the fallback for models
  torch.func cannot vectorise such as the MoE layer's data-dependent dispatch);
- `batch_fisher`: Avalanche's cheaper form, the mean over minibatches of the squared minibatch-mean gradient.
  It underestimates the per-sample Fisher (cross terms between examples average out), by about the batch size.

`loss_fn(logits, y)` returns one loss per example; the model is called as `model(x, task)`."""

from __future__ import annotations

import warnings
from typing import Callable

import torch
import torch.nn as nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _eval_mode(model: nn.Module):
    was = model.training
    model.eval()  # no dropout noise in the importance; batch norm uses its running statistics
    return was


def empirical_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: int, loss_fn: LossFn,
                     chunk: int = 64) -> dict[str, torch.Tensor]:
    from torch.func import functional_call, grad, vmap

    was = _eval_mode(model)
    params = {n: p.detach() for n, p in trainable(model).items()}
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    buffers = dict(model.named_buffers())

    def one(p, xi, yi):
        logits = functional_call(model, ({**p, **frozen}, buffers), (xi.unsqueeze(0), task))
        return loss_fn(logits, yi.unsqueeze(0)).sum()

    per_example = vmap(grad(one), in_dims=(None, 0, 0))
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    with warnings.catch_warnings():  # CPU attention has no batching rule yet: torch.func loops it, and says so
        warnings.filterwarnings("ignore", message=".*batching rule.*")
        for start in range(0, len(x), chunk):
            grads = per_example(params, x[start:start + chunk], y[start:start + chunk])
            for n, g in grads.items():
                fisher[n] += g.pow(2).sum(0)
    model.train(was)
    return {n: f / len(x) for n, f in fisher.items()}


def loop_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: int,
                loss_fn: LossFn) -> dict[str, torch.Tensor]:
    was = _eval_mode(model)
    params = trainable(model)
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(len(x)):
        loss = loss_fn(model(x[i:i + 1], task), y[i:i + 1]).sum()
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for n, g in zip(params, grads):
            if g is not None:
                fisher[n] += g.pow(2)
    model.train(was)
    return {n: f / len(x) for n, f in fisher.items()}


def batch_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: int, loss_fn: LossFn,
                 batch_size: int = 64) -> dict[str, torch.Tensor]:
    was = _eval_mode(model)
    params = trainable(model)
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    n_batches = 0
    for start in range(0, len(x), batch_size):
        loss = loss_fn(model(x[start:start + batch_size], task), y[start:start + batch_size]).mean()
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for n, g in zip(params, grads):
            if g is not None:
                fisher[n] += g.pow(2)
        n_batches += 1
    model.train(was)
    return {n: f / max(1, n_batches) for n, f in fisher.items()}


def can_vectorise(model: nn.Module) -> bool:
    """torch.func cannot batch the MoE layer's sort/bincount token dispatch."""
    from phases.core.models.moe import MoELayer

    return not any(isinstance(m, MoELayer) for m in model.modules())


def compute_fisher(kind: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: int, loss_fn: LossFn,
                   batch_size: int = 64) -> tuple[dict[str, torch.Tensor], str]:
    """(Fisher diagonal, how it was computed): kind is 'empirical' or 'batch'."""
    if kind == "batch":
        return batch_fisher(model, x, y, task, loss_fn, batch_size), "batch (squared minibatch gradients)"
    if can_vectorise(model):
        return empirical_fisher(model, x, y, task, loss_fn), "empirical per-sample (torch.func vmap)"
    return loop_fisher(model, x, y, task, loss_fn), "empirical per-sample (loop: model not vectorisable)"

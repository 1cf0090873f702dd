"""Optimizers and learning-rate schedules shared by the training phases."""

from __future__ import annotations

import math

from phases.core.errors import InputError, RunFailed


def warmup_cosine_lr(step: int, lr: float, min_lr: float, warmup: int, decay_steps: int) -> float:
    """nanoGPT's schedule: linear warmup to `lr` over `warmup` steps, cosine decay to `min_lr` at `decay_steps`,
    then constant `min_lr`."""
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if step > decay_steps:
        return min_lr
    ratio = (step - warmup) / max(1, decay_steps - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def build_optimizer(named_params, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                    nesterov: bool = True, betas: tuple[float, float] = (0.9, 0.95)):
    """SGD (momentum, Nesterov) or AdamW. Weight decay applies to matrices and convolution kernels only
    (biases, norms and embeddings' 1-D parameters are not decayed), as in nanoGPT."""
    import torch

    params = [(n, p) for n, p in named_params if p.requires_grad]
    groups = [{"params": [p for _, p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for _, p in params if p.dim() < 2], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
    raise InputError(f"--optimizer {name!r}: unknown optimizer", "use sgd or adamw")


def set_lr(optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr


def check_finite(loss_value: float, step: int, what: str = "loss") -> None:
    """Stop a diverged run: exit 1 with the step, so the last good checkpoint stays the one to resume from."""
    if not math.isfinite(loss_value):
        raise RunFailed(f"non-finite {what} ({loss_value}) at step {step}: the run diverged",
                        "lower --lr, add warmup or gradient clipping, and start again from the last checkpoint")

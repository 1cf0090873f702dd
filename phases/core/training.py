"""The shared pieces of a training loop, written once for every phase that trains (apoptosis, train-moe, ewc):
the optimizer and its warmup + cosine schedule, one optimizer step (non-finite stop, clipping), the evaluation
cadence, and the state a checkpoint holds for an exact resume (weights, optimizer, every RNG, the step) with the
records logged after it cut on resume.

A phase's loop stays its own and reads top to bottom (nanoGPT's train.py is the bar); it calls these parts:

    schedule = Schedule(lr, min_lr, warmup, decay_steps)
    for step in range(start, max_steps):
        if evaluation_due(step, eval_every, max_steps): evaluate, then save_state(...)   # the last good state
        set_lr(opt, schedule.at(step))
        loss_value = optimizer_step(loss, opt, params, grad_clip, step)

Nothing here imports torch at module level."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from phases.core.errors import InputError, RunFailed


# --- optimizer and schedule -------------------------------------------------------------------------------------
def build_optimizer(named_params, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                    nesterov: bool = True, betas: tuple[float, float] = (0.9, 0.95)):
    """SGD (momentum, Nesterov), AdamW or Adam. Weight decay applies to matrices and convolution kernels only
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
    if name == "adam":  # plain Adam (the EWC papers' optimizer): no decoupled weight decay
        return torch.optim.Adam([p for _, p in params], lr=lr, betas=betas)
    raise InputError(f"--optimizer {name!r}: unknown optimizer", "use sgd or adamw")


def replace_param(optimizer, old, new, dim: int) -> None:
    """Put `new` (`old` grown along `dim`) in old's place in the optimizer, its state grown with zeros, so that the
    optimizer keeps stepping a tensor that gained rows or columns (apoptosis's grown MLPs, train-moe's experts)."""
    import torch

    for group in optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            if p is old:
                group["params"][i] = new
    state = optimizer.state.pop(old, None)
    if state is None:
        return
    grown = {}
    for key, value in state.items():
        if torch.is_tensor(value) and value.shape == old.shape:
            pad_shape = list(value.shape)
            pad_shape[dim] = new.shape[dim] - old.shape[dim]
            value = torch.cat([value, value.new_zeros(pad_shape)], dim=dim)
        grown[key] = value
    optimizer.state[new] = grown


@dataclass(frozen=True)
class Schedule:
    """nanoGPT's schedule: linear warmup to `lr` over `warmup` steps, cosine decay to `min_lr` at `decay_steps`,
    then constant `min_lr`. Steps count from the start of the schedule (a stage may have its own)."""

    lr: float
    min_lr: float
    warmup: int
    decay_steps: int

    def at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / (self.warmup + 1)
        if step > self.decay_steps:
            return self.min_lr
        ratio = (step - self.warmup) / max(1, self.decay_steps - self.warmup)
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (self.lr - self.min_lr)


def set_lr(optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr


# --- one step ----------------------------------------------------------------------------------------------------
def check_finite(value: float, step: int, what: str = "loss") -> None:
    """Stop a diverged run (exit 1, the step named) before the optimizer touches the weights, so the last
    checkpoint stays the last good state."""
    if not math.isfinite(value):
        raise RunFailed(f"non-finite {what} ({value}) at step {step}: the run diverged",
                        "lower --lr, add warmup or gradient clipping, and start again from the last checkpoint")


def optimizer_step(loss, optimizer, params, grad_clip: float, step: int, watched: float | None = None) -> float:
    """Backward and one update of `params`, clipping their gradient norm to `grad_clip` (0: off). Returns the
    loss's value; a non-finite `watched` value (default: the loss) stops the run before the update."""
    import torch

    value = loss.item()
    check_finite(value if watched is None else watched, step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return value


def evaluation_due(step: int, every: int, last: int) -> bool:
    """Evaluate every `every` steps and at the last one."""
    return step % every == 0 or step == last


# --- checkpoint state and exact resume ---------------------------------------------------------------------------
def save_state(path: Path | str, model, optimizer, step: int, **extra) -> Path:
    """A checkpoint that continues the run exactly: weights, optimizer state, every generator's state (python,
    numpy, torch, CUDA) and the step, plus the phase's own `extra` state. Written atomically."""
    from phases.core.checkpoint import save_checkpoint
    from phases.core.seeding import rng_state

    return save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                                  "rng": rng_state(), **extra})


def restore_state(state: dict, model=None, optimizer=None) -> dict:
    """The inverse of `save_state` (the model and optimizer may be restored by the caller instead, e.g. when the
    model's shape depends on the state); returns the state for the phase's own fields."""
    from phases.core.seeding import set_rng_state

    if model is not None:
        model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return state


def cut_records_after(run, step: int, *names: str) -> None:
    """What a killed run logged after its checkpoint is logged again on resume: cut it from history.jsonl (and the
    other named record files) so that nothing is duplicated."""
    from phases.core.jsonio import truncate_jsonl

    for name in (run.HISTORY, *names):
        truncate_jsonl(run.path(name), step)


@contextmanager
def keep_last_good(run, checkpointed):
    """A diverged run (RunFailed) says which checkpoint is kept and how to continue from it. `checkpointed` is a
    callable returning the step of the last checkpoint written, or None before the first."""
    try:
        yield
    except RunFailed as e:
        step = checkpointed()
        if step is None:
            raise
        raise RunFailed(e.message, f"the last good checkpoint (step {step}) is kept: --resume {run.dir} continues "
                        "from it (a deterministic run diverges again at the same step; to change --lr, the warmup or "
                        "--grad-clip, start a new run)") from None

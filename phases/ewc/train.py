"""One method through a scenario's stages: train each stage, evaluate every task's held-out data after it (a row
of R), then let the method keep what it needs (EWC/L2 importance, the replay buffer). The method is a strategy
(`phases/ewc/strategies/`) whose hooks add to this one loop. Every method starts from the same seed, so the
initial weights and the sequence of training batches are identical across the methods of one invocation."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from phases.core import render
from phases.core.seeding import seed_everything
from phases.core.training import build_optimizer, optimizer_step
from phases.ewc.config import EwcConfig
from phases.ewc.evaluate import held_out, quick
from phases.ewc.scenarios import Scenario, Stage
from phases.ewc.strategies import Strategy, build
from phases.ewc.strategies.naive import Group

GRAD_CLIP = 1.0


@dataclass
class MethodResult:
    method: str
    stages: list[Stage]
    R: list[list[float]] = field(default_factory=list)  # metric per (stage, task)
    loss_R: list[list[float]] = field(default_factory=list)  # held-out loss per (stage, task)
    n: list[int] = field(default_factory=list)  # held-out items per task
    history: list[dict] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)  # final per-item predictions
    stage_items: list[list[dict]] = field(default_factory=list)  # per stage: every task's per-item predictions
    extra: dict = field(default_factory=dict)
    seconds: float = 0.0


def _batch_counts(mix: list[tuple[int, float]], batch_size: int) -> list[tuple[int, int]]:
    counts = [(t, int(round(share * batch_size))) for t, share in mix]
    counts[-1] = (counts[-1][0], batch_size - sum(n for _, n in counts[:-1]))
    return [(t, n) for t, n in counts if n > 0]


def _batch_loss(scn: Scenario, model: nn.Module, groups: list[Group], device) -> tuple[torch.Tensor, float]:
    """(loss to minimise, task loss) of one batch: each task's group weighted by its share of the examples."""
    total_n = sum(len(g[2]) for g in groups)
    loss = torch.zeros((), device=device)
    task_loss = 0.0
    for t, x, y in groups:
        g_loss, g_task = scn.group_loss(model, x.to(device), y.to(device), scn.tasks[t].model_task)
        w = len(y) / total_n
        loss = loss + w * g_loss
        task_loss += w * float(g_task)
    return loss, task_loss


def train_method(scn: Scenario, method: str, c: EwcConfig, device, log=None,
                 strategy: type[Strategy] | None = None) -> MethodResult:
    """Train `method` (or a `strategy` class of one's own, under the name `method`) through the stages the
    scenario plans for it."""
    seed_everything(c.seed, c.deterministic)
    model = scn.build_model().to(device)
    batch_gen = torch.Generator().manual_seed(c.seed)  # the stages' batches: the same for every method
    aux_gen = torch.Generator().manual_seed(c.seed + 1)  # the method's own draws (Fisher samples, replay buffer)
    strategy = build(method, scn, c, aux_gen, device) if strategy is None else strategy(scn, c, aux_gen, device)
    steps = c.steps or scn.steps
    lr = c.lr or scn.lr
    eval_every = c.eval_interval or max(1, steps // 4)
    result = MethodResult(method, scn.stages(method))
    t0 = time.perf_counter()
    step = 0

    def record(rec: dict) -> None:
        result.history.append(rec)
        if log is not None:
            log(rec)

    for s, stage in enumerate(result.stages):
        strategy.before_stage(s, stage, model)
        params = [p for p in model.parameters() if p.requires_grad]
        # a fresh optimizer per stage, as in the EWC papers: plain Adam, torch's default betas
        opt = build_optimizer(model.named_parameters(), "adam", lr, betas=(0.9, 0.999))
        counts = _batch_counts(stage.mix, c.batch_size)
        model.train()
        for it in range(steps):
            groups = [(t, *scn.tasks[t].sample(n, batch_gen)) for t, n in counts] + strategy.extra_batches()
            loss, task_loss = _batch_loss(scn, model, groups, device)
            extra, rec_extra = strategy.extra_loss(model)
            if extra is not None:
                loss = loss + extra
            optimizer_step(loss, opt, params, GRAD_CLIP, step, watched=task_loss)
            step += 1
            strategy.after_step(model, opt, step, it + 1)
            if step % c.log_interval == 0 or it == 0:
                record({"step": step, "split": "train", "stage": stage.name, "loss": task_loss, **rec_extra})
            if (it + 1) % eval_every == 0 and it + 1 < steps:
                for j, t in enumerate(scn.tasks):
                    if j <= max(st.task for st in result.stages[:s + 1]):
                        record({"step": step, "split": "val", "stage": stage.name, "task": t.name,
                                **quick(scn, model, t, device)})
        # end of stage: a row of R on every task's held-out data
        row, loss_row, items = [], [], []
        last = s == len(result.stages) - 1
        for j, t in enumerate(scn.tasks):
            ev = held_out(scn, model, t, device)
            row.append(ev[scn.metric])
            loss_row.append(ev["loss"])
            record({"step": step, "split": "test", "stage": stage.name, "task": t.name,
                    **{k: v for k, v in ev.items() if k != "items"}})
            if s == 0:
                result.n.append(ev["n"])
            task_items = ev.get("items", [])
            fields = strategy.item_fields(model, t) if task_items else None
            items += [{"task": t.name, **item, **(fields[k] if fields else {})} for k, item in enumerate(task_items)]
        result.R.append(row)
        result.loss_R.append(loss_row)
        result.stage_items.append(items)
        if last:
            result.items = items
        render.say(f"  {method}: after stage {stage.name!r}: " + ", ".join(
            f"{t.name} {render.fmt(v)}" for t, v in zip(scn.tasks, row)))
        if not last:
            strategy.after_stage(s, stage, model)
    result.extra = strategy.summary(model)
    result.seconds = time.perf_counter() - t0
    return result

"""The train-moe loop: routing strategies as stages, validation and history every epoch, a checkpoint every epoch
(and the best epoch's weights by validation accuracy), and exact resume from it. The test split is evaluated
once, at the end, on the epoch chosen on validation (`--select best-val`) or the last one (`--select last`, or no
validation split). With `--grow-experts` an expert is added after the scheduled epochs (`grow`), before that
epoch's checkpoint, which therefore holds the grown shapes and optimizer state.

An epoch is ceil(largest task's training items / batch size) steps; every step takes one batch of every task (a
fresh shuffle of each task's training items, cycled, so smaller tasks are seen several times per epoch) and
averages their losses. All randomness (shuffles, dropout, augmentation) comes from torch's generators, whose state
is saved with each checkpoint, so a resumed run repeats an uninterrupted one exactly (CPU, --deterministic)."""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch

from phases.core import render
from phases.core.checkpoint import load_checkpoint, save_checkpoint
from phases.core.data.classification import TaskData, random_crop_flip
from phases.core.device import supports_bf16
from phases.core.models.moe_classifier import EvalResult, LossWeights, MoEClassifier, evaluate, training_loss
from phases.core.runs import Run
from phases.core.training import Schedule, build_optimizer, optimizer_step, restore_state, save_state, set_lr
from phases.moe.config import TrainMoEConfig
from phases.moe.plan import Plan
from phases.moe.report import eval_record, train_record

CHECKPOINT, BEST = "last.pt", "best.pt"  # the latest epoch (for resume); the best epoch by validation
GROW_NOISE = 0.1  # a grown expert: its source's tensors + Gaussian noise of this x each tensor's std
FROZEN_WITH_EXPERTS = ("moe.w1", "moe.b1", "moe.w2", "moe.b2", "heads.")


@dataclass
class Stage:
    """How one epoch trains, by strategy: joint (end to end), supervised (the router learns only the assignment),
    mixed (end to end plus the routing loss), two-phase (experts on their assigned classes, then the router learns
    the assignment with experts and heads frozen; the backbone keeps training, through the frozen experts and the
    router, because features trained only for the experts' own classes need not tell the experts' groups apart)."""

    name: str | None  # the history's `stage` (two-phase only)
    weights: LossWeights
    route_by_assignment: bool = False
    router_learns_task: bool = True
    freeze_experts: bool = False


def stage_for(c: TrainMoEConfig, plan: Plan, epoch: int) -> Stage:
    """The epoch's stage; the self-modification terms (router entropy, synthetic labels) apply in every stage."""
    stage = _stage(c, plan, epoch)
    return replace(stage, weights=replace(stage.weights, entropy=c.router_entropy_weight,
                                          synthetic=c.synthetic_labels))


def _stage(c: TrainMoEConfig, plan: Plan, epoch: int) -> Stage:
    w = LossWeights(c.balance_coef, c.z_coef, 0.0, c.label_smoothing)
    routed = replace(w, route=c.route_weight)
    if c.strategy == "supervised":
        return Stage(None, routed, router_learns_task=False)
    if c.strategy == "mixed":
        return Stage(None, routed)
    if c.strategy == "two-phase":
        if epoch < plan.phase1_epochs:
            return Stage("experts", LossWeights(0.0, 0.0, 0.0, c.label_smoothing), route_by_assignment=True)
        return Stage("router", routed, router_learns_task=False, freeze_experts=True)
    return Stage(None, w)


def stage_epochs(c: TrainMoEConfig, plan: Plan, epoch: int) -> tuple[int, int]:
    """[first, last) epochs of the stage that `epoch` belongs to."""
    if c.strategy != "two-phase":
        return 0, plan.epochs
    return (0, plan.phase1_epochs) if epoch < plan.phase1_epochs else (plan.phase1_epochs, plan.epochs)


def _set_trainable(model: MoEClassifier, freeze_experts: bool) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(not (freeze_experts and name.startswith(FROZEN_WITH_EXPERTS)))
    model.train()


def epoch_batches(n: int, batch_size: int, steps: int) -> torch.Tensor:
    """(steps, batch_size) item indices: fresh shuffles of range(n), concatenated as needed."""
    reps = math.ceil(steps * batch_size / n)
    return torch.cat([torch.randperm(n) for _ in range(reps)])[:steps * batch_size].view(steps, batch_size)


def evaluate_tasks(model: MoEClassifier, tasks: list[TaskData], split: str, c: TrainMoEConfig,
                   amp_dtype) -> list[EvalResult] | None:
    """Every task's evaluation on `split`; None for a validation split that is not there (--val-fraction 0)."""
    if not all(len(getattr(t, split)) for t in tasks):
        return None
    return [evaluate(model, getattr(t, split).x, getattr(t, split).y, i, c.eval_batch_size,
                     with_assignment=c.strategy != "joint", autocast_dtype=amp_dtype) for i, t in enumerate(tasks)]


def grow(model: MoEClassifier, opt, counts: torch.Tensor, epoch: int) -> dict:
    """--grow-experts: add a copy of the busiest expert of the epoch (most training assignments; the first of a
    tie), with noise, to the MoE layer, its router and the optimizer's state."""
    source = int(counts.argmax())
    new = model.moe.add_expert(source, GROW_NOISE, opt)
    return {"epoch": epoch, "source": source, "source_share": float(counts[source] / counts.sum()), "expert": new}


@dataclass
class TrainResult:
    val: list[EvalResult] | None  # of the selected epoch (None: no validation split)
    test: list[EvalResult]  # of the selected epoch: the only evaluation on the test split
    epochs: int
    steps: int
    train_seconds: float
    train_loss: float | None
    best_val_acc: float | None
    best_val_epoch: int | None
    selected_epoch: int
    experts: int  # of the selected epoch's model
    experts_final: int  # at the end of training
    growth: list[dict]  # the experts added: after which epoch, copied from which
    entropy_share: float | None  # the router-entropy term's share of the loss in the last epoch


def _train_epoch(model: MoEClassifier, opt, tasks: list[TaskData], c: TrainMoEConfig, plan: Plan, stage: Stage,
                 epoch: int, step: int, steps_per_epoch: int, device, amp_dtype) -> tuple[int, float, dict]:
    """One epoch of steps; returns (global step, last lr, summed batch stats). Stops the run on a non-finite loss
    before the optimizer touches the weights, so the last checkpoint stays the last good state."""
    _set_trainable(model, stage.freeze_experts)
    params = [p for p in model.parameters() if p.requires_grad]
    first, last = stage_epochs(c, plan, epoch)  # each stage has its own warmup and cosine decay
    schedule = Schedule(plan.lr, plan.lr * 0.01, round(c.warmup_epochs * steps_per_epoch),
                        (last - first) * steps_per_epoch)
    batches = [epoch_batches(len(t.train), c.batch_size, steps_per_epoch).to(device) for t in tasks]
    channels_last = device.type == "cuda"
    sums: dict = {}
    lr = plan.lr
    with render.progress(steps_per_epoch, f"epoch {epoch + 1}/{plan.epochs}", "step") as bar:
        for i in range(steps_per_epoch):
            lr = schedule.at(step - first * steps_per_epoch)
            set_lr(opt, lr)
            loss = 0.0
            for t, task in enumerate(tasks):
                x, y = task.train.x[batches[t][i]], task.train.y[batches[t][i]]
                if task.augment:
                    x = random_crop_flip(x)
                if channels_last and task.modality == "image":
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext():
                    task_loss, stats = training_loss(model, x, y, t, stage.weights, stage.route_by_assignment,
                                                     stage.router_learns_task)
                loss = loss + task_loss / len(tasks)
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0) + v
            value = optimizer_step(loss, opt, params, c.grad_clip, step)
            step += 1
            bar.advance()
            bar.note(f"loss {value:.4f}")
    return step, lr, sums


def train(model: MoEClassifier, tasks: list[TaskData], c: TrainMoEConfig, plan: Plan, device, run: Run,
          checkpoint: dict | None = None) -> TrainResult:
    """Train from scratch, or from `checkpoint` (a resumed run), validating, logging and checkpointing every
    epoch; then evaluate the selected epoch's weights on validation and, once, on test."""
    start, step, seconds, train_loss, best = 0, 0, 0.0, None, {"acc": None, "epoch": None}
    growth, entropy_share = [], None
    if checkpoint is not None:  # a run whose experts grew: its tensors take the checkpoint's shapes first
        model.moe.resize(checkpoint["experts"])
    opt = build_optimizer(model.named_parameters(), c.optimizer, plan.lr, plan.weight_decay, c.momentum, c.nesterov)
    steps_per_epoch = math.ceil(max(len(t.train) for t in tasks) / c.batch_size)
    amp_dtype = torch.bfloat16 if supports_bf16(device) else None
    if checkpoint is not None:
        restore_state(checkpoint, model, opt)
        start, step, seconds = checkpoint["epoch"], checkpoint["step"], checkpoint["train_seconds"]
        train_loss, best = checkpoint["train_loss"], checkpoint["best"]
        growth, entropy_share = checkpoint["growth"], checkpoint["entropy_share"]
    for epoch in range(start, plan.epochs):
        t0 = time.perf_counter()
        stage = stage_for(c, plan, epoch)
        step, lr, sums = _train_epoch(model, opt, tasks, c, plan, stage, epoch, step, steps_per_epoch, device,
                                      amp_dtype)
        seconds += time.perf_counter() - t0
        val = evaluate_tasks(model, tasks, "val", c, amp_dtype)
        record = train_record(step, epoch + 1, stage.name, sums, steps_per_epoch * len(tasks), lr)
        if plan.growth:
            record["experts"] = model.moe.n_experts
        train_loss, entropy_share = record["loss"], record.get("entropy_share")
        run.log(record)
        for task, res in zip(tasks, val or []):
            run.log(eval_record(step, epoch + 1, "val", stage.name, task.name if plan.multi_task else None, res))
        val_acc = sum(r.acc for r in val) / len(val) if val else None
        if val and (best["acc"] is None or val_acc > best["acc"]):  # the first epoch of the best accuracy wins a tie
            best = {"acc": val_acc, "epoch": epoch + 1}
            save_checkpoint(run.checkpoint_dir / BEST, {"model": model.state_dict(), "epoch": epoch + 1,
                                                        "experts": model.moe.n_experts})
        if plan.growth and plan.growth.due(epoch + 1, model.moe.n_experts):
            growth.append(grow(model, opt, sums["expert_counts"], epoch + 1))
            render.say(f"expert {growth[-1]['expert']} added, a copy of expert {growth[-1]['source']}")
        save_state(run.checkpoint_dir / CHECKPOINT, model, opt, step, epoch=epoch + 1, train_seconds=seconds,
                   train_loss=train_loss, best=best, experts=model.moe.n_experts, growth=growth,
                   entropy_share=entropy_share)
        render.say(f"epoch {epoch + 1}/{plan.epochs}: loss {train_loss:.4f}"
                   + (f", val acc {val_acc:.4f}" if val else "") + (f" [{stage.name}]" if stage.name else ""))
    selected, final = plan.epochs, model.moe.n_experts
    if plan.select == "best-val" and best["epoch"] != plan.epochs:
        state = load_checkpoint(run.checkpoint_dir / BEST)
        model.moe.resize(state["experts"])
        model.load_state_dict(state["model"])
        selected = best["epoch"]
        render.say(f"selected epoch {selected} of {plan.epochs} by validation accuracy ({best['acc']:.4f})")
    val = evaluate_tasks(model, tasks, "val", c, amp_dtype)
    test = evaluate_tasks(model, tasks, "test", c, amp_dtype)
    return TrainResult(val, test, plan.epochs, step, seconds, train_loss, best["acc"], best["epoch"], selected,
                       model.moe.n_experts, final, growth, entropy_share)

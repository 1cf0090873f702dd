"""nlab train-moe: mixture-of-experts training with routing diagnostics and multi-task gating."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from nlab_cli.common import Expect, DataDir, Deterministic, Device, Json, Name, Out, Seed, execute
from nlab_cli.common import Tracker, TrackerUri
from nlab_cli.common import opt as _opt
from nlab_cli.options import build_config
from phases.moe.config import ASSIGNMENTS, DATASETS, OPTIMIZERS, ROUTERS, SELECTS, STRATEGIES, TrainMoEConfig

_C = TrainMoEConfig()
_DATA, _MODEL, _ROUTING, _TRAIN = "Data", "Model", "Routing", "Training"
_SELF = "Self-modification"


def train_moe(
    ctx: typer.Context,
    dataset: Annotated[Literal[DATASETS], _opt("The dataset (digits is embedded).", _DATA)] = _C.dataset,
    tasks: Annotated[Optional[str], _opt("Several datasets trained together, e.g. digits,sst2 (a head per task, "
                                         "task-conditioned gating); overrides --dataset.", _DATA,
                                         show_default=False)] = None,
    val_fraction: Annotated[float, _opt("Share of the training split held out for validation (fixed by the seed); "
                                        "0: none, and the last epoch is reported.", _DATA)] = _C.val_fraction,
    train_limit: Annotated[Optional[int], _opt("Use at most this many training items per task (stratified "
                                               "subset, for quick runs).", _DATA, show_default=False)] = None,
    experts: Annotated[int, _opt("Number of MLP experts.", _MODEL)] = _C.experts,
    top_k: Annotated[int, _opt("Experts per item; their gates are renormalised to sum to 1.", _MODEL)] = _C.top_k,
    router: Annotated[Literal[ROUTERS], _opt("linear, or deep (an MLP).", _MODEL)] = _C.router,
    router_hidden: Annotated[int, _opt("Hidden size of the deep router.", _MODEL)] = _C.router_hidden,
    d_model: Annotated[int, _opt("Feature size between backbone, experts and heads.", _MODEL)] = _C.d_model,
    expert_hidden: Annotated[int, _opt("Hidden size of each expert MLP.", _MODEL)] = _C.expert_hidden,
    width: Annotated[float, _opt("Width multiplier of the backbones (CNN channels, word embedding size).",
                                 _MODEL)] = _C.width,
    dropout: Annotated[float, _opt("Dropout in the text encoder and before the heads.", _MODEL)] = _C.dropout,
    capacity_factor: Annotated[float, _opt("Cap each expert at factor * tokens * k / experts per batch, dropping "
                                           "the rest; 0 is dropless.", _MODEL)] = _C.capacity_factor,
    task_masks: Annotated[bool, _opt("Multi-task: each task sees only its own experts (an even split, or "
                                     "--mask-layout).", _MODEL)] = _C.task_masks,
    mask_layout: Annotated[Optional[str], _opt("Experts per task in --tasks order, e.g. 0-5/6-11 or 0-7/4-11 "
                                               "(implies --task-masks).", _MODEL, show_default=False)] = None,
    strategy: Annotated[Literal[STRATEGIES], _opt(
        "joint (end to end), supervised (router learns the class->expert assignment only), mixed (joint + routing "
        "loss), two-phase (experts on their assigned classes, then the router with experts frozen).",
        _ROUTING)] = _C.strategy,
    assignment: Annotated[Literal[ASSIGNMENTS], _opt("Class->expert assignment: auto (CIFAR-100 superclasses, else "
                                                     "class mod experts), mod, coarse.", _ROUTING)] = _C.assignment,
    route_weight: Annotated[float, _opt("Weight of the routing cross-entropy toward the assignment.",
                                        _ROUTING)] = _C.route_weight,
    phase1_epochs: Annotated[Optional[int], _opt("two-phase: epochs of expert training (default: half).",
                                                 _ROUTING, show_default=False)] = None,
    balance_coef: Annotated[float, _opt("Coefficient of the Switch load-balancing loss.",
                                        _ROUTING)] = _C.balance_coef,
    z_coef: Annotated[float, _opt("Coefficient of the router z-loss.", _ROUTING)] = _C.z_coef,
    router_entropy_weight: Annotated[float, _opt(
        "Weight of the mean router entropy in the loss: positive sharpens the routing, negative spreads it (the "
        "lab's 7b2/7b3); its share of the loss is reported.", _SELF)] = _C.router_entropy_weight,
    synthetic_labels: Annotated[float, _opt(
        "Share of each batch's training targets replaced by the router's own top expert, mod the classes (the "
        "lab's 7b1 injection).", _SELF)] = _C.synthetic_labels,
    grow_experts: Annotated[Optional[str], _opt(
        "START:END:EVERY: start with START experts and add one every EVERY epochs up to END, a noisy copy of the "
        "busiest (overrides --experts; joint strategy).", _SELF, show_default=False)] = None,
    optimizer: Annotated[Literal[OPTIMIZERS], _opt("adamw, or sgd (momentum, Nesterov).", _TRAIN)] = _C.optimizer,
    lr: Annotated[Optional[float], _opt("Peak learning rate (default: 4e-3 adamw, 0.05 sgd); warmup, then "
                                        "cosine decay to 1%.", _TRAIN, show_default=False)] = None,
    weight_decay: Annotated[Optional[float], _opt("Weight decay of matrices and kernels (default: 0.05 adamw, "
                                                  "5e-4 sgd).", _TRAIN, show_default=False)] = None,
    momentum: Annotated[float, _opt("SGD momentum.", _TRAIN)] = _C.momentum,
    nesterov: Annotated[bool, _opt("Nesterov momentum for SGD.", _TRAIN)] = _C.nesterov,
    label_smoothing: Annotated[float, _opt("Label smoothing of the task loss.", _TRAIN)] = _C.label_smoothing,
    epochs: Annotated[Optional[int], _opt("Epochs (default per dataset: digits 30, sst2 4, cifar10 30, cifar100 "
                                          "40; several tasks: the smallest).", _TRAIN, show_default=False)] = None,
    batch_size: Annotated[int, _opt("Items per task per step.", _TRAIN)] = _C.batch_size,
    warmup_epochs: Annotated[float, _opt("Linear learning-rate warmup, in epochs.", _TRAIN)] = _C.warmup_epochs,
    grad_clip: Annotated[float, _opt("Clip the gradient norm to this (0: off).", _TRAIN)] = _C.grad_clip,
    eval_batch_size: Annotated[int, _opt("Batch size of evaluation.", _TRAIN)] = _C.eval_batch_size,
    select: Annotated[Literal[SELECTS], _opt("The epoch whose weights are reported on test: best-val (the best "
                                             "validation accuracy) or last.", _TRAIN)] = _C.select,
    compile: Annotated[bool, _opt("torch.compile the backbones.", _TRAIN)] = _C.compile,
    resume: Annotated[Optional[Path], _opt("Continue this run folder from its last epoch checkpoint, exactly; "
                                           "options not given are taken from the run; only --device, --data-dir, "
                                           "--compile and --eval-batch-size may differ from it.", _TRAIN,
                                           show_default=False)] = None,
    device: Device = _C.device,
    seed: Seed = _C.seed,
    deterministic: Deterministic = _C.deterministic,
    data_dir: DataDir = None,
    out: Out = None,
    name: Name = None,
    json_out: Json = False,
    expect: Expect = None,
    tracker: Tracker = None,
    tracker_uri: TrackerUri = None,
) -> None:
    """Train a classifier whose head is a mixture of experts, and report accuracy with routing diagnostics."""
    from phases import moe

    config = build_config(ctx, TrainMoEConfig)
    execute(moe.run, config, json_out=json_out, expect=expect, phase="train-moe")

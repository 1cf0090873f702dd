"""Options of train-moe, with their documented defaults. Light to import: the CLI builds these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

DATASETS = ("digits", "sst2", "cifar10", "cifar100")
STRATEGIES = ("joint", "supervised", "two-phase", "mixed")
ROUTERS = ("linear", "deep")
ASSIGNMENTS = ("auto", "mod", "coarse")
OPTIMIZERS = ("adamw", "sgd")
SELECTS = ("best-val", "last")  # which epoch's weights are reported on test

# Defaults that depend on the data or the optimizer (None in the config means "this table's value").
DEFAULT_EPOCHS = {"digits": 30, "sst2": 4, "cifar10": 30, "cifar100": 40}
DEFAULT_LR = {"adamw": 4e-3, "sgd": 0.05}
DEFAULT_WEIGHT_DECAY = {"adamw": 0.05, "sgd": 5e-4}


@dataclass
class TrainMoEConfig:
    # data
    dataset: str = "digits"
    tasks: str | None = None  # comma-separated datasets trained together (multi-task); overrides --dataset
    val_fraction: float = 0.1  # held out from the training split for validation (selection), fixed by the seed
    train_limit: int | None = None  # at most this many training items per task (stratified subset; quick runs)
    data_dir: str | None = None
    # model
    experts: int = 12
    top_k: int = 2
    router: str = "linear"
    router_hidden: int = 128
    d_model: int = 128
    expert_hidden: int = 256
    width: float = 1.0
    dropout: float = 0.1
    capacity_factor: float = 0.0  # 0: dropless
    task_masks: bool = False  # multi-task: each task sees only its own experts
    mask_layout: str | None = None  # e.g. "0-5/6-11": experts per task, in --tasks order (default: an even split)
    # routing
    strategy: str = "joint"
    assignment: str = "auto"  # class -> expert for supervised routing: mod, coarse (CIFAR-100 superclasses)
    route_weight: float = 1.0  # weight of the routing cross-entropy (supervised, mixed, two-phase)
    phase1_epochs: int | None = None  # two-phase: epochs of expert training (default: half the epochs)
    balance_coef: float = 0.01
    z_coef: float = 0.001
    # training
    optimizer: str = "adamw"
    lr: float | None = None  # default: 4e-3 for adamw, 0.05 for sgd
    weight_decay: float | None = None  # default: 0.05 for adamw, 5e-4 for sgd
    momentum: float = 0.9
    nesterov: bool = True
    label_smoothing: float = 0.0
    epochs: int | None = None  # default per dataset: digits 30, sst2 4, cifar10 30, cifar100 40 (multi-task: min)
    batch_size: int = 64
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0  # 0: off
    eval_batch_size: int = 512
    select: str = "best-val"  # the epoch evaluated on test: best validation accuracy, or the last
    # run
    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    compile: bool = False
    out: str | None = None
    name: str | None = None
    resume: str | None = None

    # what a resumed run may change: where it runs and reads, not what it computes
    resume_may_differ: ClassVar[tuple[str, ...]] = ("device", "data_dir", "data_paths", "compile", "eval_batch_size")

"""Options of train-moe, with their documented defaults. Light to import: the CLI builds these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phases.core.options import TrainingRunOptions, at_least, choice, in_range, positive
from phases.core.sizes import FLOAT, TRAINED

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
class TrainMoEConfig(TrainingRunOptions):
    # data
    dataset: str = choice("digits", DATASETS)
    tasks: str | None = None  # comma-separated datasets trained together (multi-task); overrides --dataset
    # held out from the training split for validation (selection), fixed by the seed; 0: none (the last epoch is
    # reported)
    val_fraction: float = in_range(0.1, 0, 0.5)
    # at most this many training items per task (stratified subset; quick runs)
    train_limit: int | None = at_least(1, None)
    # model
    experts: int = at_least(1, 12)
    top_k: int = at_least(1, 2)  # and at most --experts (checked by the phase)
    router: str = choice("linear", ROUTERS)
    router_hidden: int = at_least(1, 128)
    d_model: int = at_least(1, 128)
    expert_hidden: int = at_least(1, 256)
    width: float = positive(1.0)
    dropout: float = in_range(0.1, 0, 1, hi_open=True)
    capacity_factor: float = at_least(0, 0.0)  # 0: dropless
    task_masks: bool = False  # multi-task: each task sees only its own experts
    mask_layout: str | None = None  # e.g. "0-5/6-11": experts per task, in --tasks order (default: an even split)
    # routing
    strategy: str = choice("joint", STRATEGIES)
    # class -> expert for supervised routing: mod, coarse (CIFAR-100 superclasses)
    assignment: str = choice("auto", ASSIGNMENTS)
    route_weight: float = at_least(0, 1.0)  # weight of the routing cross-entropy (supervised, mixed, two-phase)
    phase1_epochs: int | None = None  # two-phase: epochs of expert training (default: half the epochs)
    balance_coef: float = at_least(0, 0.01)
    z_coef: float = at_least(0, 0.001)
    # the lab's self-modification experiments (Phase 7b)
    # weight of the mean router entropy in the loss: positive sharpens the routing, negative spreads it
    router_entropy_weight: float = in_range(0.0, -10, 10)
    # share of each batch's training targets replaced by the router's own top expert (mod classes)
    synthetic_labels: float = in_range(0.0, 0, 1)
    grow_experts: str | None = None  # START:END:EVERY: START experts, one more every EVERY epochs up to END
    # training
    optimizer: str = choice("adamw", OPTIMIZERS)
    lr: float | None = positive(None)  # default: 4e-3 for adamw, 0.05 for sgd
    weight_decay: float | None = at_least(0, None)  # default: 0.05 for adamw, 5e-4 for sgd
    momentum: float = in_range(0.9, 0, 1, hi_open=True)
    nesterov: bool = True
    label_smoothing: float = in_range(0.0, 0, 1, hi_open=True)
    # default per dataset: digits 30, sst2 4, cifar10 30, cifar100 40 (multi-task: min)
    epochs: int | None = at_least(1, None)
    batch_size: int = at_least(2, 64, "use at least 2 (batch norm needs more than one item)")
    warmup_epochs: float = at_least(0, 1.0)
    grad_clip: float = at_least(0, 1.0)  # 0: off
    eval_batch_size: int = at_least(1, 512)
    select: str = choice("best-val", SELECTS)  # the epoch evaluated on test: best validation accuracy, or the last
    compile: bool = False

    # what a resumed run may change: where it runs and reads, not what it computes
    resume_may_differ: ClassVar[tuple[str, ...]] = ("device", "data_dir", "data_paths", "compile", "eval_batch_size")

    def memory_estimate(self) -> dict[str, int]:
        """The largest allocations of the MoE head, from the options (checked against memory before any is made;
        the backbones are small)."""
        e, d, h, k = self.experts, self.d_model, self.expert_hidden, self.top_k
        if self.grow_experts:  # at its largest (an unparsable schedule is refused before this is asked)
            e = max(e, int(self.grow_experts.split(":")[1]))
        router = d * e if self.router == "linear" else d * self.router_hidden + self.router_hidden * e
        return {
            f"--experts {e} x --d-model {d} x --expert-hidden {h} (the experts' weights)": e * (2 * d * h + d + h)
            * TRAINED,
            f"--router {self.router} --router-hidden {self.router_hidden} x --d-model {d} x --experts {e} "
            "(the router's weights)": router * TRAINED,
            f"--batch-size {self.batch_size} x --d-model {d} x --top-k {k} x --expert-hidden {h} "
            "(a batch's activations)": self.batch_size * (2 * d + k * h + e) * 3 * FLOAT,
        }

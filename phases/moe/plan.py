"""Checking and resolving train-moe's options before anything is loaded or written: every inconsistent option is
an InputError (exit 2) naming the option and the fix."""

from __future__ import annotations

from dataclasses import dataclass

from phases.core.errors import InputError
from phases.core.options import check_memory, check_options, not_one_of
from phases.moe.config import DATASETS, DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_WEIGHT_DECAY, TrainMoEConfig


@dataclass(frozen=True)
class Growth:
    """--grow-experts START:END:EVERY: the model starts with START experts and gains one at the end of every
    EVERY-th epoch until it has END."""

    start: int
    end: int
    every: int

    def due(self, epoch: int, experts: int) -> bool:
        """Whether an expert is added after (1-based) `epoch`, the model having `experts`."""
        return epoch % self.every == 0 and experts < self.end

    @property
    def last_epoch(self) -> int:
        """The epoch after which the last expert is added."""
        return (self.end - self.start) * self.every


_GROW_HINT = "write START:END:EVERY, e.g. --grow-experts 4:12:2 (4 experts, one more every 2 epochs up to 12)"


def parse_growth(c: TrainMoEConfig, epochs: int) -> Growth | None:
    if c.grow_experts is None:
        return None
    try:
        start, end, every = (int(p) for p in c.grow_experts.split(":"))
    except ValueError:
        raise InputError(f"--grow-experts {c.grow_experts!r} is not three whole numbers", _GROW_HINT) from None
    if not 1 <= start < end or every < 1:
        raise InputError(f"--grow-experts {c.grow_experts}: needs 1 <= START < END and EVERY >= 1", _GROW_HINT)
    if c.top_k > start:
        raise InputError(f"--grow-experts {c.grow_experts}: START ({start}) is below --top-k ({c.top_k})",
                         "start with at least --top-k experts, or lower --top-k")
    growth = Growth(start, end, every)
    if growth.last_epoch >= epochs:
        raise InputError(f"--grow-experts {c.grow_experts}: the last expert would be added after epoch "
                         f"{growth.last_epoch}, but the run has {epochs} epoch(s)",
                         f"use --epochs {growth.last_epoch + 1} or more, or a smaller END or EVERY")
    if c.strategy != "joint" or c.task_masks or c.mask_layout is not None:
        raise InputError("--grow-experts: grows the joint strategy's experts only (a class -> expert assignment or "
                         "task masks are fixed at the start)", "use --strategy joint without --task-masks/"
                         "--mask-layout, or leave --grow-experts out")
    return growth


@dataclass
class Plan:
    """The resolved options: what the run will actually do."""

    tasks: list[str]
    epochs: int
    lr: float
    weight_decay: float
    phase1_epochs: int | None  # two-phase only
    masks: list[list[int]] | None  # per task, its experts (task masks only)
    growth: Growth | None = None  # --grow-experts
    select: str = "best-val"  # --select, or "last" where there is no validation split (--val-fraction 0)
    configured_experts: int = 12  # --experts

    @property
    def experts(self) -> int:
        """Experts the model starts with: --experts, or START of --grow-experts."""
        return self.growth.start if self.growth else self.configured_experts

    @property
    def multi_task(self) -> bool:
        return len(self.tasks) > 1


def parse_tasks(c: TrainMoEConfig) -> tuple[list[str], str]:
    """(task names, the option they came from)."""
    if c.tasks is None:
        return [c.dataset], "--dataset"  # a choice, checked with the other options
    names = [t.strip() for t in c.tasks.split(",")]
    if not all(names):
        raise InputError(f"--tasks {c.tasks!r}: empty task name", "list datasets separated by commas: digits,sst2")
    for name in names:
        if name not in DATASETS:
            raise not_one_of("--tasks", name, DATASETS, "a comma-separated list of them, e.g. --tasks digits,sst2")
    if len(set(names)) != len(names):
        raise InputError(f"--tasks {c.tasks!r}: a dataset is listed twice", "list each dataset once")
    return names, "--tasks"


def _parse_group(text: str, experts: int, task: str) -> list[int]:
    out: list[int] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        try:
            lo, _, hi = item.partition("-")
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise InputError(f"--mask-layout: {item!r} (task {task}) is not an expert index or range",
                             "write experts as indices and ranges, tasks separated by '/': 0-5/6-11") from None
        if not 0 <= first <= last < experts:
            raise InputError(f"--mask-layout: {item!r} (task {task}) is outside experts 0..{experts - 1}",
                             "use indices below --experts")
        out.extend(range(first, last + 1))
    return sorted(set(out))


def task_masks(c: TrainMoEConfig, tasks: list[str]) -> list[list[int]]:
    """Experts per task: --mask-layout, or an even split of the experts in --tasks order."""
    if len(tasks) < 2:
        raise InputError("--task-masks/--mask-layout: needs several tasks", "train several tasks: --tasks digits,sst2")
    if c.mask_layout is not None:
        parts = c.mask_layout.split("/")
        if len(parts) != len(tasks):
            raise InputError(f"--mask-layout {c.mask_layout!r}: {len(parts)} group(s) for {len(tasks)} tasks",
                             "give one group of experts per task, separated by '/', e.g. 0-5/6-11")
        masks = [_parse_group(p, c.experts, t) for p, t in zip(parts, tasks)]
    else:
        base, extra = divmod(c.experts, len(tasks))
        starts = [i * base + min(i, extra) for i in range(len(tasks) + 1)]
        masks = [list(range(starts[i], starts[i + 1])) for i in range(len(tasks))]
    for task, mask in zip(tasks, masks):
        if not mask:
            raise InputError(f"--task-masks: the layout leaves task {task!r} without experts",
                             "give every task at least --top-k experts (more --experts, or --mask-layout)")
        if len(mask) < c.top_k:
            raise InputError(f"--task-masks: task {task!r} has {len(mask)} expert(s), fewer than --top-k {c.top_k}",
                             "lower --top-k or give the task more experts")
    return masks


def resolve(c: TrainMoEConfig) -> Plan:
    check_options(c)  # each option's own range or choice (declared in the config); below, options together
    tasks, _ = parse_tasks(c)
    if c.top_k > c.experts and c.grow_experts is None:
        raise InputError(f"--top-k {c.top_k}: must be at most --experts ({c.experts})",
                         "choose a top-k no larger than the number of experts")
    if c.strategy == "joint" and c.assignment != "auto":
        raise InputError(f"--assignment {c.assignment}: the joint strategy has no class -> expert assignment",
                         "use --strategy supervised, mixed or two-phase, or leave --assignment out")
    if c.assignment == "coarse" and any(t != "cifar100" for t in tasks):
        raise InputError("--assignment coarse: only CIFAR-100 has superclasses",
                         "use --assignment mod (or auto) for other datasets")
    if c.strategy == "supervised" and c.route_weight == 0:
        raise InputError("--route-weight 0: the supervised router learns only from the routing loss",
                         "use a positive --route-weight, or --strategy joint")
    epochs = c.epochs or min(DEFAULT_EPOCHS[t] for t in tasks)
    phase1 = None
    if c.strategy == "two-phase":
        phase1 = c.phase1_epochs if c.phase1_epochs is not None else epochs // 2
        if not 1 <= phase1 < epochs:
            raise InputError(f"two-phase: {phase1} expert epoch(s) out of {epochs}",
                             "two-phase needs --phase1-epochs between 1 and --epochs - 1 (and --epochs >= 2)")
    elif c.phase1_epochs is not None:
        raise InputError("--phase1-epochs: only the two-phase strategy has phases", "use --strategy two-phase")
    growth = parse_growth(c, epochs)
    masks = task_masks(c, tasks) if (c.task_masks or c.mask_layout is not None) else None
    check_memory(c)
    return Plan(tasks, epochs, c.lr or DEFAULT_LR[c.optimizer],
                c.weight_decay if c.weight_decay is not None else DEFAULT_WEIGHT_DECAY[c.optimizer], phase1, masks,
                growth, "last" if c.val_fraction == 0 else c.select, c.experts)

"""Options of `nlab apoptosis`, with their defaults: nanoGPT's CPU recipe for tiny Shakespeare (4 layers, 4 heads,
width 128, block 64, batch 12, 2,000 steps, dropout 0, lr 1e-3 decaying to 1e-4 after 100 warmup steps) and the
neuron-turnover settings. Light to import: the CLI builds this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

STRATEGIES = ("none", "layer", "standard", "functional", "hybrid", "growth", "crossover")
FITNESSES = ("grad_activation", "activation", "weight_magnitude", "utility")
CROSSOVERS = ("uniform", "weighted")


@dataclass
class ApoptosisConfig:
    # data and model (nanoGPT's names)
    dataset: str = "tinyshakespeare"
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = False
    # optimisation (nanoGPT's train.py and config/train_shakespeare_char.py)
    batch_size: int = 12
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None: max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 10
    # neuron turnover
    strategy: str = "none"
    interval: int = 500  # steps between events
    prune_rate: float = 0.05  # fraction of each MLP's neurons that dies per event (standard, functional, crossover)
    turnover_rate: float = 0.05  # births and deaths per event (hybrid); births per event (growth)
    fitness: str = "grad_activation"
    fitness_decay: float = 0.99  # EMA decay of the tracked fitness
    maturity: int = 250  # neurons younger than this many steps are never killed
    mutation_strength: float = 0.1  # newborn's incoming weights = parent's + noise of this x the weights' std
    preservation_steps: int = 0  # functional: steps fitting the newborns to the dying neurons' outputs
    max_width: int | None = None  # growth: the widest an MLP may grow (None: twice its initial width)
    crossover: str = "uniform"
    spike_window: int = 25  # training steps before/after an event compared for the spike factor
    # output
    sample: int = 0  # characters to generate at the end
    temperature: float = 0.8  # 0: greedy
    # common
    device: str = "auto"
    seed: int = 1337
    deterministic: bool = False
    compile: bool = False
    data_dir: str | None = None
    out: str | None = None
    name: str | None = None
    resume: str | None = None  # a run folder to continue from its last checkpoint (the run's own options)

    # what a resumed run may change: where it runs and reads, not what it computes
    resume_may_differ: ClassVar[tuple[str, ...]] = ("device", "data_dir", "compile")

    @property
    def growth_limit(self) -> int:
        """The widest an MLP may grow: --max-width, else twice the initial width (4 x n_embd)."""
        return self.max_width or 8 * self.n_embd


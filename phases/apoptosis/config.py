"""Options of `nlab apoptosis`, with their defaults: nanoGPT's CPU recipe for tiny Shakespeare (4 layers, 4 heads,
width 128, block 64, batch 12, 2,000 steps, dropout 0, lr 1e-3 decaying to 1e-4 after 100 warmup steps) and the
neuron-turnover settings. Light to import: the CLI builds this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phases.core.options import TrainingRunOptions, at_least, choice, in_range, positive
from phases.core.sizes import TRAINED, gpt_terms

DATASETS = ("tinyshakespeare", "wikitext2")  # char-level corpora (the registry's other datasets are not text)
STRATEGIES = ("none", "layer", "standard", "functional", "hybrid", "growth", "crossover")
FITNESSES = ("grad_activation", "activation", "weight_magnitude", "utility")
CROSSOVERS = ("uniform", "weighted", "random")
SELECTS = ("fittest", "orthogonal")  # how parents are chosen among the candidates for birth
LAYER_SCHEDULES = ("fitness", "depth")  # layer strategy: which MLP dies, and where the newborn goes


@dataclass
class ApoptosisConfig(TrainingRunOptions):
    # data and model (nanoGPT's names)
    dataset: str = choice("tinyshakespeare", DATASETS)
    n_layer: int = at_least(1, 4)
    n_head: int = at_least(1, 4)
    n_embd: int = at_least(1, 128)
    block_size: int = at_least(1, 64)
    dropout: float = in_range(0.0, 0, 1, hi_open=True)
    bias: bool = False
    # optimisation (nanoGPT's train.py and config/train_shakespeare_char.py)
    batch_size: int = at_least(1, 12)
    max_iters: int = at_least(1, 2000)
    lr: float = positive(1e-3)
    min_lr: float = at_least(0, 1e-4)  # and at most --lr (checked by the phase)
    warmup_iters: int = at_least(0, 100)
    lr_decay_iters: int | None = at_least(1, None)  # None: max_iters
    weight_decay: float = at_least(0, 0.1)
    beta1: float = in_range(0.9, 0, 1, hi_open=True)
    beta2: float = in_range(0.99, 0, 1, hi_open=True)
    grad_clip: float = at_least(0, 1.0)
    eval_interval: int = at_least(1, 250)
    eval_iters: int = at_least(1, 20)
    log_interval: int = at_least(1, 10)
    # neuron turnover
    strategy: str = choice("none", STRATEGIES)
    interval: int = at_least(1, 500)  # steps between events
    # fraction of each MLP's neurons that dies per event (standard, functional, crossover)
    prune_rate: float = in_range(0.05, 0, 0.5, lo_open=True)
    # births and deaths per event (hybrid); births per event (growth)
    turnover_rate: float = in_range(0.05, 0, 0.5, lo_open=True)
    fitness: str = choice("grad_activation", FITNESSES)
    fitness_decay: float = in_range(0.99, 0, 1, lo_open=True, hi_open=True)  # EMA decay of the tracked fitness
    maturity: int = at_least(0, 250)  # neurons younger than this many steps are never killed
    mutation_strength: float = at_least(0, 0.1)  # newborn's incoming weights = parent's + noise x the weights' std
    preservation_steps: int = at_least(0, 0)  # functional: steps fitting the newborns to the dying neurons' outputs
    max_width: int | None = None  # growth: the widest an MLP may grow (None: twice its initial width)
    crossover: str = choice("uniform", CROSSOVERS)
    # fittest: the fittest mature neurons are the parents; orthogonal: among twice as many candidates, the parents
    # whose incoming weight vectors are the most nearly orthogonal (and crossover pairs likewise)
    select: str = choice("fittest", SELECTS)
    layer_schedule: str = choice("fitness", LAYER_SCHEDULES)  # layer strategy
    initial_vitality: float = in_range(1.0, 0, 1, lo_open=True)  # layer strategy: every MLP's at the start, a newborn's
    spike_window: int = at_least(1, 25)  # training steps before/after an event compared for the spike factor
    # output
    sample: int = at_least(0, 0)  # characters to generate at the end
    temperature: float = at_least(0, 0.8)  # 0: greedy
    compile: bool = False
    seed: int = 1337  # nanoGPT's

    # what a resumed run may change: where it runs and reads, not what it computes
    resume_may_differ: ClassVar[tuple[str, ...]] = ("device", "data_dir", "compile")

    def memory_estimate(self) -> dict[str, int]:
        """The largest allocations, from the options (checked against memory before any is made)."""
        terms = gpt_terms(self.n_layer, self.n_embd, self.block_size, self.batch_size)
        if self.strategy == "growth":
            terms[f"--max-width {self.growth_limit} x --n-embd {self.n_embd} x --n-layer {self.n_layer} "
                  "(the grown MLPs)"] = self.n_layer * 2 * self.n_embd * self.growth_limit * TRAINED
        return terms

    @property
    def growth_limit(self) -> int:
        """The widest an MLP may grow: --max-width, else twice the initial width (4 x n_embd)."""
        return self.max_width or 8 * self.n_embd


"""Options of `nlab ewc`, with their defaults. Light to import: the CLI builds this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

SCENARIOS = ("permuted-digits", "split-digits", "shakespeare-wikitext", "scan", "moe-multitask")
METHODS = ("naive", "ewc", "l2", "replay", "mixed", "gated")
# methods that need a base/modified pair trained as a curriculum (the stage plan comes from --mix)
CURRICULUM_METHODS = ("mixed", "gated")
CURRICULUM_SCENARIOS = ("scan",)
MODELS = ("mlp", "moe")
MODEL_SCENARIOS = ("permuted-digits", "split-digits")  # where --model chooses; the others fix their model


@dataclass
class EwcConfig:
    scenario: str = "permuted-digits"
    methods: str = "naive,l2,ewc,replay"  # comma-separated, compared on identical data and seed
    # scenario data
    tasks_count: int = 5  # permuted-digits: number of permutations (the first task is the unpermuted digits)
    heads: str = "multi"  # split-digits: multi (a head per task, task-incremental) | single (class-incremental)
    moe_tasks: str = "digits,sst2"  # moe-multitask: datasets trained one after the other
    train_limit: int | None = None  # at most this many training items per task (stratified for classification)
    eval_limit: int | None = None  # at most this many held-out items per task (None: scenario default)
    scan_max_actions: int = 24  # scan: keep commands whose action sequence has at most this many actions
    # model
    model: str = "mlp"  # digits scenarios: mlp (64-256-256-heads) | moe (train-moe's classifier)
    hidden: int = 256  # MLP width
    n_layer: int = 2  # GPT scenarios
    n_head: int = 4
    n_embd: int = 64
    block_size: int = 64  # shakespeare-wikitext context (scan sets its own from the longest sequence)
    # training
    steps: int | None = None  # optimizer steps per stage (None: scenario default)
    batch_size: int = 64
    lr: float | None = None  # None: scenario default (Adam)
    eval_interval: int | None = None  # steps between validation points in history (None: 4 per stage)
    log_interval: int = 10  # steps between logged training-loss points
    # methods
    ewc_lambda: float = 1000.0
    ewc_mode: str = "separate"  # separate (a penalty per earlier stage) | online (decayed running Fisher)
    gamma: float = 1.0  # online mode: decay of the old importance at each consolidation
    fisher: str = "empirical"  # empirical (true per-sample squared gradients, torch.func) | batch (Avalanche)
    fisher_samples: int = 512  # training examples the Fisher is estimated on
    fisher_batch: int = 64  # --fisher batch: minibatch size whose squared mean gradient is one Fisher sample
    buffer_size: int = 200  # replay: reservoir buffer of past examples
    replay_batch: int | None = None  # replay: buffer examples added to each batch (None: --batch-size)
    mix: str = "100:0,70:30,50:50,30:70"  # scan: base:modified percentages of each stage's batches
    gate_bias: float = -3.0  # gated: initial gate logit (sigmoid(-3) = 0.05: the modification starts almost off)
    gate_penalty: float = 0.01  # gated: weight of the mean gate in the loss (keeps gates shut where not needed)
    spike_window: int = 5  # logged training-loss points on each side of a stage boundary for the spike factor
    heatmap: bool = True
    # common
    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    data_dir: str | None = None
    out: str | None = None
    name: str | None = None
    resume: str | None = None  # a run folder to continue: its finished methods are kept, the others rerun

    # what a resumed run may change: where it runs and reads, not what it computes
    resume_may_differ: ClassVar[tuple[str, ...]] = ("device", "data_dir")


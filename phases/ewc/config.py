"""Options of `nlab ewc`, with their defaults. Light to import: the CLI builds this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phases.core.options import TrainingRunOptions, at_least, choice, in_range, positive
from phases.core.sizes import FLOAT, TRAINED, gpt_terms

SCENARIOS = ("permuted-digits", "split-digits", "shakespeare-wikitext", "scan", "moe-multitask")
METHODS = ("naive", "ewc", "l2", "replay", "mixed", "gated", "apoptosis")
# methods that need a base/modified pair trained as a curriculum (the stage plan comes from --mix)
CURRICULUM_METHODS = ("mixed", "gated")
CURRICULUM_SCENARIOS = ("scan",)
MODELS = ("mlp", "moe")
MODEL_SCENARIOS = ("permuted-digits", "split-digits")  # where --model chooses; the others fix their model
GPT_SCENARIOS = ("shakespeare-wikitext", "scan")  # where the model is a char/token-level GPT
GPT_METHODS = ("apoptosis",)  # methods that act on the GPT's MLP neurons
GATE_INPUTS = ("original", "both")  # gated: what the gate reads
# apoptosis as a method: the swap strategies of `nlab apoptosis` (same width before and after an event)
TURNOVER_STRATEGIES = ("standard", "functional", "crossover", "hybrid")
HEADS = ("multi", "single")
EWC_MODES = ("separate", "online")
FISHERS = ("empirical", "batch")


@dataclass
class EwcConfig(TrainingRunOptions):
    scenario: str = choice("permuted-digits", SCENARIOS)
    methods: str = "naive,l2,ewc,replay"  # comma-separated, compared on identical data and seed
    # scenario data
    # permuted-digits: number of permutations (the first task is the unpermuted digits)
    tasks_count: int = at_least(2, 5, "a sequence needs at least 2 tasks, e.g. --tasks-count 5")
    # split-digits: multi (a head per task, task-incremental) | single (class-incremental)
    heads: str = choice("multi", HEADS)
    # shakespeare-wikitext: a third stage back on Shakespeare after the shift (the reconsolidation test)
    reconsolidate: bool = False
    moe_tasks: str = "digits,sst2"  # moe-multitask: datasets trained one after the other
    # at most this many training items per task (stratified for classification)
    train_limit: int | None = at_least(1, None)
    eval_limit: int | None = at_least(1, None)  # at most this many held-out items per task (None: scenario default)
    scan_max_actions: int = at_least(1, 24)  # scan: keep commands whose action sequence has at most this many actions
    # model
    model: str = choice("mlp", MODELS)  # digits scenarios: mlp (64-256-256-heads) | moe (train-moe's classifier)
    hidden: int = at_least(1, 256)  # MLP width
    n_layer: int = at_least(1, 2)  # GPT scenarios
    n_head: int = at_least(1, 4)
    n_embd: int = at_least(1, 64)
    block_size: int = at_least(1, 64)  # shakespeare-wikitext context (scan sets its own from the longest sequence)
    # training
    steps: int | None = at_least(1, None)  # optimizer steps per stage (None: scenario default)
    batch_size: int = at_least(1, 64)
    lr: float | None = positive(None)  # None: scenario default (Adam)
    eval_interval: int | None = at_least(1, None)  # steps between validation points in history (None: 4 per stage)
    log_interval: int = at_least(1, 10)  # steps between logged training-loss points
    # methods
    ewc_lambda: float = at_least(0, 1000.0, "a negative penalty rewards moving away; use e.g. --ewc-lambda 1000")
    # separate (a penalty per earlier stage) | online (decayed running Fisher)
    ewc_mode: str = choice("separate", EWC_MODES)
    gamma: float = in_range(1.0, 0, 1)  # online mode: decay of the old importance at each consolidation
    # empirical (true per-sample squared gradients, torch.func) | batch (Avalanche)
    fisher: str = choice("empirical", FISHERS)
    fisher_samples: int = at_least(1, 512)  # training examples the Fisher is estimated on
    # --fisher batch: minibatch size whose squared mean gradient is one Fisher sample
    fisher_batch: int = at_least(1, 64)
    buffer_size: int = at_least(1, 200)  # replay: reservoir buffer of past examples
    replay_batch: int | None = at_least(1, None)  # replay: buffer examples added to each batch (None: --batch-size)
    mix: str = "100:0,70:30,50:50,30:70"  # scan: base:modified percentages of each stage's batches
    gate_bias: float = -3.0  # gated: initial gate logit (sigmoid(-3) = 0.05: the modification starts almost off)
    # gated: weight of the mean gate in the loss (keeps gates shut where not needed)
    gate_penalty: float = at_least(0, 0.01)
    # gated: the gate reads the layer's input (original) or that and the modification's change to the output (both)
    gate_input: str = choice("original", GATE_INPUTS)
    # apoptosis: `nlab apoptosis`'s neuron turnover in the GPT's MLPs during every stage after the first (the shift)
    turnover_strategy: str = choice("functional", TURNOVER_STRATEGIES)
    turnover_interval: int = at_least(1, 100)  # steps between events within a stage
    prune_rate: float = in_range(0.05, 0, 0.5, lo_open=True)  # share of each MLP's neurons replaced per event
    maturity: int = at_least(0, 50)  # neurons younger than this many steps are never replaced
    # logged training-loss points on each side of a stage boundary for the spike factor
    spike_window: int = at_least(1, 5)
    heatmap: bool = True
    stage_diff: bool = False  # print, per method, which held-out items each stage changed (always in metrics)

    # what a resumed run may change: where it runs and reads, not what it computes
    resume_may_differ: ClassVar[tuple[str, ...]] = ("device", "data_dir")

    def memory_estimate(self) -> dict[str, int]:
        """The largest allocations of the scenario's model, from the options (checked against memory before any is
        made): Adam's state plus a Fisher and an anchor per task on every weight."""
        per_weight = TRAINED + 2 * self.tasks_count * FLOAT
        if self.scenario in GPT_SCENARIOS:
            terms = gpt_terms(self.n_layer, self.n_embd, self.block_size, self.batch_size)
            return {k: v * per_weight // TRAINED if "weights" in k else v for k, v in terms.items()}
        h = self.hidden
        return {f"--hidden {h} (the MLP's weights)": (64 * h + h * h + h * 10 * self.tasks_count) * per_weight,
                f"--batch-size {self.batch_size} x --hidden {h} (a batch's activations)":
                    self.batch_size * (64 + 2 * h) * 3 * FLOAT}


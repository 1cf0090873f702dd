"""nlab ewc: tasks learned one after another, forgetting measured; EWC, L2, replay, mixed curricula, gating."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from nlab_cli.common import Expect, DataDir, Deterministic, Device, Json, Name, Out, Seed, execute
from nlab_cli.common import Tracker, TrackerUri
from nlab_cli.common import opt as _opt
from nlab_cli.options import build_config
from phases.ewc.config import (EWC_MODES, FISHERS, GATE_INPUTS, HEADS, MODELS, SCENARIOS, TURNOVER_STRATEGIES,
                               EwcConfig)

_C = EwcConfig()
_SCN, _MODEL, _TRAIN, _METHOD = "Scenario", "Model", "Training", "Methods"


def ewc(
    ctx: typer.Context,
    scenario: Annotated[Literal[SCENARIOS], _opt("The sequence of tasks.", _SCN)] = _C.scenario,
    method: Annotated[str, _opt("Comma-separated methods compared on identical data and seed: naive, ewc, l2, "
                                "replay, mixed, gated (mixed and gated: scan only), apoptosis (neuron turnover "
                                "after the first stage; GPT scenarios).", _METHOD, "--method")] = _C.methods,
    tasks_count: Annotated[int, _opt("permuted-digits: number of tasks (the first is unpermuted).",
                                     _SCN)] = _C.tasks_count,
    heads: Annotated[Literal[HEADS], _opt("split-digits: multi (a head per task) or single (one 10-way head, "
                                          "class-incremental).", _SCN)] = _C.heads,
    reconsolidate: Annotated[bool, _opt("shakespeare-wikitext: a third stage back on Shakespeare after the shift "
                                        "(before, after the shift, after the return).", _SCN)] = _C.reconsolidate,
    moe_tasks: Annotated[str, _opt("moe-multitask: datasets trained one after the other.", _SCN)] = _C.moe_tasks,
    train_limit: Annotated[Optional[int], _opt("Training items per task (default: all; scan 4000, moe-multitask "
                                               "3000).", _SCN, show_default=False)] = None,
    eval_limit: Annotated[Optional[int], _opt("Held-out items per task (default: all; scan 500 commands, "
                                              "shakespeare-wikitext 512 windows).", _SCN, show_default=False)] = None,
    scan_max_actions: Annotated[int, _opt("scan: keep commands with at most this many actions.",
                                          _SCN)] = _C.scan_max_actions,
    mix: Annotated[str, _opt("scan: base:modified percentages of each stage's batches; also sets the stages "
                             "(the first must be 100:0).", _METHOD)] = _C.mix,
    model: Annotated[Literal[MODELS], _opt("Digits scenarios: mlp (64-256-256) or moe (train-moe's classifier).",
                                          _MODEL)] = _C.model,
    hidden: Annotated[int, _opt("MLP width.", _MODEL)] = _C.hidden,
    n_layer: Annotated[int, _opt("GPT layers (shakespeare-wikitext, scan).", _MODEL)] = _C.n_layer,
    n_head: Annotated[int, _opt("GPT attention heads.", _MODEL)] = _C.n_head,
    n_embd: Annotated[int, _opt("GPT width.", _MODEL)] = _C.n_embd,
    block_size: Annotated[int, _opt("shakespeare-wikitext: context length in characters.", _MODEL)] = _C.block_size,
    steps: Annotated[Optional[int], _opt("Optimizer steps per stage (default: 300 digits, 800 text, 1000 scan).",
                                         _TRAIN, show_default=False)] = None,
    batch_size: Annotated[int, _opt("Examples of the stage's data per step.", _TRAIN)] = _C.batch_size,
    lr: Annotated[Optional[float], _opt("Adam learning rate (default: 1e-3 digits; 2e-3 text, scan and moe-multitask).",
                                        _TRAIN, show_default=False)] = None,
    eval_interval: Annotated[Optional[int], _opt("Steps between validation points (default: a quarter stage).",
                                                 _TRAIN, show_default=False)] = None,
    log_interval: Annotated[int, _opt("Steps between logged training losses.", _TRAIN)] = _C.log_interval,
    spike_window: Annotated[int, _opt("Logged training losses on each side of a stage boundary for the spike "
                                      "factor.", _TRAIN)] = _C.spike_window,
    ewc_lambda: Annotated[float, _opt("Strength of the EWC (and L2) penalty, lambda/2 * sum F (theta - "
                                      "theta*)^2.", _METHOD)] = _C.ewc_lambda,
    ewc_mode: Annotated[Literal[EWC_MODES], _opt("separate (a penalty per earlier stage) or online (one decayed "
                                                 "Fisher).", _METHOD)] = _C.ewc_mode,
    gamma: Annotated[float, _opt("online EWC: share of the old importance kept at each new stage.",
                                 _METHOD)] = _C.gamma,
    fisher: Annotated[Literal[FISHERS], _opt("empirical (per-sample squared gradients, torch.func) or batch "
                                             "(squared minibatch gradients, as Avalanche).", _METHOD)] = _C.fisher,
    fisher_samples: Annotated[int, _opt("Training examples the Fisher is estimated on.", _METHOD)] = _C.fisher_samples,
    fisher_batch: Annotated[int, _opt("--fisher batch: minibatch size.", _METHOD)] = _C.fisher_batch,
    buffer_size: Annotated[int, _opt("replay: reservoir buffer size (examples).", _METHOD)] = _C.buffer_size,
    replay_batch: Annotated[Optional[int], _opt("replay: buffer examples added to each batch (default: "
                                                "--batch-size).", _METHOD, show_default=False)] = None,
    gate_bias: Annotated[float, _opt("gated: initial gate logit (-3: the modification starts 5% on).",
                                     _METHOD)] = _C.gate_bias,
    gate_penalty: Annotated[float, _opt("gated: weight of the mean gate in the loss.", _METHOD)] = _C.gate_penalty,
    gate_input: Annotated[Literal[GATE_INPUTS], _opt("gated: the gate reads the layer's input (original) or that "
                                                     "and the modification's change to the output (both).",
                                                     _METHOD)] = _C.gate_input,
    turnover_strategy: Annotated[Literal[TURNOVER_STRATEGIES], _opt("apoptosis: nlab apoptosis's strategy for "
                                                                    "the dying and reborn neurons.",
                                                                    _METHOD)] = _C.turnover_strategy,
    turnover_interval: Annotated[int, _opt("apoptosis: steps between turnover events within a stage.",
                                           _METHOD)] = _C.turnover_interval,
    prune_rate: Annotated[float, _opt("apoptosis: share of each MLP's neurons replaced per event.",
                                      _METHOD)] = _C.prune_rate,
    maturity: Annotated[int, _opt("apoptosis: neurons younger than this many steps are never replaced.",
                                  _METHOD)] = _C.maturity,
    stage_diff: Annotated[bool, _opt("Print, per method, which held-out items each stage fixed and broke (always "
                                     "in metrics.json and methods/<method>/stage_predictions.jsonl).",
                                     _TRAIN)] = _C.stage_diff,
    heatmap: Annotated[bool, _opt("Draw methods/<method>/R.png.", _TRAIN)] = _C.heatmap,
    device: Device = _C.device,
    seed: Seed = _C.seed,
    deterministic: Deterministic = False,
    data_dir: DataDir = None,
    out: Out = None,
    name: Name = None,
    resume: Annotated[Optional[Path], typer.Option(
        help="Continue this run folder after a kill or crash: methods that finished are kept, the others are "
             "rerun from the start; options not given are the run's own, and only --device and --data-dir may "
             "differ.", show_default=False)] = None,
    json_out: Json = False,
    expect: Expect = None,
    tracker: Tracker = None,
    tracker_uri: TrackerUri = None,
) -> None:
    """Learn tasks one after another and measure forgetting: naive fine-tuning, EWC, an L2 control, replay, a
    mixed curriculum and a gated modification layer, compared on identical data and seed in one table."""
    from phases import ewc as phase

    config = build_config(ctx, EwcConfig, renamed={"method": "methods"})
    execute(phase.run, config, json_out=json_out, expect=expect, phase="ewc")

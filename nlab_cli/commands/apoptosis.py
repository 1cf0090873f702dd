"""nlab apoptosis: neuron death and rebirth in the MLPs of a char-level GPT while it trains."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from nlab_cli.common import Expect, DataDir, Deterministic, Device, Json, Name, Out, Seed, execute
from nlab_cli.common import Tracker, TrackerUri
from nlab_cli.common import opt as _opt
from nlab_cli.options import build_config
from phases.apoptosis.config import (CROSSOVERS, DATASETS, FITNESSES, LAYER_SCHEDULES, SELECTS, STRATEGIES,
                                     ApoptosisConfig)

_C = ApoptosisConfig()
_MODEL, _OPT, _TURN = "Model and data", "Optimisation (nanoGPT's names)", "Neuron turnover"


def apoptosis(
    ctx: typer.Context,
    strategy: Annotated[Literal[STRATEGIES], _opt("How neurons die and are reborn; none is the baseline.",
                                                  _TURN)] = _C.strategy,
    interval: Annotated[int, _opt("Steps between turnover events.", _TURN)] = _C.interval,
    prune_rate: Annotated[float, _opt("Fraction of each MLP's neurons that dies per event (standard, functional, "
                                      "crossover); in (0, 0.5].", _TURN)] = _C.prune_rate,
    turnover_rate: Annotated[float, _opt("Births and deaths per event as a fraction of the width (hybrid); births "
                                         "per event as a fraction of the initial width (growth).",
                                         _TURN)] = _C.turnover_rate,
    fitness: Annotated[Literal[FITNESSES], _opt("What makes a neuron fit.", _TURN)] = _C.fitness,
    fitness_decay: Annotated[float, _opt("EMA decay of the tracked fitness.", _TURN)] = _C.fitness_decay,
    maturity: Annotated[int, _opt("Neurons younger than this many steps are never killed.", _TURN)] = _C.maturity,
    mutation_strength: Annotated[float, _opt("Newborn's incoming weights = parent's + noise of this x the weights' "
                                             "std.", _TURN)] = _C.mutation_strength,
    preservation_steps: Annotated[int, _opt("functional: steps fitting the newborns to the dying neurons' output "
                                            "on the latest batch.", _TURN)] = _C.preservation_steps,
    max_width: Annotated[Optional[int], _opt("growth: the widest an MLP may grow [default: twice its initial "
                                             "width].", _TURN, show_default=False)] = _C.max_width,
    crossover: Annotated[Literal[CROSSOVERS], _opt("How crossover mixes two parents: uniform (each weight from "
                                                   "either), weighted (by fitness), random (a random blend).",
                                                   _TURN)] = _C.crossover,
    select: Annotated[Literal[SELECTS], _opt("How parents are chosen: fittest, or orthogonal (among twice as many "
                                             "fit candidates, the most nearly orthogonal incoming weights).",
                                             _TURN)] = _C.select,
    layer_schedule: Annotated[Literal[LAYER_SCHEDULES], _opt(
        "layer strategy: fitness (the least vital layer is reborn in place) or depth (deep layers decay, the "
        "deepest dies, a new one is born at the shallow end).", _TURN)] = _C.layer_schedule,
    initial_vitality: Annotated[float, _opt("layer strategy: every MLP's vitality at the start and a newborn's.",
                                            _TURN)] = _C.initial_vitality,
    spike_window: Annotated[int, _opt("Training steps before/after an event compared for its spike factor.",
                                      _TURN)] = _C.spike_window,
    dataset: Annotated[Literal[DATASETS], _opt("Char-level text corpus.", _MODEL)] = _C.dataset,
    n_layer: Annotated[int, _opt("Transformer blocks.", _MODEL)] = _C.n_layer,
    n_head: Annotated[int, _opt("Attention heads.", _MODEL)] = _C.n_head,
    n_embd: Annotated[int, _opt("Embedding width (the MLPs are 4x wider).", _MODEL)] = _C.n_embd,
    block_size: Annotated[int, _opt("Context length in characters.", _MODEL)] = _C.block_size,
    dropout: Annotated[float, _opt("Dropout.", _MODEL)] = _C.dropout,
    bias: Annotated[bool, _opt("Biases in Linears and LayerNorms.", _MODEL)] = _C.bias,
    batch_size: Annotated[int, _opt("Sequences per step.", _OPT)] = _C.batch_size,
    max_iters: Annotated[int, _opt("Training steps.", _OPT)] = _C.max_iters,
    lr: Annotated[float, _opt("Peak learning rate (AdamW).", _OPT)] = _C.lr,
    min_lr: Annotated[float, _opt("Learning rate at the end of the cosine decay.", _OPT)] = _C.min_lr,
    warmup_iters: Annotated[int, _opt("Linear warmup steps.", _OPT)] = _C.warmup_iters,
    lr_decay_iters: Annotated[Optional[int], _opt("Step where the cosine decay ends [default: --max-iters].", _OPT,
                                                  show_default=False)] = _C.lr_decay_iters,
    weight_decay: Annotated[float, _opt("AdamW weight decay (matrices only).", _OPT)] = _C.weight_decay,
    beta1: Annotated[float, _opt("AdamW beta1.", _OPT)] = _C.beta1,
    beta2: Annotated[float, _opt("AdamW beta2.", _OPT)] = _C.beta2,
    grad_clip: Annotated[float, _opt("Gradient-norm clipping (0: off).", _OPT)] = _C.grad_clip,
    eval_interval: Annotated[int, _opt("Steps between evaluations (and checkpoints).", _OPT)] = _C.eval_interval,
    eval_iters: Annotated[int, _opt("Batches per loss estimate at an evaluation.", _OPT)] = _C.eval_iters,
    log_interval: Annotated[int, _opt("Steps per training-loss point in history.jsonl.", _OPT)] = _C.log_interval,
    compile: Annotated[bool, _opt("torch.compile the model (CUDA only).", _OPT)] = _C.compile,
    sample: Annotated[int, typer.Option(help="Characters to generate from the trained model at the end.")] = _C.sample,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: greedy).")] = _C.temperature,
    device: Device = _C.device,
    seed: Seed = _C.seed,
    deterministic: Deterministic = _C.deterministic,
    data_dir: DataDir = None,
    out: Out = None,
    name: Name = None,
    resume: Annotated[Optional[Path], typer.Option(
        help="Continue this run folder (after a kill or crash) from its last checkpoint, exactly; options not "
             "given are taken from the run; only --device, --data-dir and --compile may differ from it.",
        show_default=False)] = None,
    json_out: Json = False,
    expect: Expect = None,
    tracker: Tracker = None,
    tracker_uri: TrackerUri = None,
) -> None:
    """Train a char-level GPT (nanoGPT's CPU recipe) while its MLP neurons die and are reborn every --interval
    steps; record every event and its loss spike, neuron ages and lineage, and the held-out loss."""
    from phases import apoptosis as phase

    execute(phase.run, build_config(ctx, ApoptosisConfig), json_out=json_out, expect=expect, phase="apoptosis")

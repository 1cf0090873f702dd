"""nlab train-lora: LoRA fine-tuning of a causal LM, evaluated on held-out training problems as it goes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from nlab_cli.common import DataDir, Deterministic, Device, Expect, Json, Name, Out, Seed, execute
from nlab_cli.common import Tracker, TrackerUri
from nlab_cli.common import opt as _opt
from nlab_cli.options import build_config
from phases.gsm8k.config import DTYPES, PRESETS
from phases.lora.config import TrainLoraConfig

_C = TrainLoraConfig()
_MODEL, _DATA, _TRAIN, _EVAL = "Model and adapter", "Data", "Training", "Evaluation"


def train_lora(
    ctx: typer.Context,
    model: Annotated[str, _opt("Base model: hub id, local model folder or .gguf file (as eval-gsm8k).",
                               _MODEL)] = _C.model,
    r: Annotated[int, _opt("LoRA rank.", _MODEL)] = _C.r,
    alpha: Annotated[float, _opt("LoRA alpha (the update is scaled by alpha / r).", _MODEL)] = _C.alpha,
    lora_dropout: Annotated[float, _opt("Dropout on the LoRA input.", _MODEL)] = _C.lora_dropout,
    target_modules: Annotated[str, _opt("Comma-separated linear layers that get an adapter (default: the "
                                        "attention and MLP projections).", _MODEL)] = _C.target_modules,
    dtype: Annotated[Literal[DTYPES], _opt("auto (bf16 autocast where the CPU/GPU computes it natively), bfloat16 "
                                           "or float32.", _MODEL)] = _C.dtype,
    dataset: Annotated[str, _opt("Question/answer dataset (gsm8k, sst2-qa, scan-qa): its train split is trained on, "
                                 "its test split is --test-n's, its chat preset the default.", _DATA)] = _C.dataset,
    train_file: Annotated[Optional[Path], _opt("JSONL of {\"question\", \"answer\"} lines (answers end in "
                                               "'#### <final>') to train on instead of --dataset's train split.",
                                               _DATA, show_default=False)] = None,
    extra_file: Annotated[Optional[Path], _opt("JSONL of extra question/answer lines to mix in (e.g. sampled "
                                               "solutions from eval-gsm8k --export).", _DATA,
                                               show_default=False)] = None,
    extra_ratio: Annotated[float, _opt("Share of every step's examples drawn from --extra-file, in [0, 1).",
                                       _DATA)] = _C.extra_ratio,
    mix: Annotated[Optional[str], _opt("Staged curriculum as train:extra percentages per stage (stages split "
                                       "--max-steps evenly), e.g. 100:0,70:30.", _DATA, show_default=False)] = None,
    preset: Annotated[Optional[Literal[PRESETS]], _opt("Prompt format, as eval-gsm8k's presets; training and "
                                                       "evaluation use the same (default: the dataset's chat "
                                                       "preset: chat for gsm8k, qa-chat for sst2-qa and scan-qa).",
                                                       _DATA, show_default=False)] = None,
    max_length: Annotated[int, _opt("Longest example (prompt + answer tokens); longer ones are left out and "
                                    "counted.", _DATA)] = _C.max_length,
    val_n: Annotated[int, _opt("Validation problems carved from the training data (never the test split).",
                               _DATA)] = _C.val_n,
    split_seed: Annotated[int, _opt("Seed of the validation carve-out (kept fixed across --seed).",
                                    _DATA)] = _C.split_seed,
    max_steps: Annotated[int, _opt("Optimizer steps.", _TRAIN)] = _C.max_steps,
    batch_size: Annotated[int, _opt("Examples per forward pass.", _TRAIN)] = _C.batch_size,
    grad_accum: Annotated[int, _opt("Forward passes per optimizer step.", _TRAIN)] = _C.grad_accum,
    lr: Annotated[float, _opt("Peak learning rate (AdamW; linear warmup, cosine decay to --min-lr).",
                              _TRAIN)] = _C.lr,
    min_lr: Annotated[float, _opt("Learning rate at the end of the cosine decay.", _TRAIN)] = _C.min_lr,
    warmup: Annotated[int, _opt("Warmup steps.", _TRAIN)] = _C.warmup,
    weight_decay: Annotated[float, _opt("AdamW weight decay of the LoRA matrices.", _TRAIN)] = _C.weight_decay,
    grad_clip: Annotated[float, _opt("Clip the gradient norm to this (0: off).", _TRAIN)] = _C.grad_clip,
    group_by_length: Annotated[bool, _opt("Batch examples of similar length together (less padding).",
                                          _TRAIN)] = _C.group_by_length,
    log_every: Annotated[int, _opt("Training loss in history.jsonl every k steps.", _TRAIN)] = _C.log_every,
    eval_every: Annotated[int, _opt("Evaluate on the validation problems, and save the adapter, every k steps "
                                    "(and at step 0, the base model, and the last step).", _EVAL)] = _C.eval_every,
    eval_max_new_tokens: Annotated[Optional[int], _opt("Token limit of the evaluation's completions (default: the "
                                                       "preset's).", _EVAL, show_default=False)] = None,
    eval_batch_size: Annotated[int, _opt("Sequences decoded together in evaluations.", _EVAL)] = _C.eval_batch_size,
    test_n: Annotated[int, _opt("At the end, evaluate the adapter chosen on validation, and the base model, on "
                                "the first N test problems (0: no test).", _EVAL)] = _C.test_n,
    resume: Annotated[Optional[Path], _opt("Continue this run folder from its last evaluation, exactly; options "
                                           "not given are taken from the run; only --device and --data-dir may "
                                           "differ.", _TRAIN, show_default=False)] = None,
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
    """LoRA fine-tuning of a causal LM on question/answer data, evaluated every --eval-every steps on held-out
    training problems; the adapter chosen on validation is the one tested."""
    from phases.lora import phase

    config = build_config(ctx, TrainLoraConfig)
    execute(phase.run, config, json_out=json_out, expect=expect, phase="train-lora")

"""The train-lora loop, top to bottom: every --eval-every steps (and at steps 0 and --max-steps) evaluate on the
validation problems, save the adapter and the state for an exact resume; between evaluations, one AdamW step per
--batch-size x --grad-accum examples, the loss the mean over the step's answer tokens (as transformers' Trainer
normalises across accumulation), warmup + cosine, gradient clipping, bf16 autocast where supported."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from phases.core.runs import Run
from phases.core.training import (Schedule, build_optimizer, check_finite, evaluation_due, keep_last_good,
                                  restore_state, save_state, set_lr)
from phases.lora.adapter import LoraWeights, save_adapter
from phases.lora.data import Plan, micro_batches
from phases.lora.evaluate import autocast, evaluate, token_losses

CHECKPOINT = "state.pt"  # the last evaluation's training state (adapter, optimizer, RNG, step)
ADAPTERS = "adapters"  # one peft folder per evaluation: adapters/step-000050
VAL_PREDICTIONS = "val_predictions.jsonl"  # every evaluation's per-problem records, tagged with their step


def adapter_name(step: int) -> str:
    return f"step-{step:06d}"


@dataclass
class Validation:
    items: list  # eval-gsm8k items of the validation problems
    examples: list  # their gold solutions as training examples (for the loss and perplexity)


@dataclass
class TrainResult:
    train_seconds: float = 0.0
    tokens: int = 0  # prompt + answer tokens trained on (this process)
    padded: int = 0  # positions computed, padding included (this process)
    last_loss: float | None = None


def train(loaded, plan: Plan, val: Validation, c, spec, run_: Run, device, dtype: str,
          checkpoint: dict | None) -> TrainResult:
    model, pad_id = loaded.model, loaded.tokenizer.pad_token_id
    weights = LoraWeights(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(model.named_parameters(), "adamw", c.lr, c.weight_decay, betas=(0.9, 0.999))
    schedule = Schedule(c.lr, c.min_lr, c.warmup, c.max_steps)
    start = 0
    if checkpoint is not None:
        restore_state(checkpoint, weights, opt)
        start = checkpoint["step"]
    saved = [start if checkpoint is not None else None]
    val_log = run_.jsonl(VAL_PREDICTIONS)
    adapters = run_.checkpoint_dir / ADAPTERS
    result = TrainResult()
    model.train()
    with keep_last_good(run_, lambda: saved[0]):
        for step in range(start, c.max_steps + 1):
            stage = plan.stage_of(min(step, c.max_steps - 1)).name
            if evaluation_due(step, c.eval_every, c.max_steps) and not (checkpoint is not None and step == start):
                point, records = evaluate(loaded, spec, val.items, val.examples, pad_id, device, dtype,
                                          c.eval_batch_size, "val")
                run_.log({"step": step, "split": "val", "stage": stage, **point})
                for r in records:
                    val_log.write({"step": step, **r})
                save_adapter(model, adapters / adapter_name(step))
                save_state(run_.checkpoint_dir / CHECKPOINT, weights, opt, step)
                saved[0] = step
            if step == c.max_steps:
                break
            t0 = time.perf_counter()
            set_lr(opt, schedule.at(step))
            examples = plan.examples(step)
            n_answer = sum(len(e.ids) - e.n_prompt for e in examples)
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for batch in micro_batches(examples, c.batch_size):
                with autocast(device, dtype):
                    loss_sum, _ = token_losses(model, batch, pad_id, device)
                (loss_sum / n_answer).backward()  # the step's mean over answer tokens, whatever the split
                total += float(loss_sum.detach())
                result.padded += len(batch) * max(len(e.ids) for e in batch)
            value = total / n_answer
            check_finite(value, step)  # before the update: the last saved adapter stays the last good one
            if c.grad_clip:
                import torch

                torch.nn.utils.clip_grad_norm_(params, c.grad_clip)
            opt.step()
            result.train_seconds += time.perf_counter() - t0
            result.tokens += sum(len(e.ids) for e in examples)
            result.last_loss = value
            if (step + 1) % c.log_every == 0 or step + 1 == c.max_steps:
                run_.log({"step": step + 1, "split": "train", "stage": stage, "loss": value,
                          "lr": opt.param_groups[0]["lr"], "answer_tokens": n_answer,
                          "extra_examples": sum(e.source == "extra" for e in examples)})
    return result


def adapter_path(run_: Run, step: int) -> Path:
    return run_.checkpoint_dir / ADAPTERS / adapter_name(step)

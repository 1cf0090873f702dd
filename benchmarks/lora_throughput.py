"""LoRA fine-tuning throughput: `nlab train-lora`'s loop against the plain peft + `transformers.Trainer` loop a
user would otherwise write, on the same model (the shared SmolLM2-135M GGUF), the same GSM8K
training examples (formatted and tokenized once, by nlab, loss on the answer tokens only), the same LoRA settings,
optimizer (AdamW, warmup + cosine), batch size, steps, base weights stored in bf16 and bf16 autocast (where the
CPU has it; fp32 otherwise), back to back in one process.

    python benchmarks/lora_throughput.py                 # 40 steps, batch 4
    python benchmarks/lora_throughput.py --steps 100 --batch-size 8

Systems:
- `trainer`: Trainer with its default random sampler and the padding collator (labels padded with -100);
- `trainer-grouped`: the same with train_sampling_strategy="group_by_length" (Trainer's own length grouping);
- `nlab`: `nlab train-lora` itself (same defaults: the same examples, length-grouped steps).
Throughput is real (non-padding) tokens per second of training; the losses are the per-step training losses.
The curves cannot be equal step by step (each system draws its batches its own way), so they are compared as
distributions: the mean loss over the last half of the steps with a Welch 95% interval of the difference."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from shared_model import DEFAULT_MODEL  # the project on sys.path, ../shared/data as the data folder


def examples(args, tok):
    """The training examples both systems see: GSM8K train minus the validation carve-out, chat preset."""
    from phases.gsm8k.prompts import resolve_spec
    from phases.lora import data
    from phases.lora.config import TrainLoraConfig
    from phases.lora.phase import preset_of

    c = TrainLoraConfig(model=str(args.model), max_length=args.max_length)
    spec = resolve_spec(preset_of(c))
    problems = data.read_problems(c)
    shots = data.shots_for(spec, problems.train, len(problems.train), exclude_self=True)
    return data.encode_examples(tok, spec, problems.train, shots, "train", c.max_length)[0], c


def fresh_model(args, c, dtype: str):
    """The base in the dtype train-lora stores it in (bf16 where native), with a fresh LoRA adapter (fp32)."""
    import torch

    from phases.gsm8k.models import load_model
    from phases.lora.adapter import add_lora

    loaded = load_model(str(args.model), dtype, torch.device("cpu"))
    torch.manual_seed(0)
    loaded.model = add_lora(loaded.model, c.targets, c.r, c.alpha, c.lora_dropout)
    return loaded


def run_trainer(args, c, exs, tok, grouped: bool, bf16: bool) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    loaded = fresh_model(args, c, "bfloat16" if bf16 else "float32")
    rows = [{"input_ids": list(e.ids), "attention_mask": [1] * len(e.ids), "labels": e.labels} for e in exs]

    def collate(batch):
        import torch

        width = max(len(r["input_ids"]) for r in batch)
        out = {}
        for key, pad in (("input_ids", tok.pad_token_id), ("attention_mask", 0), ("labels", -100)):
            out[key] = torch.tensor([r[key] + [pad] * (width - len(r[key])) for r in batch])
        return out

    losses, tokens = [], [0]

    class Record(TrainerCallback):
        def on_log(self, _args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    class Counting(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            tokens[0] += int(inputs["attention_mask"].sum())
            return super().training_step(model, inputs, num_items_in_batch)

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
            learning_rate=c.lr, warmup_steps=c.warmup, lr_scheduler_type="cosine", weight_decay=c.weight_decay,
            max_grad_norm=c.grad_clip, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, bf16=bf16,
            seed=0, dataloader_num_workers=0, disable_tqdm=True,
            train_sampling_strategy="group_by_length" if grouped else "random")
        trainer = Counting(model=loaded.model, args=targs, train_dataset=rows, data_collator=collate,
                           callbacks=[Record()])
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "tokens": tokens[0], "losses": losses}


def run_nlab(args) -> dict:
    """`nlab train-lora` itself, in this process, with one tiny evaluation at each end (a 1-problem validation
    set, 1 new token): its training seconds exclude them, as Trainer's exclude its setup."""
    import json

    from typer.testing import CliRunner

    from nlab_cli.main import app

    with tempfile.TemporaryDirectory() as out:
        result = CliRunner().invoke(app, [
            "train-lora", "--model", str(args.model), "--max-steps", str(args.steps), "--batch-size",
            str(args.batch_size), "--max-length", str(args.max_length), "--eval-every", str(args.steps),
            "--val-n", "1", "--eval-max-new-tokens", "1", "--log-every", "1", "--out", f"{out}/run", "--json"])
        if result.exit_code:
            raise SystemExit(f"nlab train-lora failed: {result.stderr[-2000:]}")
        m = json.loads(result.stdout)
        hist = [r for r in _jsonl(Path(out) / "run" / "history.jsonl") if r.get("split") == "train"]
    return {"seconds": m["train_seconds"], "tokens": round(m["tokens_per_s"] * m["train_seconds"]),
            "losses": [r["loss"] for r in hist], "padding_share": m["padding_share"]}


def _jsonl(path):
    import json

    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--systems", default="trainer,trainer-grouped,nlab")
    args = p.parse_args()

    import numpy as np
    import torch

    from phases.core.device import set_threads
    from phases.gsm8k.models import cpu_has_bf16, load_model

    threads = set_threads()
    bf16 = cpu_has_bf16()
    tok = load_model(str(args.model), "float32", torch.device("cpu")).tokenizer
    exs, c = examples(args, tok)
    print(f"{len(exs)} GSM8K training examples (chat preset), {args.steps} steps x batch {args.batch_size}, "
          f"LoRA r={c.r} on {c.target_modules}, bf16 autocast: {bf16}, torch threads: {threads}")
    results = {}
    for name in args.systems.split(","):
        if name == "nlab":
            results[name] = run_nlab(args)
        else:
            results[name] = run_trainer(args, c, exs, tok, grouped=name == "trainer-grouped", bf16=bf16)
        r = results[name]
        r["tokens_per_s"] = r["tokens"] / r["seconds"]
        print(f"  {name:16s} {r['seconds']:7.1f} s  {r['tokens']:7d} tokens  {r['tokens_per_s']:7.1f} tokens/s  "
              f"mean loss (last half) {np.mean(r['losses'][len(r['losses']) // 2:]):.4f}", flush=True)
    if "nlab" in results:
        print("\nnlab train-lora against each Trainer loop (same run, same machine):")
        ours = results["nlab"]
        half = ours["losses"][len(ours["losses"]) // 2:]
        for name, r in results.items():
            if name == "nlab":
                continue
            theirs = r["losses"][len(r["losses"]) // 2:]
            diff = float(np.mean(half) - np.mean(theirs))
            se = float(np.sqrt(np.var(half, ddof=1) / len(half) + np.var(theirs, ddof=1) / len(theirs)))
            verdict = "within noise" if abs(diff) <= 1.96 * se else "beyond noise"
            print(f"  vs {name:16s} speed x{ours['tokens_per_s'] / r['tokens_per_s']:.2f}; loss over the last "
                  f"half {np.mean(half):.4f} vs {np.mean(theirs):.4f} (difference {diff:+.4f}, 95% CI "
                  f"[{diff - 1.96 * se:+.4f}, {diff + 1.96 * se:+.4f}]: {verdict})")


if __name__ == "__main__":
    main()

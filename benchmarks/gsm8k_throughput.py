"""GSM8K generation throughput: problems per minute on the first N test problems for several batch sizes, with
eval-gsm8k's early-leave decoding against plain `model.generate` on the same batches (same prompts, same
length-sorted balanced batches, same stop strings, greedy), and how often the two give the same completion.

    python benchmarks/gsm8k_throughput.py                       # SmolLM2-135M GGUF from ../shared/models
    python benchmarks/gsm8k_throughput.py --batch-sizes 8 --methods early-leave,generate,no-leave

The problems are sorted by prompt length (longest first), as eval-gsm8k orders a window. Methods:
- `generate`: transformers' model.generate on consecutive batches of that order (left padding, stop_strings);
- `no-leave`: eval-gsm8k's engine on the same fixed batches, finished rows kept until their batch is done;
- `early-leave`: eval-gsm8k's engine as the evaluation runs it: finished rows leave at once and the next prompts
  join, at most `batch` rows at a time.
Tokens counted are the tokens each row generated up to its own end (not the padding generate adds)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_MODEL = (Path(os.environ.get("NLAB_MODELS_DIR") or ROOT.parent / "shared" / "models")
                 / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf")
if not os.environ.get("NLAB_DATA_DIR") and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["NLAB_DATA_DIR"] = str(ROOT.parent / "shared" / "data")


def plain_generate(backend, batch, max_new_tokens):
    """model.generate on one left-padded batch: every row runs until the last one stops."""
    import torch

    pad = backend.tok.pad_token_id
    width = max(len(it.prompt_ids) for it in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, it in enumerate(batch):
        ids[i, width - len(it.prompt_ids):] = torch.tensor(it.prompt_ids)
        mask[i, width - len(it.prompt_ids):] = 1
    with torch.inference_mode():
        out = backend.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                     do_sample=False, stop_strings=list(backend.spec.stop), tokenizer=backend.tok,
                                     eos_token_id=sorted(backend.eos_ids), pad_token_id=pad)
    texts, tokens = [], 0
    for row in out[:, width:].tolist():
        while row and row[-1] == pad and pad not in backend.eos_ids:
            row.pop()
        if row and row[-1] in backend.eos_ids:  # generate pads finished rows with eos: keep the first one only
            while len(row) > 1 and row[-2] in backend.eos_ids:
                row.pop()
        finish = "eos" if row and row[-1] in backend.eos_ids else "stop"
        texts.append(backend._completion(row, finish).text)
        tokens += len(row)
    return texts, tokens


def engine_generate(backend, prompts, max_new_tokens, batch_size, early_leave):
    from phases.gsm8k.engine import generate

    out = generate(backend.model, prompts, max_new_tokens=max_new_tokens, eos_ids=backend.eos_ids,
                   stopped=backend._stopped, max_rows=batch_size, early_leave=early_leave)
    return [backend._completion(g.tokens, g.finish).text for g in out], sum(len(g.tokens) for g in out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--preset", default="lm-eval")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch-sizes", default="1,8,16")
    ap.add_argument("--methods", default="early-leave,generate")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: the preset's (256)")
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()

    from phases.core.device import set_threads
    from phases.gsm8k.config import EvalConfig
    from phases.gsm8k.hf_backend import TransformersBackend
    from phases.gsm8k.models import load_model
    from phases.gsm8k.phase import _items
    from phases.gsm8k.prompts import resolve_spec

    import torch

    threads = set_threads()
    spec = resolve_spec(args.preset, max_new_tokens=args.max_new_tokens)
    items = _items(EvalConfig(model=args.model, preset=args.preset, n=args.n), spec)
    t0 = time.perf_counter()
    loaded = load_model(args.model, args.dtype, torch.device("cpu"))
    print(f"model {Path(args.model).name} ({loaded.dtype}) loaded in {time.perf_counter() - t0:.1f} s; "
          f"{threads} threads; preset {spec.name}; {len(items)} problems; max_new_tokens {spec.max_new_tokens}",
          flush=True)
    print(f"{'batch':>5} {'method':>12} {'seconds':>8} {'problems/min':>12} {'tokens/s':>8} {'speedup':>7} "
          f"{'same text':>9}", flush=True)
    backend = TransformersBackend(loaded, spec, 1, 0, 0.0, 0, False)
    backend.prepare(items)
    order = sorted(items, key=lambda it: (-len(it.prompt_ids), it.id))  # as eval-gsm8k orders a window
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        results: dict[str, tuple[float, list[str], int]] = {}
        for method in args.methods.split(","):
            start = time.perf_counter()
            if method == "generate":
                texts, tokens = [], 0
                for k in range(0, len(order), bs):
                    t, n = plain_generate(backend, order[k:k + bs], spec.max_new_tokens)
                    texts, tokens = texts + t, tokens + n
            else:
                texts, tokens = engine_generate(backend, [it.prompt_ids for it in order], spec.max_new_tokens, bs,
                                                method == "early-leave")
            results[method] = (time.perf_counter() - start, texts, tokens)
        base = results.get("generate") or next(iter(results.values()))
        for method, (seconds, texts, tokens) in results.items():
            same = sum(a == b for a, b in zip(texts, base[1])) / len(texts)
            print(f"{bs:>5} {method:>12} {seconds:8.1f} {60 * len(items) / seconds:12.2f} {tokens / seconds:8.1f} "
                  f"{base[0] / seconds:7.2f} {same:9.0%}", flush=True)


if __name__ == "__main__":
    main()

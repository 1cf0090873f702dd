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
Tokens counted are the tokens each row generated up to its own end (not the padding generate adds).

For `early-leave` it also prints how far the engine is from the machine's limit: the FLOP/s its prefill and its
decode forwards achieve (useful work only: 2 x parameters per token for the linear layers, the causal attention
over each row's own context, the output layer where logits are computed; padding not counted), beside the rate of
a 1024x576 by 576x1536 matmul in the model's dtype measured on the spot with the same threads, and beside the
decode figure the rate of the same matmul with as many rows as the batch (plain, and on oneDNN-prepacked weights
where the engine's decode steps use them)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from shared_model import DEFAULT_MODEL  # the project on sys.path, ../shared/data as the data folder


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
    """(texts, generated tokens, each row's token ids)."""
    from phases.gsm8k.engine import generate

    out = generate(backend.model, prompts, max_new_tokens=max_new_tokens, eos_ids=backend.eos_ids,
                   stopped=backend._stopped, max_rows=batch_size, early_leave=early_leave)
    return ([backend._completion(g.tokens, g.finish).text for g in out], sum(len(g.tokens) for g in out),
            [g.tokens for g in out])


def matmul_peak(dtype, rows: int = 1024, packed: bool = False, reps: int = 20) -> float:
    """GFLOP/s of a matmul of `rows` tokens x 576 by 576 x 1536 (SmolLM2-135M's MLP; 1024 rows: prefill-shaped, a
    few: a decode step's), median of reps; `packed`: through oneDNN on a prepacked weight, as decode steps run on a
    CPU in float32 (phases/gsm8k/packed.py). Each rep cycles through 32 weights (113 MB in float32), so a decode-shaped
    product streams its weight from memory as in the model rather than from cache."""
    import statistics

    import torch

    from phases.gsm8k import packed as packed_ops

    a = torch.randn(rows, 576, dtype=dtype)
    weights = [torch.randn(1536, 576, dtype=dtype) for _ in range(32 if rows < 64 else 1)]
    if packed:
        weights = [packed_ops.pack(w) for w in weights]
        product = lambda w: packed_ops.linear(a, w)  # noqa: E731
    else:
        product = lambda w: torch.nn.functional.linear(a, w)  # noqa: E731
    for w in weights[:3]:
        product(w)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for w in weights:
            product(w)
        times.append((time.perf_counter() - t0) / len(weights))
    return 2 * rows * 576 * 1536 / statistics.median(times) / 1e9


def flops(config, prompts, generated) -> tuple[float, float]:
    """(prefill, decode) floating-point operations of the useful work: linear layers 2 x params per token, causal
    attention 2 x 2 x context x hidden per token and layer, the output layer for the tokens whose logits are kept
    (the last prompt token, every decoded token)."""
    c = config
    h, n, inter, vocab = c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size
    kv = c.num_key_value_heads * (getattr(c, "head_dim", None) or h // c.num_attention_heads)
    linear = 2 * n * (2 * h * h + 2 * h * kv + 3 * h * inter)
    head = 2 * h * vocab
    prefill = decode = 0.0
    for p, g in zip(prompts, generated):
        L = len(p)
        prefill += linear * L + 2 * n * h * L * L + head  # attention: sum over positions of 4 h t ~ 2 h L^2
        for t in range(1, len(g)):  # the first token comes from the prefill's logits
            decode += linear + head + 4 * n * h * (L + t)
    return prefill, decode


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
    items, _ = _items(EvalConfig(model=args.model, preset=args.preset, n=args.n), spec)
    t0 = time.perf_counter()
    loaded = load_model(args.model, args.dtype, torch.device("cpu"))
    print(f"model {Path(args.model).name} ({loaded.dtype}) loaded in {time.perf_counter() - t0:.1f} s; "
          f"{threads} threads; preset {spec.name}; {len(items)} problems; max_new_tokens {spec.max_new_tokens}",
          flush=True)
    backend = TransformersBackend(loaded, spec, 1, 0, 0.0, 0, False)
    backend.prepare(items)
    order = sorted(items, key=lambda it: (-len(it.prompt_ids), it.id))  # as eval-gsm8k orders a window
    from gsm8k_profile import Timers, instrument

    peak = matmul_peak(loaded.model.dtype)
    print(f"matmul peak here ({loaded.dtype}, {threads} threads): {peak:.0f} GFLOP/s", flush=True)
    print(f"{'batch':>5} {'method':>12} {'seconds':>8} {'problems/min':>12} {'tokens/s':>8} {'speedup':>7} "
          f"{'same text':>9}", flush=True)
    limits = []
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        results: dict[str, tuple[float, list[str], int]] = {}
        for method in args.methods.split(","):
            timers = Timers()
            undo = instrument(backend, timers) if method == "early-leave" else (lambda: None)
            start = time.perf_counter()
            if method == "generate":
                texts, tokens = [], 0
                for k in range(0, len(order), bs):
                    t, n = plain_generate(backend, order[k:k + bs], spec.max_new_tokens)
                    texts, tokens = texts + t, tokens + n
            else:
                texts, tokens, rows = engine_generate(backend, [it.prompt_ids for it in order],
                                                      spec.max_new_tokens, bs, method == "early-leave")
            results[method] = (time.perf_counter() - start, texts, tokens)
            undo()
            if method == "early-leave":
                limits.append((bs, timers, rows, results[method][0]))
        base = results.get("generate") or next(iter(results.values()))
        for method, (seconds, texts, tokens) in results.items():
            same = sum(a == b for a, b in zip(texts, base[1])) / len(texts)
            print(f"{bs:>5} {method:>12} {seconds:8.1f} {60 * len(items) / seconds:12.2f} {tokens / seconds:8.1f} "
                  f"{base[0] / seconds:7.2f} {same:9.0%}", flush=True)
    prompts = [it.prompt_ids for it in order]
    from phases.gsm8k.packed import available

    packs = loaded.model.dtype == torch.float32 and available()  # as the engine decides (packed.py)
    for bs, timers, rows, wall in limits:
        pre, dec = flops(loaded.model.config, prompts, rows)
        t_pre, t_dec = timers.total["prefill forward"], timers.total["decode forward"]
        small = {k: matmul_peak(loaded.model.dtype, bs, k) for k in ((False, True) if packs else (False,))}
        rates = ", ".join(f"{'oneDNN prepacked' if k else 'plain'} {v:.0f}" for k, v in small.items())
        print(f"batch {bs}, early-leave: prefill {pre / 1e12:.2f} TFLOP in {t_pre:.1f} s = {pre / t_pre / 1e9:.0f} "
              f"GFLOP/s ({pre / t_pre / 1e9 / peak:.0%} of the matmul peak); decode {dec / 1e12:.2f} TFLOP in "
              f"{t_dec:.1f} s = {dec / t_dec / 1e9:.0f} GFLOP/s ({dec / t_dec / 1e9 / peak:.0%}; a {bs}-row matmul "
              f"here: {rates} GFLOP/s); {wall - t_pre - t_dec:.1f} s of the {wall:.1f} s outside the forwards",
              flush=True)


if __name__ == "__main__":
    main()

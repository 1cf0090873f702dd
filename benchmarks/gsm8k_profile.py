"""Where eval-gsm8k's decoding time goes: the engine run on the first N GSM8K test problems (lm-eval preset by
default), its wall time split into the parts the engine is made of, then (with --ops) torch.profiler's split of
the model's forward passes by operator class.

    python benchmarks/gsm8k_profile.py                     # 64 problems, batch 16, the default dtype
    python benchmarks/gsm8k_profile.py --n 16 --ops        # and the operator split of prefill and decode
    python benchmarks/gsm8k_profile.py --kernels plain     # decode matmuls on the plain weights (before packed.py)

Parts (wall seconds, measured with perf_counter around each; "other" is the rest: Python between the calls):
- prefill forward: the model's forward over a prompt (every call with more than one token);
- decode forward: the model's forward over one token per live row, the KV cache's own appends included;
- cache append: inside decode forward, the KV cache layers' `update` (a copy of the whole cache per step when the
  cache grows by concatenation);
- cache joins / trims: a prefilled prompt's cache joining the batch; finished rows leaving and padding trimmed;
- sampling: picking the next tokens from the logits (argmax, or multinomial per sampled row);
- stop checks: whether a row's text completes a stop string.
--ops groups the profiler's self CPU time of the prefill and of the decode forward passes into matmul (mm, addmm,
bmm, linear, oneDNN's packed linear), attention (scaled dot-product attention kernels), copies and joins (cat,
copy_, index ops, contiguous) and the rest (elementwise, norms, activations)."""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from shared_model import DEFAULT_MODEL  # the project on sys.path, ../shared/data as the data folder

OP_CLASSES = (
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::_mkl_linear",
                "mkldnn", "aten::baddbmm")),
    ("attention", ("scaled_dot_product", "flash_attention", "_efficient_attention")),
    ("copies and joins", ("aten::cat", "aten::copy_", "aten::index", "aten::contiguous", "aten::clone",
                          "aten::slice_scatter", "aten::index_put", "aten::index_copy", "aten::narrow_copy")),
)


class Timers:
    """Wall seconds per part; nested parts are subtracted from their parent's own time."""

    def __init__(self):
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, fn, when=None):
        def timed(*args, **kwargs):
            if when is not None and not when(*args, **kwargs):
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total[name] += time.perf_counter() - t0
                self.calls[name] += 1
        return timed


def instrument(backend, timers: Timers):
    """Wrap the engine's parts and the model's forward; returns a function that undoes it."""
    import transformers.cache_utils as cu

    from phases.gsm8k import engine

    saved = []

    def patch(obj, attr, new):
        saved.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, new)

    model = backend.model
    forward = model.forward

    def is_prefill(*args, **kwargs):
        ids = kwargs.get("input_ids")
        return ids is not None and ids.shape[1] > 1

    patch(model, "forward", timers.wrap("prefill forward", forward, is_prefill))
    for batch_cls in (engine._SlotBatch, engine._ConcatBatch):
        patch(batch_cls, "step", timers.wrap("decode forward", batch_cls.step))
        patch(batch_cls, "join", timers.wrap("cache joins", batch_cls.join))
        patch(batch_cls, "keep", timers.wrap("cache trims and leaves", batch_cls.keep))
    patch(engine, "_next_tokens", timers.wrap("sampling", engine._next_tokens))
    for cls in (cu.DynamicLayer, engine._SlotLayer):
        patch(cls, "update", timers.wrap("cache append", cls.update,
                                         lambda self, k, *a, **kw: k.shape[-2] == 1))
    backend._stopped = timers.wrap("stop checks", backend._stopped)

    def undo():
        for obj, attr, old in reversed(saved):
            setattr(obj, attr, old)
        backend.__dict__.pop("_stopped", None)
    return undo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--preset", default="lm-eval")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--cache", choices=("slots", "concat"), default="slots",
                    help="the engine's preallocated cache (slots) or a growing concatenated one (concat, the engine "
                         "before it; what every model with sliding-window layers still uses)")
    ap.add_argument("--kernels", choices=("packed", "plain"), default="packed",
                    help="decode steps' matmuls on oneDNN-prepacked weights (packed, the engine's default on a CPU) or "
                         "on the plain weights through MKL (plain, the engine before it)")
    ap.add_argument("--ops", action="store_true", help="also split the forward passes by operator (torch.profiler)")
    args = ap.parse_args()

    import torch

    from phases.core.device import set_threads
    from phases.gsm8k.config import EvalConfig
    from phases.gsm8k.engine import generate
    from phases.gsm8k.hf_backend import TransformersBackend
    from phases.gsm8k.models import load_model
    from phases.gsm8k.phase import _items
    from phases.gsm8k.prompts import resolve_spec

    threads = set_threads()
    spec = resolve_spec(args.preset, max_new_tokens=args.max_new_tokens)
    items, _ = _items(EvalConfig(model=args.model, preset=args.preset, n=args.n), spec)
    loaded = load_model(args.model, args.dtype, torch.device("cpu"))
    backend = TransformersBackend(loaded, spec, args.batch_size, 0, 0.0, 0, False)
    backend.prepare(items)
    order = sorted(items, key=lambda it: (-len(it.prompt_ids), it.id))
    prompts = [it.prompt_ids for it in order]

    def run():
        return generate(backend.model, prompts, max_new_tokens=spec.max_new_tokens, eos_ids=backend.eos_ids,
                        stopped=backend._stopped, max_rows=args.batch_size, packed=args.kernels == "packed")

    timers = Timers()
    undo = instrument(backend, timers)
    if args.cache == "concat":
        from phases.gsm8k import engine

        engine._SlotBatch = lambda model, slots, capacity: engine._ConcatBatch(model)
    t0 = time.perf_counter()
    out = run()
    wall = time.perf_counter() - t0
    undo()
    prompt_tokens = sum(map(len, prompts))
    new_tokens = sum(len(g.tokens) for g in out)
    print(f"{len(items)} problems, {loaded.dtype}, batch {args.batch_size}, {threads} threads, {args.cache} cache, "
          f"{args.kernels} decode matmuls: "
          f"{wall:.1f} s; "
          f"{prompt_tokens} prompt tokens, {new_tokens} generated")
    own = dict(timers.total)
    own["decode forward"] -= own.get("cache append", 0.0)  # the appends happen inside the decode forwards
    parts = ["prefill forward", "decode forward", "cache append", "cache joins", "cache trims and leaves",
             "sampling", "stop checks"]
    print(f"{'part':<24} {'seconds':>8} {'share':>6} {'calls':>7}")
    for p in parts:
        print(f"{p:<24} {own.get(p, 0.0):8.2f} {own.get(p, 0.0) / wall:6.1%} {timers.calls.get(p, 0):7d}")
    other = wall - sum(own.get(p, 0.0) for p in parts)
    print(f"{'other (Python)':<24} {other:8.2f} {other / wall:6.1%}")

    if args.ops:
        from torch.autograd.profiler import record_function
        from torch.profiler import ProfilerActivity, profile

        forward = backend.model.forward

        def labelled(*a, **kw):  # each forward inside a "prefill" or "decode" range, to split the ops by stage
            with record_function("prefill" if kw["input_ids"].shape[1] > 1 else "decode"):
                return forward(*a, **kw)

        backend.model.forward = labelled
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        backend.model.forward = forward
        totals: dict[tuple[str, str], float] = defaultdict(float)
        for ev in prof.events():
            stage = ev.cpu_parent
            while stage is not None and stage.name not in ("prefill", "decode"):
                stage = stage.cpu_parent
            if stage is None or ev.name in ("prefill", "decode"):
                continue
            cls = next((c for c, keys in OP_CLASSES if any(k in ev.name for k in keys)), "other ops")
            totals[stage.name, cls] += ev.self_cpu_time_total / 1e6
        print("\nprofiler, self CPU seconds of the forwards by operator class (profiler overhead included):")
        print(f"{'class':<24} {'prefill':>8} {'share':>6} {'decode':>8} {'share':>6}")
        stage_total = {st: sum(v for (s_, _), v in totals.items() if s_ == st) or 1.0 for st in ("prefill", "decode")}
        for cls in [c for c, _ in OP_CLASSES] + ["other ops"]:
            print(f"{cls:<24}" + "".join(f" {totals[st, cls]:8.2f} {totals[st, cls] / stage_total[st]:6.1%}"
                                         for st in ("prefill", "decode")))


if __name__ == "__main__":
    main()

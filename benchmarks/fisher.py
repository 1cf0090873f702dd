"""Per-sample empirical Fisher (phases/ewc/fisher.py): torch.func (`vmap` of `grad`, in chunks) against a Python
loop with one backward pass per example, on the models `nlab ewc` uses: the digits MLP (64-256-256-10, real
digits) and the scan GPT (2 layers, width 64, real SCAN sequences, loss on the actions only). Prints the median
time of each, the speed-up, and the largest relative difference between the two Fisher diagonals.

Run: python benchmarks/fisher.py [--samples 512] [--gpt-samples 128] [--repeats 3] [--threads N]"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def median_time(fn, repeats: int) -> tuple[float, dict]:
    out = fn()  # warm-up (and the result to compare)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def max_rel_diff(a: dict, b: dict) -> float:
    return max(float((a[n] - b[n]).abs().max() / b[n].abs().max().clamp_min(1e-30)) for n in a)


def bench(label: str, model, x, y, loss_fn, repeats: int) -> None:
    from phases.ewc.fisher import empirical_fisher, loop_fisher

    t_vec, f_vec = median_time(lambda: empirical_fisher(model, x, y, 0, loss_fn), repeats)
    t_loop, f_loop = median_time(lambda: loop_fisher(model, x, y, 0, loss_fn), repeats)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{label}: {len(x)} examples, {n_params:,} parameters | torch.func {t_vec * 1e3:8.1f} ms | loop "
          f"{t_loop * 1e3:8.1f} ms | speed-up {t_loop / t_vec:5.2f}x | max relative difference "
          f"{max_rel_diff(f_vec, f_loop):.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--gpt-samples", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from phases.ewc.config import EwcConfig
    from phases.ewc.scenarios import build

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of {args.repeats}")
    torch.manual_seed(0)
    digits = build(EwcConfig(scenario="permuted-digits", tasks_count=2))
    x, y = digits.tasks[0].train
    bench("digits MLP", digits.build_model(), x[:args.samples], y[:args.samples], digits.loss_fn, args.repeats)
    scan = build(EwcConfig(scenario="scan", train_limit=args.gpt_samples))
    x, y = scan.tasks[0].train
    bench("scan GPT  ", scan.build_model(), x, y, scan.loss_fn, args.repeats)


if __name__ == "__main__":
    main()

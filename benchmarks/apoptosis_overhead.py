"""Time per training step of `nlab apoptosis` with each strategy, over the baseline (`none`).

Every strategy trains the default recipe's model (4 layers, width 128, block 64, batch 12) on the same tiny
Shakespeare batches. The strategies take turns step by step (or in blocks of --block steps), in a rotating order,
so that a change in the machine's load falls on all of them alike. Two costs make the bookkeeping:
- tracking: the fitness hooks, paid on every step (median step time over none's);
- events: the time of an event (the surgery plus the two loss measurements around it), spread over the interval
  between events: --interval here, and the default interval of `nlab apoptosis`.
Goal: tracking + events <= 10% per step.

Run: python benchmarks/apoptosis_overhead.py [--steps 300] [--interval 100] [--block 1]"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from phases.apoptosis.config import STRATEGIES, ApoptosisConfig  # noqa: E402
from phases.apoptosis.train import Learner  # noqa: E402
from phases.core import charlm, data  # noqa: E402
from phases.core.device import set_threads  # noqa: E402
from phases.core.training import Schedule  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="training steps per strategy")
    ap.add_argument("--interval", type=int, default=100, help="steps between events")
    ap.add_argument("--block", type=int, default=1, help="steps a strategy runs before the next takes its turn")
    args = ap.parse_args()
    threads = set_threads()
    cpu = torch.device("cpu")
    corpus = data.load("tinyshakespeare", os.environ.get("NLAB_DATA_DIR"))
    train = charlm.token_tensor(corpus.train_ids())
    base = ApoptosisConfig(interval=args.interval, device="cpu")
    learners = {s: Learner(replace(base, strategy=s), corpus.vocab.size, cpu) for s in STRATEGIES}
    batches = {s: torch.Generator().manual_seed(0) for s in STRATEGIES}
    step_ms = {s: [] for s in STRATEGIES}
    event_ms = {s: [] for s in STRATEGIES}
    last = {}
    print(f"apoptosis overhead: {args.steps} steps per strategy in turns of {args.block}, events every "
          f"{args.interval}; default recipe model; {threads} torch threads")
    for turn in range(args.steps // args.block):
        order = STRATEGIES[turn % len(STRATEGIES):] + STRATEGIES[:turn % len(STRATEGIES)]
        for s in order:
            learner = learners[s]
            for step in range(turn * args.block, (turn + 1) * args.block):
                if step and step % args.interval == 0 and learner.turnover is not None:
                    event_ms[s].append(learner.event(step, *last[s])["time_ms"])
                last[s] = charlm.get_batch(train, base.block_size, base.batch_size, cpu, batches[s])
                lr = Schedule(base.lr, base.min_lr, base.warmup_iters, base.max_iters).at(step)
                t0 = time.perf_counter()
                learner.step(*last[s], lr, step)
                step_ms[s].append(1000 * (time.perf_counter() - t0))
    ref = statistics.median(step_ms["none"])
    print(f"none: median step {ref:.2f} ms (mean {statistics.fmean(step_ms['none']):.2f})")
    default = ApoptosisConfig().interval
    print(f"{'strategy':<11} {'median ms':>9} {'tracking':>9} {'ms/event':>9} "
          f"{f'events @{args.interval}':>12} {f'total @{args.interval}':>11} "
          f"{f'events @{default}':>12} {f'total @{default}':>11}")
    for s in STRATEGIES[1:]:
        med = statistics.median(step_ms[s])
        tracking = med / ref - 1
        per_event = statistics.fmean(event_ms[s]) if event_ms[s] else 0.0
        here, at_default = per_event / (args.interval * ref), per_event / (default * ref)
        print(f"{s:<11} {med:>9.2f} {tracking:>+9.1%} {per_event:>9.1f} {here:>+12.2%} {tracking + here:>+11.1%} "
              f"{at_default:>+12.2%} {tracking + at_default:>+11.1%}")
    print("goal: tracking + events <= +10% per step. growth's steps also cost more because its model is bigger "
          "(wider MLPs), which is not bookkeeping")


if __name__ == "__main__":
    main()

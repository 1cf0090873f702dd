"""How noisy is nanoGPT's loss estimate? A finished `nlab apoptosis` run's final model, evaluated the way
nanoGPT's `estimate_loss()` does it (`--eval-iters` random windows of `--batch-size` x `--block-size` characters
from the held-out split, new windows at every call), many times over, next to the exact loss over the whole
held-out split that nlab reports as `val_loss`.

The spread of these draws is the noise of one number such as nanoGPT's "loss of 1.88" on top of the
seed-to-seed spread of training itself.

Run: python benchmarks/nanogpt_estimate_noise.py RUN_DIR [--draws 200]"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--draws", type=int, default=200, help="independent nanoGPT-style estimates")
    args = ap.parse_args()

    import torch

    from phases.apoptosis.config import ApoptosisConfig
    from phases.apoptosis.train import CHECKPOINT, build_model
    from phases.core import charlm, data
    from phases.core.checkpoint import load_checkpoint

    run_dir = Path(args.run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ckpt = load_checkpoint(Path(manifest["checkpoint_dir"]) / CHECKPOINT)
    names = {f.name for f in fields(ApoptosisConfig)}
    c = ApoptosisConfig(**{k: v for k, v in ckpt["config"].items() if k in names})
    corpus = data.load(c.dataset, c.data_dir)
    val = charlm.token_tensor(corpus.val_ids())
    cpu = torch.device("cpu")
    model = build_model(c, corpus.vocab.size, cpu, ckpt["mlp_widths"])
    model.load_state_dict(ckpt["model"])
    model.eval()

    gen = torch.Generator().manual_seed(0)
    draws = []
    with torch.no_grad():
        for _ in range(args.draws):
            losses = [model(*charlm.get_batch(val, c.block_size, c.batch_size, cpu, gen))[1].item()
                      for _ in range(c.eval_iters)]
            draws.append(statistics.fmean(losses))
    mean, sd = statistics.fmean(draws), statistics.stdev(draws)
    q = sorted(draws)
    print(f"run {run_dir} (step {ckpt['step']}, seed {c.seed})")
    print(f"exact held-out loss (nlab val_loss): {metrics['val_loss']:.4f} +/- {metrics['val_loss_se']:.4f} s.e. "
          f"over {metrics['val_tokens']:,} characters")
    print(f"nanoGPT-style estimate ({c.eval_iters} random batches of {c.batch_size} x {c.block_size}, "
          f"{c.eval_iters * c.batch_size * c.block_size:,} characters), {args.draws} draws: mean {mean:.4f}, "
          f"s.d. {sd:.4f}, 2.5-97.5% {q[int(0.025 * len(q))]:.4f} to {q[int(0.975 * len(q)) - 1]:.4f}")
    print(f"the run's own estimate (the same seeded batches at every evaluation): {metrics['val_loss_estimate']:.4f}")


if __name__ == "__main__":
    main()

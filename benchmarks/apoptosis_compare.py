"""The comparison table of finished `nlab apoptosis` runs (same seed and recipe): final held-out loss, its
difference from the baseline with a paired bootstrap interval over the held-out blocks, and the spike measures.

The interval resamples the held-out text only: it says whether two trained models differ on this text, not
whether the strategies would differ over training seeds (that needs a seed sweep). All runs of one seed train on
the same batches, so spike factors at the same step are paired: "excess" is the mean difference from the `none`
run's factors at the same steps (where it did nothing), which takes out the noise of the batches themselves.

Run: python benchmarks/apoptosis_compare.py RUN_DIR [RUN_DIR ...]   (the `none` run is the reference)"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phases.core.stats import beyond_noise, paired_bootstrap_diff  # noqa: E402

RATE = {"standard": "prune_rate", "functional": "prune_rate", "crossover": "prune_rate",
        "hybrid": "turnover_rate", "growth": "turnover_rate"}


def load(run_dir: str) -> dict:
    d = Path(run_dir)
    m = json.loads((d / "metrics.json").read_text())
    c = json.loads((d / "config.json").read_text())
    m["blocks"] = json.loads((d / "val_block_losses.json").read_text())
    m["label"] = m["strategy"] + (f" {c[RATE[m['strategy']]]:g}" if m["strategy"] in RATE else "") + (
        f" +{c['preservation_steps']} fit" if c["preservation_steps"] else "")
    steps = ([e["step"] for e in m["events"]] if m["events"] else
             list(range(c["interval"], c["max_iters"], c["interval"])))
    m["spikes_at"] = dict(zip(steps, m["spike_factors"]))
    return m


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(run_dirs: list[str]) -> None:
    runs = [load(d) for d in run_dirs]
    base = next((r for r in runs if r["strategy"] == "none"), None)
    if base is None:
        sys.exit("pass the run folder of a --strategy none run too: it is the reference")
    print(f"held-out: {base['val_tokens']:,} tokens in {base['val_blocks']} blocks of {base['dataset']}. spike factor ="
          f" peak training loss over the window after an event / mean over the window before; for none at the same"
          f" steps, nothing done. swap ratio = loss on the latest batch just after / just before the surgery")
    print(f"{'strategy':<24} {'val loss':>8} {'s.e.':>6} {'vs none [95% CI]':>28} {'beyond':>6} {'spike':>6} "
          f"{'max':>6} {'excess':>7} {'swap ratio':>10} {'events':>6} {'killed':>6} {'born':>5} {'params':>7} "
          f"{'wall s':>6}")
    for r in runs:
        delta = noise = excess = "-"
        if r is not base:
            d, lo, hi = paired_bootstrap_diff(r["blocks"], base["blocks"])
            delta, noise = f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]", "yes" if beyond_noise(lo, hi) else "no"
            paired = [f - base["spikes_at"][s] for s, f in r["spikes_at"].items() if s in base["spikes_at"]]
            excess = f"{statistics.fmean(paired):+.4f}" if paired else "-"
        print(f"{r['label']:<24} {r['val_loss']:>8.4f} {r['val_loss_se']:>6.4f} {delta:>28} {noise:>6} "
              f"{fmt(r['mean_spike_factor'], '.4f'):>6} {fmt(r['max_spike_factor'], '.4f'):>6} {excess:>7} "
              f"{fmt(r['mean_swap_loss_ratio'], '.4f'):>10} {r['n_events']:>6} {r['neurons_killed']:>6} "
              f"{r['neurons_born']:>5} {r['params_end']:>7} {r['wall_time_s']:>6.1f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])

"""The comparison table of finished `nlab apoptosis` runs (same seed and recipe): final held-out loss, its
difference from the baseline with a paired bootstrap interval over the held-out blocks, and the spike measures.

The interval resamples the held-out text only: it says whether two trained models differ on this text, not
whether the strategies would differ over training seeds (that needs a seed sweep).

Run: python benchmarks/apoptosis_compare.py RUN_DIR [RUN_DIR ...]   (the `none` run is the reference)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phases.core.stats import beyond_noise, paired_bootstrap_diff  # noqa: E402


def load(run_dir: str) -> dict:
    d = Path(run_dir)
    m = json.loads((d / "metrics.json").read_text())
    m["blocks"] = json.loads((d / "val_block_losses.json").read_text())
    steps = json.loads((d / "config.json").read_text())["preservation_steps"]
    m["label"] = m["strategy"] + (f" (preservation {steps})" if steps else "")
    return m


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(run_dirs: list[str]) -> None:
    runs = [load(d) for d in run_dirs]
    base = next((r for r in runs if r["strategy"] == "none"), None)
    if base is None:
        sys.exit("pass the run folder of a --strategy none run too: it is the reference")
    print(f"held-out: {base['val_tokens']:,} tokens in {base['val_blocks']} blocks of {base['dataset']}; "
          f"spike factor = peak training loss over the window after an event / mean over the window before "
          f"(for none: at the same steps, nothing done)")
    print(f"{'strategy':<28} {'val loss':>8} {'s.e.':>6} {'vs none [95% CI]':>28} {'beyond noise':>12} "
          f"{'mean spike':>10} {'max spike':>9} {'swap loss ratio':>15} {'events':>6} {'killed':>6} {'born':>5} "
          f"{'params':>8} {'wall s':>7}")
    for r in runs:
        delta = noise = "-"
        if r is not base:
            d, lo, hi = paired_bootstrap_diff(r["blocks"], base["blocks"])
            delta, noise = f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]", "yes" if beyond_noise(lo, hi) else "no"
        print(f"{r['label']:<28} {r['val_loss']:>8.4f} {r['val_loss_se']:>6.4f} {delta:>28} {noise:>12} "
              f"{fmt(r['mean_spike_factor'], '.4f'):>10} {fmt(r['max_spike_factor'], '.4f'):>9} "
              f"{fmt(r['mean_swap_loss_ratio'], '.5f'):>15} {r['n_events']:>6} {r['neurons_killed']:>6} {r['neurons_born']:>5} "
              f"{r['params_end']:>8} {r['wall_time_s']:>7.1f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])

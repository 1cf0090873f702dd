"""`nlab runs list DIR --json` over 1,000 run folders: the median wall time of 3 runs of the installed command
(goal: under 1 s). The folders are synthetic but shaped like train-moe's (manifest, config, metrics with an
interval), a tenth of them left `running` without a lock, as a kill -9 leaves them.

Run: python benchmarks/runs_index.py [--runs 1000]"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPEATS = 3


def write_runs(root: Path, n: int) -> None:
    for i in range(n):
        run = root / "train-moe" / f"20261201-{i:06d}"
        run.mkdir(parents=True)
        status = "running" if i % 10 == 0 else "completed"
        start = f"2026-12-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}+00:00"
        (run / "manifest.json").write_text(json.dumps({
            "phase": "train-moe", "run_id": run.name, "checkpoint_dir": None, "start_time": start,
            "end_time": None if status == "running" else start, "status": status,
            "exit_reason": None if status == "running" else "completed"}, indent=2))
        (run / "config.json").write_text(json.dumps({"seed": i, "lr": 0.004 * (1 + i % 4), "experts": 12,
                                                     "dataset": "digits", "strategy": "joint"}, indent=2))
        acc = 0.9 + (i % 90) / 1000
        (run / "metrics.json").write_text(json.dumps({
            "primary": "test_acc", "test_acc": acc, "test_n": 360, "test_acc_ci_low": acc - 0.03,
            "test_acc_ci_high": acc + 0.02, "val_acc": acc, "train_seconds": 20.0 + i % 7}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    n = ap.parse_args().runs
    exe = Path(sys.executable).parent / "nlab"
    with tempfile.TemporaryDirectory(prefix="nlab-runs-bench-") as tmp:
        write_runs(Path(tmp), n)
        cmd = [str(exe), "runs", "list", tmp, "--json"]
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            times.append(time.perf_counter() - t0)
        found = json.loads(out)
        stopped = sum(r["status"] == "stopped" for r in found)
    print(f"nlab runs list DIR --json over {n:,} run folders: median {statistics.median(times):.3f} s over "
          f"{REPEATS} runs (min {min(times):.3f}, max {max(times):.3f}); {len(found)} listed, {stopped} stopped; "
          f"goal < 1 s")


if __name__ == "__main__":
    main()

"""Startup time of `nlab --help`: the median of 10 runs (goal: under 0.5 s on the 2-core machines here).

Also checks that the help path imports no heavy library. Run: python benchmarks/cli_startup.py"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 10
exe = Path(sys.executable).parent / "nlab"
cmd = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "nlab_cli.main", "--help"]

subprocess.run(cmd, capture_output=True, check=True)  # warm the file cache once
times = []
for _ in range(RUNS):
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    times.append(time.perf_counter() - t0)

probe = subprocess.run([sys.executable, "-c", "import sys; from nlab_cli.main import app; "
                        "print(sorted(m for m in ('torch','transformers','matplotlib','numpy','scipy') "
                        "if m in sys.modules))"], capture_output=True, text=True, check=True)
print(f"nlab --help: median {statistics.median(times):.3f} s over {RUNS} runs "
      f"(min {min(times):.3f}, max {max(times):.3f}); goal < 0.5 s")
print(f"heavy modules imported by the CLI at start-up: {probe.stdout.strip()}")

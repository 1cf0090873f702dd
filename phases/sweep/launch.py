"""Running one `nlab PHASE ... --seed S --out DIR --json` process per seed: locally (a worker pool), as Ray tasks,
or as a submitit job array. Every launcher runs the same argv list (never a shell string), so outputs are
identical whichever ran the seeds; each seed's stderr goes to its own log file."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from phases.core.errors import InputError


@dataclass(frozen=True)
class SeedJob:
    seed: int
    argv: list[str]  # after the python executable: ["-m", "nlab_cli.main", phase, ...]
    run_dir: str
    log: str
    threads: int


def seed_argv(phase: str, phase_args: list[str], seed: int, run_dir: Path) -> list[str]:
    return ["-m", "nlab_cli.main", phase, *phase_args, "--seed", str(seed), "--out", str(run_dir), "--json"]


def run_seed(job: SeedJob) -> dict:
    """Run one seed's process where this function runs (this process, a Ray worker, a Slurm node) with the
    python that runs it. Returns its exit code."""
    env = {**os.environ, "NLAB_NUM_THREADS": str(job.threads), "NLAB_NO_PROGRESS": "1"}
    Path(job.log).parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "w") as log:
        proc = subprocess.run([sys.executable, *job.argv], stdout=subprocess.DEVNULL, stderr=log, env=env)
    return {"seed": job.seed, "returncode": proc.returncode}


def run_local(jobs: list[SeedJob], workers: int) -> list[dict]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run_seed, jobs))


def run_ray(jobs: list[SeedJob], address: str | None, num_cpus: float, num_gpus: float) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise InputError("--launcher ray needs ray", "pip install -c constraints.txt -e '.[distributed]'") from None
    try:
        ray.init(address=address, num_cpus=None if address else max(1, int(os.cpu_count() or 1)),
                 include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    except Exception as e:
        raise InputError(f"--ray-address {address}: cannot connect to a Ray cluster ({type(e).__name__}: {e})",
                         "check the address (ray://host:10001 or host:6379) or leave it out for a local Ray") from None
    try:
        remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)(run_seed)
        return ray.get([remote.remote(j) for j in jobs])
    finally:
        ray.shutdown()


def run_submitit(jobs: list[SeedJob], folder: Path, partition: str | None, timeout_min: int,
                 cpus_per_task: int) -> list[dict]:
    try:
        import submitit
    except ImportError:
        raise InputError("--launcher submitit needs submitit",
                         "pip install -c constraints.txt -e '.[distributed]'") from None
    executor = submitit.AutoExecutor(folder=str(folder))  # Slurm when sbatch exists, local processes otherwise
    params = {"timeout_min": timeout_min, "cpus_per_task": cpus_per_task}
    if partition:
        params["slurm_partition"] = partition
    executor.update_parameters(**params)
    submitted = executor.map_array(run_seed, jobs)
    return [s.result() for s in submitted]

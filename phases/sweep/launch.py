"""Running one `nlab PHASE ... --seed S --out DIR --json` process per seed: locally (a worker pool), as Ray tasks,
or as a submitit job array. Every launcher runs the same argv list (never a shell string), so outputs are
identical whichever ran the seeds; each seed's stderr goes to its own log file. Shared by seed-sweep (one
configuration, N seeds) and sweep (many configurations, K seeds each): `run_jobs` picks the launcher from the
options both declare (`LaunchOptions`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from phases.core.errors import InputError


@dataclass(frozen=True)
class SeedJob:
    seed: int
    argv: list[str]  # after the python executable: ["-m", "nlab_cli.main", phase, ...]
    run_dir: str
    log: str
    threads: int
    stop_file: str | None = None  # when this file appears the seed's process is stopped (SIGTERM): a pruned trial


def finished(run_dir: Path) -> bool:
    """A seed's run folder that completed (the only kind a resumed sweep does not rerun)."""
    from phases.core.jsonio import read_json

    m = run_dir / "manifest.json"
    return (run_dir / "metrics.json").is_file() and m.is_file() and read_json(m).get("status") == "completed"


def set_aside(run_dir: Path) -> None:
    """An unfinished seed folder (killed or failed earlier) is kept for inspection, renamed, and rerun."""
    for i in range(1, 1000):
        target = run_dir.with_name(f"{run_dir.name}.attempt{i}")
        if not target.exists():
            shutil.move(str(run_dir), str(target))
            return


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def seed_argv(phase: str, phase_args: list[str], seed: int, run_dir: Path) -> list[str]:
    return ["-m", "nlab_cli.main", phase, *phase_args, "--seed", str(seed), "--out", str(run_dir), "--json"]


def run_seed(job: SeedJob) -> dict:
    """Run one seed's process where this function runs (this process, a Ray worker, a Slurm node) with the
    python that runs it. Returns its exit code."""
    env = {**os.environ, "NLAB_NUM_THREADS": str(job.threads), "NLAB_NO_PROGRESS": "1"}
    Path(job.log).parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "w") as log:
        proc = subprocess.Popen([sys.executable, *job.argv], stdout=subprocess.DEVNULL, stderr=log, env=env)
        while True:
            try:
                proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if job.stop_file and os.path.exists(job.stop_file):
                    proc.terminate()  # the run records itself as failed (interrupted)
    return {"seed": job.seed, "returncode": proc.returncode}


def threads_per_job(o) -> int:
    """CPU threads of each seed: the cores divided between the local workers (or Ray's CPUs per seed), never more
    than $NLAB_NUM_THREADS when the user set it (a machine shared with others)."""
    cores = os.cpu_count() or 1
    threads = max(1, cores // o.workers) if o.launcher == "local" else max(1, int(o.num_cpus))
    cap = os.environ.get("NLAB_NUM_THREADS", "")
    return min(threads, int(cap)) if cap.isdigit() and int(cap) > 0 else threads


def run_jobs(o, jobs: list[SeedJob], folder: Path, on_done: Callable[[SeedJob, dict], None] | None = None
             ) -> list[dict]:
    """Run the jobs with the launcher the options `o` (a LaunchOptions) name; results in the jobs' order.
    `on_done(job, result)` is called as each job ends (locally; Ray and submitit: once all have)."""
    if not jobs:
        return []
    if o.launcher == "ray":
        results = run_ray(jobs, o.ray_address, o.num_cpus, o.num_gpus)
    elif o.launcher == "submitit":
        results = run_submitit(jobs, folder / "submitit", o.slurm_partition, o.timeout_min, jobs[0].threads)
    else:
        return run_local(jobs, o.workers, on_done)
    for job, result in zip(jobs, results):
        if on_done:
            on_done(job, result)
    return results


def run_local(jobs: list[SeedJob], workers: int, on_done: Callable[[SeedJob, dict], None] | None = None
              ) -> list[dict]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_seed, j): i for i, j in enumerate(jobs)}
        results: list[dict] = [{}] * len(jobs)
        for f in as_completed(futures):
            i = futures[f]
            results[i] = f.result()
            if on_done:
                on_done(jobs[i], results[i])
        return results


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

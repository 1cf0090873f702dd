"""Finding run folders (folders holding manifest.json) and summarising each from its manifest, config and metrics
alone (never history or predictions), so that listing a thousand runs takes well under a second.

A manifest says `running` while its writer lives and after a `kill -9` alike; the OS lock on `run.lock`
(phases/core/runs.py) tells them apart: a `running` run whose lock nobody holds has stopped."""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
from pathlib import Path

from phases.core import paths
from phases.core.errors import InputError
from phases.core.jsonio import read_json

MANIFEST, CONFIG, METRICS, LOCK = "manifest.json", "config.json", "metrics.json", "run.lock"
STATUSES = ("completed", "failed", "running", "stopped")
STOPPED_LABEL = "stopped (killed?)"
# not searched for runs: weights, the folders a run keeps its own plots or caches in, and its trackers' files
_SKIP = {"checkpoints", "__pycache__", "tb", "wandb"}


def roots(dirs: list[str]) -> list[Path]:
    """The folders to search: those given, else logs/ under the nlab home."""
    if not dirs:
        return [paths.logs_dir()]
    out = []
    for d in dirs:
        p = Path(d)
        if not p.is_dir():
            raise InputError(f"{d}: no such folder", "pass folders holding run folders (default: logs/ under "
                                                    "NLAB_HOME)")
        out.append(p)
    return out


def find_runs(dirs: list[str]) -> list[Path]:
    """Every run folder under the given folders (nested ones too: a sweep's seeds), in path order."""
    found, stack = [], [p for p in roots(dirs) if p.is_dir()]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # unreadable: nothing nlab wrote
        if any(e.name == MANIFEST and e.is_file() for e in entries):
            found.append(Path(folder))
        stack.extend(e.path for e in entries
                     if e.is_dir(follow_symlinks=False) and e.name not in _SKIP and not e.name.startswith("."))
    return sorted(found)


def resolve_run(arg: str, option: str = "RUN") -> Path:
    """A run folder given by path, or by run id under logs/<phase>/; a folder that is not one names the missing
    file."""
    p = Path(arg)
    if not p.exists():
        matches = sorted(paths.logs_dir().glob(f"*/{arg}")) if "/" not in arg else []
        if len(matches) != 1:
            raise InputError(f"{option} {arg}: no such folder" + (f" (and {len(matches)} runs under logs/ have "
                                                                  f"that id)" if matches else ""),
                             "pass a run folder (a run_dir printed by an nlab command) or its run id under logs/")
        p = matches[0]
    if not (p / MANIFEST).is_file():
        raise InputError(f"{option} {arg}: not an nlab run folder (no {MANIFEST} in {p})",
                         "pass a folder printed as run_dir by an nlab command (`nlab runs list` shows them)")
    return p


def lock_held(run_dir: Path) -> bool:
    """Whether a live process holds the run's lock: try to take it on a fresh descriptor, and let go at once."""
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY)
    except OSError:
        return False  # no lock file: no writer
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def state(manifest: dict, run_dir: Path) -> str:
    status = manifest.get("status")
    if status == "running" and not lock_held(run_dir):
        return "stopped"
    return status if status in STATUSES else "unknown"


def resume_hint(phase: str, run_dir: Path) -> str | None:
    from phases import registry

    info = registry.get(phase)
    return f"nlab {phase} --resume {run_dir}" if info is not None and info.resumes else None


def parse_time(text) -> _dt.datetime | None:
    try:
        t = _dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else t.astimezone()


def _last_write(run_dir: Path) -> _dt.datetime:
    """When a stopped run last wrote anything: its end, as near as the folder tells."""
    latest = max((e.stat().st_mtime for e in os.scandir(run_dir) if e.is_file()), default=0.0)
    return _dt.datetime.fromtimestamp(latest).astimezone()


def wall_time(manifest: dict, run_dir: Path, status: str) -> tuple[float | None, bool]:
    """Seconds from the manifest's start to its end (now for a live run; a stopped run's last write, an estimate)
    and whether it is an estimate."""
    start = parse_time(manifest.get("start_time"))
    if start is None:
        return None, False
    end, estimated = parse_time(manifest.get("end_time")), False
    if end is None:
        end = _dt.datetime.now().astimezone() if status == "running" else _last_write(run_dir)
        estimated = status != "running"
    return max((end - start).total_seconds(), 0.0), estimated


def is_scalar(v) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def headline(metrics: dict) -> dict:
    """The primary metric with its 95% interval where the metrics hold one (`test_acc_ci_low/high`,
    eval-gsm8k's `strict_acc_low/high`) and the number of items it was measured on."""
    p = metrics.get("primary")
    out = {"primary": p, "value": metrics.get(p), "low": None, "high": None, "n": None}
    if not isinstance(p, str):
        return out
    for lo, hi in ((f"{p}_ci_low", f"{p}_ci_high"), (f"{p}_low", f"{p}_high")):
        if lo in metrics and hi in metrics:
            out["low"], out["high"] = metrics[lo], metrics[hi]
            break
    split = p.split("_")[0]  # test_acc -> test_n; apoptosis's val_loss -> val_blocks (its paired items)
    out["n"] = next((metrics[k] for k in (f"{split}_n", "n", f"{split}_blocks")
                     if isinstance(metrics.get(k), int)), None)
    return out


def _read(run_dir: Path, name: str, what: str, problems: list[str]) -> dict:
    if not (run_dir / name).is_file():
        return {}
    try:
        obj = read_json(run_dir / name, what)
    except InputError as e:
        problems.append(e.message)  # one damaged folder must not hide the others
        return {}
    if not isinstance(obj, dict):
        problems.append(f"{run_dir / name}: not a JSON object")
        return {}
    return obj


def read_manifest(run_dir: Path) -> dict:
    return _read(run_dir, MANIFEST, "manifest", [])


def summarise(run_dir: Path) -> dict:
    """One run as a row of the notebook: id, phase, status, headline, wall time, its config and scalar metrics."""
    problems: list[str] = []
    manifest = _read(run_dir, MANIFEST, "manifest", problems)
    config = _read(run_dir, CONFIG, "config", problems)
    metrics = _read(run_dir, METRICS, "metrics", problems)
    phase = manifest.get("phase", "?")
    status = state(manifest, run_dir) if manifest else "unknown"
    wall, estimated = wall_time(manifest, run_dir, status)
    return {
        "run_id": manifest.get("run_id", run_dir.name), "phase": phase, "status": status,
        "run_dir": str(run_dir), "start_time": manifest.get("start_time"), "end_time": manifest.get("end_time"),
        "wall_time_s": wall, "wall_time_estimated": estimated, "exit_reason": manifest.get("exit_reason"),
        "hint": resume_hint(phase, run_dir) if status == "stopped" else None, **headline(metrics),
        "config": config, "metrics": {k: v for k, v in metrics.items() if is_scalar(v)}, "problems": problems,
    }


def status_label(summary: dict) -> str:
    return STOPPED_LABEL if summary["status"] == "stopped" else summary["status"]

"""`nlab runs gc`: the failed and stopped runs (status not completed, lock not held) with their checkpoint
folders and sizes; with `yes`, deleted. A run whose lock is held is never touched: the lock is taken for the
deletion itself, so a writer starting meanwhile either waits out the deletion or is never deleted."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from phases.core import paths, render
from phases.notebook import index
from phases.notebook.config import GcConfig
from phases.notebook.inspect import checkpoint_dir, folder_size

GARBAGE = ("failed", "stopped")


def _own_checkpoints(run_dir: Path, manifest: dict) -> Path | None:
    """The run's checkpoint folder when it is this run's alone. A default run's weights sit under
    checkpoints/<phase>/<run_id> of the home; a copy of that run elsewhere maps to the same place, so only the
    home's own logs/<phase>/<run_id> may delete them."""
    ckpt = checkpoint_dir(run_dir, manifest)
    if not ckpt.is_dir():
        return None
    inside = ckpt.resolve().is_relative_to(run_dir.resolve())
    home_run = paths.logs_dir() / manifest.get("phase", "?") / run_dir.name
    return ckpt if inside or (home_run.exists() and home_run.resolve() == run_dir.resolve()) else None


def _delete(run_dir: Path, ckpt: Path | None) -> bool:
    """Delete under the run's own lock; False (kept) when a process holds it."""
    fd = os.open(run_dir / index.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        if ckpt is not None:
            shutil.rmtree(ckpt, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        os.close(fd)
    return True


def gc(config: GcConfig) -> dict:
    summaries = [index.summarise(d) for d in index.find_runs(config.dirs)]
    # a failed sweep's folder may hold completed seed runs: deleting it would delete them too
    kept = [Path(s["run_dir"]).resolve() for s in summaries if s["status"] not in GARBAGE]
    runs = []
    for s in summaries:
        run_dir = Path(s["run_dir"])
        if s["status"] not in GARBAGE:
            continue
        if any(k.is_relative_to(run_dir.resolve()) for k in kept):
            render.warn(f"{run_dir}: {s['status']}, but kept: it holds runs that are not failed or stopped")
            continue
        manifest = index.read_manifest(run_dir)
        ckpt = _own_checkpoints(run_dir, manifest)
        outside = ckpt is not None and not ckpt.resolve().is_relative_to(run_dir.resolve())
        runs.append({"run_dir": str(run_dir), "phase": s["phase"], "status": s["status"],
                     "exit_reason": s["exit_reason"], "checkpoint_dir": str(ckpt) if ckpt else None,
                     "bytes": folder_size(run_dir) + (folder_size(ckpt) if outside else 0)})
    render.table(f"{len(runs)} failed or stopped run(s)", ["run folder", "status", "checkpoints", "bytes"],
                 ((r["run_dir"], r["status"], r["checkpoint_dir"] or "-", r["bytes"]) for r in runs))
    if config.yes:
        for r in runs:
            r["deleted"] = _delete(Path(r["run_dir"]), Path(r["checkpoint_dir"]) if r["checkpoint_dir"] else None)
            if not r["deleted"]:
                render.warn(f"{r['run_dir']}: kept, a process took its lock meanwhile")
    elif runs:
        render.say("nothing deleted: run `nlab runs gc --yes` to delete these folders and their checkpoints")
    freed = sum(r["bytes"] for r in runs if r.get("deleted"))
    if config.yes:
        render.say(f"deleted {sum(1 for r in runs if r.get('deleted'))} run(s), {freed:,} bytes")
    return {"runs": runs, "count": len(runs), "bytes": sum(r["bytes"] for r in runs), "deleted_bytes": freed}

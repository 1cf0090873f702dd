"""`nlab runs show RUN` (one run: manifest summary, config, metrics headline first, analyze-history's findings,
files) and `nlab runs diff A B`
(the options that differ, then every scalar metric side by side)."""

from __future__ import annotations

import os
from pathlib import Path

from phases.core import render
from phases.core.errors import InputError
from phases.core.runs import RESUME_ALWAYS_DIFFER, Run, load_run_dir
from phases.notebook import index
from phases.notebook.config import PairConfig, ShowConfig


def folder_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def checkpoint_dir(run_dir: Path, manifest: dict) -> Path:
    """Where the run keeps its weights, by the one rule of phases/core/runs.py (`Run.checkpoint_dir`)."""
    return Run(manifest.get("phase", "?"), run_dir, manifest, {}).checkpoint_dir


def _environment(manifest: dict) -> dict:
    env = manifest.get("environment") or {}
    lock, cpu = env.get("lock") or {}, env.get("cpu") or {}
    git = manifest.get("git") or {}
    versions = manifest.get("versions") or {}
    return {"host": manifest.get("host"), "device": " ".join(str(v) for v in (manifest.get("device"), manifest.get("device_name")) if v),
            "python": manifest.get("python"), "torch": versions.get("torch"),
            "lock_matches": lock.get("matches"), "cpu": cpu.get("model"),
            "torch_capability": cpu.get("torch_capability"),
            "git": (git.get("commit", "")[:12] + (" (dirty)" if git.get("dirty") else "")) if git else None,
            "resumes": len(manifest.get("resumes") or [])}


def _files(run_dir: Path, manifest: dict) -> list[dict]:
    out = []
    for e in sorted(os.scandir(run_dir), key=lambda e: e.name):
        size = folder_size(Path(e.path)) if e.is_dir() else e.stat().st_size
        out.append({"path": e.path, "bytes": size, "plot": e.name.endswith(".png")})
    ckpt = checkpoint_dir(run_dir, manifest)
    if ckpt.is_dir() and ckpt.resolve().parent != run_dir.resolve():  # a default run's weights, outside the folder
        out.append({"path": str(ckpt), "bytes": folder_size(ckpt), "plot": False})
    return out


def findings_of(run_dir: Path) -> list[dict] | None:
    """analyze-history's findings on the run's history.jsonl (its default thresholds; phases/history does the
    analysis), or None when the run has no readable history."""
    from phases.history.analyze import analyze
    from phases.history.config import Thresholds
    from phases.history.load import read_history

    if not (run_dir / Run.HISTORY).is_file() or (run_dir / Run.HISTORY).stat().st_size == 0:
        return None
    try:
        return analyze(read_history(run_dir / Run.HISTORY, skip_bad_lines=True), Thresholds())["findings"]
    except InputError:
        return None


def metrics_of(config: ShowConfig) -> dict:
    """A run's final metrics (what `runs check --expect` judges); a run without them is exit 2."""
    run_dir = index.resolve_run(config.run)
    metrics = load_run_dir(run_dir)["metrics"]
    if metrics is None:
        raise InputError(f"{run_dir}: no metrics.json (the run has not completed)",
                         "check a completed run, or resume this one first")
    return metrics


def show(config: ShowConfig) -> dict:
    run_dir = index.resolve_run(config.run)
    loaded = load_run_dir(run_dir)
    summary = index.summarise(run_dir)
    manifest = loaded["manifest"]
    status = {"status": index.status_label(summary), "exit_reason": manifest.get("exit_reason"),
              "start_time": manifest.get("start_time"), "end_time": manifest.get("end_time"),
              "wall_time_s": summary["wall_time_s"], **_environment(manifest)}
    files = _files(run_dir, manifest)
    render.table(f"{summary['phase']} run {summary['run_id']}", ["manifest", "value"], status.items())
    if summary["hint"]:
        render.say(f"resume with `{summary['hint']}`", markup=False)
    render.table("config", ["option", "value"],
                 ((k, v if index.is_scalar(v) else render.fmt(str(v))) for k, v in loaded["config"].items()))
    metrics = loaded["metrics"] or {}
    if metrics:
        render.render_metrics(metrics, "metrics")
    found = findings_of(run_dir)
    if found is not None:
        render.say(f"findings (analyze-history): {len(found) or 'none'}", markup=False)
        for f in found:
            render.say(f"  - {f['text']}", markup=False)
    render.table("files", ["path", "bytes"], ((f["path"] + ("  (plot)" if f["plot"] else ""), f["bytes"])
                                              for f in files))
    return {"run_dir": str(run_dir), "phase": summary["phase"], "run_id": summary["run_id"], **status,
            "hint": summary["hint"], "config": loaded["config"], "metrics": metrics, "findings": found,
            "files": files}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def diff(config: PairConfig) -> dict:
    a_dir, b_dir = index.resolve_run(config.run_a, "A"), index.resolve_run(config.run_b, "B")
    a, b = load_run_dir(a_dir), load_run_dir(b_dir)
    ca, cb = a["config"], b["config"]
    options = [{"option": k, "a": ca.get(k), "b": cb.get(k)} for k in [*ca, *(k for k in cb if k not in ca)]
               if k not in RESUME_ALWAYS_DIFFER and ca.get(k) != cb.get(k)]
    ma, mb = a["metrics"] or {}, b["metrics"] or {}
    skip = {"run_dir", "checkpoint"}  # paths: always differ
    keys = [k for k in [*ma, *(k for k in mb if k not in ma)]
            if k not in skip and index.is_scalar(ma.get(k)) and index.is_scalar(mb.get(k))]
    metrics = [{"metric": k, "a": ma.get(k), "b": mb.get(k),
                "diff": mb[k] - ma[k] if _number(ma.get(k)) and _number(mb.get(k)) else None} for k in keys]
    phases = (a["manifest"].get("phase"), b["manifest"].get("phase"))
    title = f"A {a_dir.name} ({phases[0]}) vs B {b_dir.name} ({phases[1]})"
    render.say(f"{title}: {len(options) or 'no'} option(s) differ", markup=False)
    if options:
        render.table("options", ["option", "A", "B"],
                     ((o["option"], render.fmt(o["a"]), render.fmt(o["b"])) for o in options))
    render.table("metrics", ["metric", "A", "B", "B - A"],
                 ((m["metric"], m["a"], m["b"], "" if m["diff"] is None else m["diff"]) for m in metrics))
    return {"run_a": str(a_dir), "run_b": str(b_dir), "phase_a": phases[0], "phase_b": phases[1],
            "options": options, "metrics": metrics}

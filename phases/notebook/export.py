"""`nlab runs export RUN... --to mlflow|tensorboard`: runs made without a tracker, sent after the fact through the
same tracker classes a live run uses (phases/core/trackers.py): the config, every point of history.jsonl (and of
a part's, e.g. `methods/ewc/history.jsonl`) at its step, and the final metrics. A run already in the target (an
MLflow run tagged with its run id, a TensorBoard folder holding events) is skipped, so exporting twice sends
nothing twice. A run still being written is refused."""

from __future__ import annotations

from pathlib import Path

from phases.core import paths, render
from phases.core.errors import InputError
from phases.core.jsonio import iter_jsonl
from phases.core.runs import Run, load_run_dir
from phases.core.trackers import CLASSES, RunInfo, default_mlflow_uri, finals_of, points_of, require
from phases.notebook import index
from phases.notebook.config import ExportConfig

TARGETS = ("mlflow", "tensorboard")


def histories(run_dir: Path) -> list[tuple[str, Path]]:
    """(prefix, file) of every history of the run: its own (no prefix), then its parts' (their folder's name)."""
    files = [p for p in sorted(run_dir.rglob(Run.HISTORY))
             if not any(part in index._SKIP for part in p.relative_to(run_dir).parts[:-1])]
    return [("" if p.parent == run_dir else p.parent.name, p) for p in files]


def _already(to: str, info: RunInfo, uri: str, logdir: Path) -> str | None:
    """Where the run already is in the target, or None."""
    if to == "tensorboard":
        return str(logdir) if any(logdir.glob("events.out.tfevents.*")) else None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(f"nlab/{info.phase}")
    if exp is None:
        return None
    found = client.search_runs([exp.experiment_id], filter_string=f"tags.`nlab.run_id` = '{info.run_id}'")
    return f"MLflow run {found[0].info.run_id}" if found else None


def export_run(run_dir: Path, to: str, uri: str | None, logdir: Path | None) -> dict:
    loaded = load_run_dir(run_dir)
    manifest = loaded["manifest"]
    status = index.state(manifest, run_dir)
    if status == "running":
        raise InputError(f"{run_dir}: the run is still being written (its lock is held)",
                         "export it once it has finished, or pass --tracker to a new run to stream it as it goes")
    info = RunInfo(manifest.get("phase", "?"), manifest.get("run_id", run_dir.name), run_dir, loaded["config"])
    logdir = logdir or paths.logs_dir() / "tensorboard" / info.phase / info.run_id
    uri = uri or default_mlflow_uri()
    where = _already(to, info, uri, logdir)
    if where is not None:
        render.say(f"{info.run_id}: already exported ({where}); skipped", markup=False)
        return {"run_dir": str(run_dir), "skipped": where}
    tracker = CLASSES[to](info, uri=uri, logdir=logdir)
    recorded = tracker.start()
    points = 0
    for prefix, path in histories(run_dir):
        for rec in iter_jsonl(path):
            scalars, step = points_of(rec, prefix), rec.get("step")
            if scalars and isinstance(step, (int, float)):
                tracker.log(scalars, int(step))
                points += 1
    if loaded["metrics"]:
        tracker.final(finals_of(loaded["metrics"]))
    tracker.close("completed" if status == "completed" else "failed")
    render.say(f"{info.run_id}: {points} history point(s)" + (" and the final metrics" if loaded["metrics"] else "")
               + f" sent to {to}", markup=False)
    return {"run_dir": str(run_dir), "points": points, "status": status,
            **({"logdir": str(logdir)} if to == "tensorboard" else recorded)}


def export(config: ExportConfig) -> dict:
    if config.to not in TARGETS:
        raise InputError(f"--to {config.to}: not a target", f"use one of: {', '.join(TARGETS)}")
    if not config.runs:
        raise InputError("no run given", "pass one or more run folders or run ids (nlab runs list shows them)")
    require(config.to, "--to")
    run_dirs = list(dict.fromkeys(index.resolve_run(r) for r in config.runs))  # all checked before any is sent
    logdir = Path(config.logdir) if config.logdir else None
    if logdir is not None and len(run_dirs) > 1:
        raise InputError("--logdir names one run's folder of event files", "export one run at a time with --logdir, "
                         "or leave it out (logs/tensorboard/<phase>/<run_id>)")
    return {"to": config.to, "runs": [export_run(d, config.to, config.tracker_uri, logdir) for d in run_dirs]}

"""`nlab runs list`: every run under the folders, filtered, as a table (stderr) or a list (stdout, --json),
with the total of a numeric field for compute accounting (`--sum wall_time`)."""

from __future__ import annotations

from phases.core import render
from phases.core.errors import InputError
from phases.notebook import index, query
from phases.notebook.config import ListConfig

# options that say little about what a run did (paths, the resume bookkeeping)
_NOT_KEY = {"out", "name", "resume", "data_dir", "device", "data_paths", "masks", "compile"}
_USUAL = ("dataset", "strategy", "model", "scenario")
KEY_OPTIONS = 4


def _check(config: ListConfig) -> tuple[list, object]:
    from phases import registry

    if config.phase is not None and registry.get(config.phase) is None:
        raise InputError(f"--phase {config.phase}: no such phase",
                         f"use one of: {', '.join(p.command for p in registry.PHASES)}")
    if config.status is not None and config.status not in index.STATUSES:
        raise InputError(f"--status {config.status}: no such status", f"use one of: {', '.join(index.STATUSES)}")
    return query.parse_where(config.where), query.parse_since(config.since)


def _keep(run: dict, config: ListConfig, conditions: list, since) -> bool:
    if config.phase is not None and run["phase"] != config.phase:
        return False
    if config.status is not None and run["status"] != config.status:
        return False
    if since is not None:
        start = index.parse_time(run["start_time"])
        if start is None or start < since:
            return False
    return all(c.holds(run) for c in conditions)


def key_options(runs: list[dict]) -> None:
    """A few options per run: those that vary among the listed runs of its phase first, then the usual names."""
    by_phase: dict[str, list[dict]] = {}
    for r in runs:
        by_phase.setdefault(r["phase"], []).append(r)
    for group in by_phase.values():
        keys = [k for k in group[0]["config"] if k not in _NOT_KEY and index.is_scalar(group[0]["config"][k])]
        varying = [k for k in keys if len({repr(r["config"].get(k)) for r in group}) > 1]
        chosen = (varying + [k for k in _USUAL if k in keys and k not in varying])[:KEY_OPTIONS]
        for r in group:
            r["key_options"] = {k: r["config"].get(k) for k in chosen}


def total(runs: list[dict], field: str) -> dict:
    """The sum of `field` (`wall_time`, or a numeric metric) over the runs, and how many lack it."""
    key = "wall_time_s" if field in ("wall_time", "wall_time_s") else None
    values = [r[key] if key else r["metrics"].get(field) for r in runs]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if runs and not numbers:
        raise InputError(f"--sum {field}: none of the {len(runs)} listed runs has that number",
                         "use wall_time or a numeric metric of metrics.json (`nlab runs show RUN` lists them)")
    return {"field": field, "total": sum(numbers), "runs": len(numbers), "missing": len(values) - len(numbers),
            "estimated": sum(1 for r in runs if key and r["wall_time_estimated"])}


def _wall(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else \
        f"{seconds / 3600:.2f} h"


def _headline(r: dict) -> str:
    if r["value"] is None:
        return "-"
    ci = f" [{render.fmt(r['low'], 3)}, {render.fmt(r['high'], 3)}]" if r["low"] is not None else ""
    return f"{r['primary']} {render.fmt(r['value'])}{ci}"


def _render(runs: list[dict]) -> None:
    rows = [(r["run_id"], r["phase"], index.status_label(r), _headline(r), "-" if r["n"] is None else r["n"],
             _wall(r["wall_time_s"]) + ("~" if r["wall_time_estimated"] else ""),
             " ".join(f"{k}={render.fmt(v)}" for k, v in r["key_options"].items())) for r in runs]
    render.table(f"{len(runs)} run(s)", ["run", "phase", "status", "primary [95% CI]", "n", "wall", "options"], rows)
    for r in runs:
        if r["hint"]:
            render.say(f"{r['run_id']} stopped while running (killed?): resume with `{r['hint']}`", markup=False)
        for p in r["problems"]:
            render.warn(p)


def run(config: ListConfig) -> dict:
    conditions, since = _check(config)
    runs = [index.summarise(d) for d in index.find_runs(config.dirs)]
    runs = [r for r in runs if _keep(r, config, conditions, since)]
    runs.sort(key=lambda r: (r["start_time"] or "", r["run_dir"]))
    key_options(runs)
    summed = total(runs, config.sum) if config.sum else None
    if config.table:
        _render(runs)
    else:
        render.say(f"{len(runs)} run(s)")
    if summed is not None:
        shown = _wall(summed["total"]) if summed["field"].startswith("wall_time") else render.fmt(summed["total"])
        render.say(f"total {summed['field']}: {shown} over {summed['runs']} run(s)"
                   + (f", {summed['missing']} without it" if summed["missing"] else "")
                   + (f" ({summed['estimated']} stopped run(s) counted to their last write)"
                      if summed["estimated"] else ""), markup=False)
    return {"runs": runs, "count": len(runs), "sum": summed}

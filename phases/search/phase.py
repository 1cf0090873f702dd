"""The sweep phase: configurations of one phase (grid, random, taguchi or tpe), each under the same K seeds, then
which configuration is really better: chosen on validation data, reported on test data, and each configuration
against the baseline over matched seeds with a verdict beyond noise or not (phases/core/compare.py)."""

from __future__ import annotations

import math
from dataclasses import asdict

from phases import registry
from phases.core import render
from phases.core.errors import InputError
from phases.core.options import check_options, option_name
from phases.core.runs import Run
from phases.core.stats import lower_is_better
from phases.search import designs, report, taguchi, tpe
from phases.search.config import SearchConfig
from phases.search.params import Param, parse_params
from phases.search.trials import Trials
from phases.sweep.phase import _CONTROLLED, check_selection

PHASE = "sweep"


def plan(c: SearchConfig) -> tuple[list[Param], list[dict] | None, object]:
    """Every check made before anything is written (exit 2 on the first that fails), then the configurations a
    grid, random or taguchi design runs (None for tpe: it proposes them as it goes) and the Taguchi layout."""
    check_options(c)
    info = registry.get(c.phase)
    if info is None or not info.sweepable:
        sweepable = ", ".join(p.command for p in registry.PHASES if p.sweepable)
        raise InputError(f"sweep {c.phase!r}: not a phase a sweep can run", f"use one of: {sweepable}")
    params = parse_params(c.params, info.load("config"), c.phase)
    check_selection(c.phase, c.select, c.report)
    for arg in c.phase_args:
        flag = arg.split("=")[0]
        if flag in _CONTROLLED:
            raise InputError(f"phase option {flag} is set by the sweep for every run", "remove it from after --")
        swept = next((p for p in params if flag in (option_name(p.name), "--no-" + p.label)), None)
        if swept is not None:
            raise InputError(f"{flag} is swept (--param {swept.label}) and also fixed after --",
                             "remove it from the options after --")
    if c.compares and c.seeds < 2:
        raise InputError(f"--seeds {c.seeds}: comparing configurations across seeds needs at least 2 per "
                         "configuration", "use --seeds 3 (or more), or --baseline none for no comparison")
    if c.design in ("random", "tpe") and c.trials is None:
        raise InputError(f"--design {c.design} needs --trials N", f"e.g. --design {c.design} --trials 20")
    if c.design in ("grid", "taguchi") and c.trials is not None:
        raise InputError(f"--trials: {c.design} runs the configurations it defines", "leave --trials out")
    if c.design != "tpe" and c.pruner != "median":
        raise InputError("--pruner: only --design tpe prunes trials", "leave --pruner out")
    if c.design == "tpe" and c.pruner != "none" and info.history_key(c.select) is None:
        raise InputError(f"--pruner {c.pruner}: {c.phase} logs no validation history for {c.select}",
                         "use --pruner none")
    layout, configs = None, None
    if c.design == "grid":
        configs = designs.grid(params, c.levels)
    elif c.design == "random":
        configs = designs.random(params, c.trials, c.design_seed)
    elif c.design == "taguchi":
        if c.levels > 3:
            raise InputError(f"--levels {c.levels}: taguchi arrays hold factors of 2 or 3 levels", "use --levels 3")
        layout, configs = designs.taguchi(params, c.levels)
    baseline_index(c, params, configs)  # a baseline that names no configuration: refused now
    return params, configs, layout


def baseline_index(c: SearchConfig, params: list[Param], configs: list[dict] | None) -> int | None:
    """--baseline as a trial number (default 0), or NAME=VALUE[,NAME=VALUE] naming a configuration of the design
    (for tpe: the configuration its first trial runs); None with --baseline none."""
    if not c.compares:
        return None
    text = c.baseline or "0"
    if "=" not in text:
        if not text.isdigit() or (configs is not None and int(text) >= len(configs)):
            raise InputError(f"--baseline {text}: not a trial number of this design",
                             "give a trial number (0 is the first), NAME=VALUE[,NAME=VALUE], or none")
        return int(text)
    wanted = baseline_values(text, params)
    if configs is None:
        return 0
    match = next((i for i, v in enumerate(configs) if all(_same(v[k], x) for k, x in wanted.items())), None)
    if match is None:
        raise InputError(f"--baseline {text}: no configuration of the design has these values",
                         "name values the --param lists (or levels) hold")
    return match


def baseline_values(text: str, params: list[Param]) -> dict:
    by_label = {p.label: p for p in params}
    out = {}
    for piece in text.split(","):
        name, _, value = piece.partition("=")
        p = by_label.get(name.strip().lstrip("-").replace("_", "-"))
        if p is None:
            raise InputError(f"--baseline {text}: {name.strip()!r} is not a swept option",
                             f"name options given to --param: {', '.join(by_label)}")
        out[p.name] = p.parse_value(value)
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def argvs_to_check(c: SearchConfig) -> list[list[str]]:
    """The phase options of the configurations to check before anything runs: every configuration of a design
    that lists them; for tpe each value (range ends) of each option with the others at their first."""
    params, configs, _ = plan(c)
    if configs is None:
        first = {p.name: p.levels(2)[0] for p in params}
        configs = [first] + [{**first, p.name: v} for p in params for v in p.levels(2)[1:]]
    return [[*c.phase_args, *(a for p in params for a in p.argv(v[p.name]))] for v in configs]


def run(c: SearchConfig) -> dict:
    if c.mode is None:
        c.mode = "min" if lower_is_better(c.select) else "max"
    params, configs, layout = plan(c)
    info = registry.get(c.phase)
    with Run.open(PHASE, c, asdict(c), completed_ok=True) as run_:
        trials = Trials(run_.dir, c, params, info.history_key(c.select) if c.design == "tpe" else None)
        try:
            extra = _search(c, trials, params, configs, layout)
        finally:
            trials.close()
        metrics = report.summarise(c, params, trials.records, baseline_index(c, params, configs), extra, run_.dir)
        metrics["plots"] = report.draw(metrics, run_.dir)
        out = run_.write_metrics(metrics, primary="best_report")
    report.render_sweep(out)
    return out


def _search(c: SearchConfig, trials: Trials, params: list[Param], configs: list[dict] | None, layout) -> dict:
    if c.design == "tpe":
        first = baseline_values(c.baseline, params) if c.baseline and "=" in c.baseline else None
        if first is not None and set(first) != {p.name for p in params}:
            raise InputError(f"--baseline {c.baseline}: tpe runs the baseline first, so it must give every swept "
                             "option", "give NAME=VALUE for each --param")
        return {"tpe": tpe.optimise(c, trials, params, first)}
    render.say(f"sweep {c.phase}: {len(configs)} configurations x {c.seeds} seeds ({c.design}"
               + (f", {layout.array.name}" if layout else "") + f"), {len(trials.records)} already finished")
    trials.run_batch(dict(enumerate(configs)))
    if c.design != "taguchi":
        return {}
    return {"taguchi": _confirm(c, trials, params, configs, layout)}


def _confirm(c: SearchConfig, trials: Trials, params: list[Param], configs: list[dict], layout) -> dict:
    """Main effects over the array's runs, then the predicted best combination run as one more trial (unless the
    array ran it already): the confirmation of the additive model."""
    runs = [{"levels": configs[n], "values": [s["select"] for s in r["seeds"] if s["status"] == "completed"]}
            for n, r in trials.records.items() if n < len(configs)]
    runs = [r for r in runs if r["values"]]
    if len(runs) < len(configs):
        render.warn(f"taguchi: {len(configs) - len(runs)} array runs have no finished seed; main effects are "
                    "estimated from the rest (no longer balanced)")
    effects = taguchi.main_effects(runs, [(p.name, p.levels(c.levels)) for p in params], c.mode == "min")
    best = effects["predicted_best"]
    ran = next((i for i, v in enumerate(configs) if all(_same(v[k], x) for k, x in best.items())), None)
    confirmation = ran if ran is not None else len(configs)
    if ran is None:
        render.say("taguchi: running the predicted best configuration (confirmation)")
        trials.run_batch({confirmation: best})
    for f in effects["factors"]:  # named as typed, like the trials' params
        f["factor"] = f["factor"].replace("_", "-")
    effects["predicted_best"] = {k.replace("_", "-"): v for k, v in best.items()}
    return {"array": layout.array.name, "columns": list(layout.columns), **effects,
            "confirmation_trial": confirmation, "confirmation_in_array": ran is not None}

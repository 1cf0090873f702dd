"""nlab sweep: configurations of a phase (grid, random, taguchi, tpe), each under K seeds, with verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from nlab_cli.common import (Expect, Json, Launcher, Name, NumCpus, NumGpus, Out, RayAddress, SlurmPartition,
                             TimeoutMin, Workers, bad_usage, execute)
from nlab_cli.common import opt as _opt
from nlab_cli.options import build_config, check_phase_args
from phases.search.config import DESIGNS, PRUNERS, SearchConfig
from phases.sweep.config import MODES

_S = SearchConfig(phase="")
_SEARCH, _STATS, _LAUNCH = "Search", "Selection and statistics", "Launch"


def sweep(
    ctx: typer.Context,
    phase: Annotated[Optional[str], typer.Argument(help="The phase to sweep (train-moe, apoptosis, ewc, "
                                                        "eval-gsm8k); its fixed options go after --.",
                                                   show_default=False)] = None,
    param: Annotated[Optional[list[str]], _opt(
        "NAME=SPEC, repeatable: a list (lr=1e-3,4e-3; strategy=standard|hybrid) or a range (lr=log:1e-4..1e-2, "
        "prune-rate=0.05..0.15).", _SEARCH, "--param", "-p", show_default=False)] = None,
    design: Annotated[Literal[DESIGNS], _opt("grid (every combination), random, taguchi (an orthogonal array, "
                                             "main effects, a confirmation run) or tpe (Optuna).",
                                             _SEARCH)] = _S.design,
    trials: Annotated[Optional[int], _opt("random and tpe: how many configurations.", _SEARCH,
                                          show_default=False)] = None,
    levels: Annotated[int, _opt("grid and taguchi: points a range is cut into (taguchi: 2 or 3).",
                                _SEARCH)] = _S.levels,
    design_seed: Annotated[int, _opt("Seed of random's draws and TPE's sampler.", _SEARCH)] = _S.design_seed,
    pruner: Annotated[Literal[PRUNERS], _opt("tpe: stop trials whose validation curve falls behind (median, "
                                             "successive halving) or none.", _SEARCH)] = _S.pruner,
    seeds: Annotated[int, _opt("Seeds per configuration (the same seeds for every one).", _STATS)] = _S.seeds,
    seed_start: Annotated[int, _opt("First seed.", _STATS)] = _S.seed_start,
    baseline: Annotated[Optional[str], _opt("The configuration the others are compared with: a trial number, "
                                            "NAME=VALUE[,NAME=VALUE], or none (default: trial 0).", _STATS,
                                            show_default=False)] = None,
    select: Annotated[str, _opt("Metric that chooses the configuration (validation data).", _STATS)] = _S.select,
    report: Annotated[str, _opt("Metric reported for the chosen configuration (test data).", _STATS)] = _S.report,
    mode: Annotated[Optional[Literal[MODES]], _opt("Which direction of --select is better (default: min for "
                                                   "losses and errors, else max).", _STATS,
                                                   show_default=False)] = None,
    alpha: Annotated[float, _opt("Significance level of 'beyond noise' (Holm-adjusted).", _STATS)] = _S.alpha,
    top_k: Annotated[int, _opt("How many of the chosen configuration's seeds to list for ensemble-vote.",
                               _STATS)] = _S.top_k,
    workers: Workers = _S.workers,
    launcher: Launcher = _S.launcher,
    ray_address: RayAddress = None,
    num_cpus: NumCpus = _S.num_cpus,
    num_gpus: NumGpus = _S.num_gpus,
    slurm_partition: SlurmPartition = None,
    timeout_min: TimeoutMin = _S.timeout_min,
    resume: Annotated[Optional[Path], _opt("Continue a sweep folder: only unfinished trials run.", _LAUNCH,
                                           show_default=False)] = None,
    out: Out = None,
    name: Name = None,
    json_out: Json = False,
    expect: Expect = None,
) -> None:
    """Which configuration of a phase is really better: each under K seeds, chosen on validation, verdicts beyond
    noise."""
    from phases import search

    if phase is None and resume is None:
        raise bad_usage("sweep needs the phase to run",
                        "e.g. nlab sweep train-moe --param lr=1e-3,4e-3 --seeds 3 -- --epochs 3")
    # with --resume alone, the sweep's phase, parameters and options come from its own config
    config = build_config(ctx, SearchConfig, renamed={"param": "params"},
                          also_given=frozenset({"phase_args"} if ctx.args else ()), param=list(param or []),
                          phase_args=list(ctx.args))
    if config.resume is None or param or ctx.args:
        argvs = execute(search.argvs_to_check, config)
        for args in argvs:  # each configuration's options, as the phase's own command parses and checks them
            check_phase_args(ctx, config.phase, args)
    execute(search.run, config, json_out=json_out, expect=expect, phase="sweep")

"""nlab ensemble-vote: majority or soft voting over the predictions of several runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from nlab_cli.common import Expect, Json, Name, Out, bad_usage, execute, read_stdin_json
from phases.ensemble.config import METHODS, TIE_BREAKS, EnsembleConfig

_E = EnsembleConfig()


def ensemble_vote(
    runs: Annotated[Optional[list[str]], typer.Argument(
        help="Run folders, best first; '-' reads a seed-sweep's or sweep's --json output from stdin and takes its "
             "top-k.",
        show_default=False)] = None,
    from_sweep: Annotated[Optional[Path], typer.Option(
        help="A seed-sweep or sweep folder: vote over its top-k seeds.", show_default=False)] = None,
    top_k: Annotated[int, typer.Option(help="How many of a sweep's best seeds vote.")] = _E.top_k,
    method: Annotated[Literal[METHODS], typer.Option(help="hard (majority of answers) or soft (mean class "
                                                          "probabilities).")] = _E.method,
    tie_break: Annotated[Literal[TIE_BREAKS], typer.Option(help="How a tied vote is settled.")] = _E.tie_break,
    out: Out = None,
    name: Name = None,
    json_out: Json = False,
    expect: Expect = None,
) -> None:
    """Combine runs' predictions by voting; report the ensemble against each member, with noise bounds."""
    from phases import ensemble

    runs = list(runs or [])
    sweep_dir = str(from_sweep) if from_sweep else None
    if "-" in runs:
        runs.remove("-")
        piped = read_stdin_json()
        sweeps = [o for o in piped if "top_k" in o]
        if sweeps:
            if len(sweeps) > 1 or sweep_dir:
                raise bad_usage("stdin holds more than one sweep", "pipe one seed-sweep's --json output")
            sweep_dir = sweeps[0]["run_dir"]
        else:
            runs = [str(o["run_dir"]) for o in piped if "run_dir" in o] + runs
    config = EnsembleConfig(runs=runs, from_sweep=sweep_dir, top_k=top_k, method=method, tie_break=tie_break,
                            out=str(out) if out else None, name=name)
    execute(ensemble.run, config, json_out=json_out, expect=expect, phase="ensemble-vote")

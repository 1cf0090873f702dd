"""nlab seed-sweep: one configuration under N seeds; --compare A B for two sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from nlab_cli.common import (Expect, Json, Launcher, Name, NumCpus, NumGpus, Out, RayAddress, SlurmPartition,
                             TimeoutMin, Workers, bad_usage, execute)
from nlab_cli.options import build_config, check_phase_args
from phases.sweep.config import MODES, CompareConfig, SweepConfig

_S, _C = SweepConfig(phase=""), CompareConfig("", "")


def _int_list(text: Optional[str], option: str) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise bad_usage(f"{option} {text!r}: expected comma-separated integers", f"e.g. {option} 3,7,11") from None


def seed_sweep(
    ctx: typer.Context,
    phase: Annotated[Optional[str], typer.Argument(help="The phase to run per seed (train-moe, apoptosis, ewc, "
                                                        "eval-gsm8k); its options go after --.",
                                                   show_default=False)] = None,
    seeds: Annotated[int, typer.Option(help="Number of seeds.")] = _S.seeds,
    seed_start: Annotated[int, typer.Option(help="First seed (seeds are seed-start .. seed-start+N-1).")] = _S.seed_start,
    seed_list: Annotated[Optional[str], typer.Option(help="Explicit seeds, e.g. 3,7,11 (overrides --seeds).",
                                                     show_default=False)] = None,
    workers: Workers = _S.workers,
    launcher: Launcher = _S.launcher,
    ray_address: RayAddress = None,
    num_cpus: NumCpus = _S.num_cpus,
    num_gpus: NumGpus = _S.num_gpus,
    slurm_partition: SlurmPartition = None,
    timeout_min: TimeoutMin = _S.timeout_min,
    select: Annotated[str, typer.Option(help="Metric that chooses the best seed (validation data).")] = _S.select,
    report: Annotated[str, typer.Option(help="Metric reported for the chosen seed (test data).")] = _S.report,
    mode: Annotated[Literal[MODES], typer.Option(help="Which direction of the metric is better.")] = _S.mode,
    top_k: Annotated[int, typer.Option(help="How many top seeds to list for ensemble-vote.")] = _S.top_k,
    resume: Annotated[Optional[Path], typer.Option(help="Continue a sweep folder: finished seeds are not rerun.",
                                                   show_default=False)] = None,
    compare: Annotated[Optional[tuple[Path, Path]], typer.Option(
        help="Compare two sweep folders A B instead of running: P(A>B), a bootstrap interval, a verdict.",
        show_default=False)] = None,
    metric: Annotated[Optional[str], typer.Option(help="--compare: the metric (default: the sweeps' report "
                                                       "metric).", show_default=False)] = None,
    threshold: Annotated[float, typer.Option(help="--compare: P(A>B) needed to call A better.")] = _C.threshold,
    out: Out = None,
    name: Name = None,
    json_out: Json = False,
    expect: Expect = None,
) -> None:
    """Run one phase under N seeds: spread, expected maximum, honest best-seed selection, top seeds."""
    from phases import sweep

    if compare:
        execute(sweep.compare, CompareConfig(str(compare[0]), str(compare[1]), metric,
                                             mode if mode != _S.mode else None, threshold,
                                             str(out) if out else None, name), json_out=json_out, expect=expect)
        return
    if phase is None and resume is None:
        raise bad_usage("seed-sweep needs the phase to run", "e.g. nlab seed-sweep train-moe --seeds 5 -- --epochs 3")
    if phase is not None:
        check_phase_args(ctx, phase, list(ctx.args))
    # with --resume alone, the sweep's phase, options and seeds come from its own config
    config = build_config(ctx, SweepConfig, also_given=frozenset({"phase_args"} if ctx.args else ()),
                          phase_args=list(ctx.args), seed_list=_int_list(seed_list, "--seed-list"))
    execute(sweep.run, config, json_out=json_out, expect=expect, phase="seed-sweep")

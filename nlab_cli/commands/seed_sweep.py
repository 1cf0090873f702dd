"""nlab seed-sweep: one configuration under N seeds; --compare A B for two sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from nlab_cli.common import Expect, Json, Name, Out, bad_usage, execute
from nlab_cli.options import build_config
from phases.sweep.config import LAUNCHERS, MODES, CompareConfig, SweepConfig

_S, _C = SweepConfig(phase=""), CompareConfig("", "")


def _int_list(text: Optional[str], option: str) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise bad_usage(f"{option} {text!r}: expected comma-separated integers", f"e.g. {option} 3,7,11") from None


def _check_phase_args(ctx: typer.Context, phase: str, args: list[str]) -> None:
    """Parse the pass-through options with the phase's own command (without running it) and check them as the
    phase's config, so that a typo or an out-of-range value is one exit-2 error now rather than N failed seeds
    later."""
    import click

    from phases import registry
    from phases.core.errors import InputError
    from phases.core.options import check_memory

    command = ctx.parent.command.get_command(ctx.parent, phase) if ctx.parent else None
    info = registry.get(phase)
    if command is None or info is None or not info.sweepable:
        return  # not a phase a sweep runs: the sweep's own check names the phases it can run
    try:
        phase_ctx = command.make_context(phase, list(args), parent=ctx.parent)
        config = build_config(phase_ctx, info.load("config"))
        info.load("check")(config)
        check_memory(config)  # (a training phase checks it once its data is read; here before any seed runs)
    except click.UsageError as e:
        raise bad_usage(f"options for {phase}: {e.format_message()}",
                        f"see `nlab {phase} --help`; put the phase's options after --") from None
    except InputError as e:
        raise bad_usage(f"options for {phase}: {e.message}", e.hint) from None


def seed_sweep(
    ctx: typer.Context,
    phase: Annotated[Optional[str], typer.Argument(help="The phase to run per seed (train-moe, apoptosis, ewc, "
                                                        "eval-gsm8k); its options go after --.",
                                                   show_default=False)] = None,
    seeds: Annotated[int, typer.Option(help="Number of seeds.")] = _S.seeds,
    seed_start: Annotated[int, typer.Option(help="First seed (seeds are seed-start .. seed-start+N-1).")] = _S.seed_start,
    seed_list: Annotated[Optional[str], typer.Option(help="Explicit seeds, e.g. 3,7,11 (overrides --seeds).",
                                                     show_default=False)] = None,
    workers: Annotated[int, typer.Option(help="Local launcher: seeds run in parallel, CPU threads divided "
                                              "between them.")] = _S.workers,
    launcher: Annotated[Literal[LAUNCHERS], typer.Option(help="Where the seeds run.")] = _S.launcher,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster address (default: a local Ray "
                                                            "instance).", show_default=False)] = None,
    num_cpus: Annotated[float, typer.Option(help="Ray: CPUs per seed.")] = _S.num_cpus,
    num_gpus: Annotated[float, typer.Option(help="Ray: GPUs per seed.")] = _S.num_gpus,
    slurm_partition: Annotated[Optional[str], typer.Option(help="submitit: Slurm partition.",
                                                           show_default=False)] = None,
    timeout_min: Annotated[int, typer.Option(help="submitit: minutes per seed.")] = _S.timeout_min,
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
        _check_phase_args(ctx, phase, list(ctx.args))
    # with --resume alone, the sweep's phase, options and seeds come from its own config
    config = build_config(ctx, SweepConfig, also_given=frozenset({"phase_args"} if ctx.args else ()),
                          phase_args=list(ctx.args), seed_list=_int_list(seed_list, "--seed-list"))
    execute(sweep.run, config, json_out=json_out, expect=expect, phase="seed-sweep")

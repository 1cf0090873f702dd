"""The one way a command turns its parsed options into the phase's config, `--resume RUN` included: given alone,
the run's own options come from its config.json, with any option given on the command line on top (the phase
then refuses one that differs from the run's, naming it). And the check of a phase's options passed through a
sweep (after `--`), with the phase's own command."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import typer

from nlab_cli.common import execute, given_options


def build_config(ctx: typer.Context, config_cls, renamed: dict[str, str] | None = None,
                 also_given: frozenset[str] = frozenset(), **values: Any):
    """`config_cls` from the command's parameters (`ctx.params`, with `values` on top for those the command
    converts itself). `renamed` maps a parameter to its config field where the names differ (`--method` ->
    `methods`); `also_given` names fields the command filled from elsewhere that count as given (the options
    after `--`). Paths become strings, as a config records them."""
    renamed = renamed or {}
    names = {f.name for f in fields(config_cls)}
    params = {renamed.get(p, p): v for p, v in {**ctx.params, **values}.items()}
    config = {k: str(v) if isinstance(v, Path) else v for k, v in params.items() if k in names}
    if not config.get("resume"):
        return config_cls(**config)
    from phases.core.runs import config_from_run

    given = {renamed.get(p, p) for p in given_options(ctx)} | set(also_given)
    return execute(config_from_run, config["resume"], config_cls,
                   {k: config[k] for k in given & names - {"resume"}})


def check_phase_args(ctx: typer.Context, phase: str, args: list[str]) -> None:
    """Parse the pass-through options with the phase's own command (without running it) and check them as the
    phase's config, so that a typo or an out-of-range value is one exit-2 error now rather than N failed seeds
    later."""
    import click

    from nlab_cli.common import bad_usage
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

"""The `nlab` command. Thin by design: each command module parses options into a phase config and calls one
phase function. Heavy libraries (torch, transformers, matplotlib) are imported only inside those functions,
so `nlab --help` stays fast."""

from __future__ import annotations

from typing import Annotated

import typer

from nlab_cli import __version__
from phases import registry

app = typer.Typer(
    name="nlab",
    help="nlab: a command-line research lab for neural-network experiments. Human output goes to stderr; "
         "--json puts the final metrics on stdout for pipelines. Exit codes: 0 ok, 1 run failed, 2 bad input.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"nlab {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """nlab: a command-line research lab for neural-network experiments."""


# Every command from the phase registry, in its order (the order of `nlab --help`): the phases, then the tools
# that read their runs; a command group (`nlab runs ...`) as a Typer sub-app.
for _phase in registry.PHASES:
    if _phase.group:
        app.add_typer(_phase.load("cli"), name=_phase.command)
        continue
    _settings = {"allow_extra_args": True, "ignore_unknown_options": True} if _phase.extra_args else None
    app.command(_phase.command, context_settings=_settings)(_phase.load("cli"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()

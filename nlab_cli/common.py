"""What every command shares: the common options, running a phase with errors mapped to exit codes
(0 ok, 1 run failed, 2 bad input), `--json` on stdout, and `-` for JSON read from stdin."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

import typer

from phases.sweep.config import LAUNCHERS

Device = Annotated[str, typer.Option("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for python, numpy and torch.")]
Deterministic = Annotated[bool, typer.Option("--deterministic", help="Deterministic kernels (slower on GPU).")]
Out = Annotated[Optional[Path], typer.Option("--out", help="Run folder to create (default: logs/<phase>/<run_id>).",
                                             show_default=False)]
Name = Annotated[Optional[str], typer.Option("--name", help="Short name appended to the run id.", show_default=False)]
DataDir = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="Folder holding the datasets (default: $NLAB_DATA_DIR, then ./data, then a download).",
    show_default=False)]
Json = Annotated[bool, typer.Option("--json", help="Print the final metrics as one JSON object on stdout.")]
# where a sweep's runs go (seed-sweep, sweep): phases/sweep/config.py::LaunchOptions
Workers = Annotated[int, typer.Option(help="Local launcher: runs in parallel, CPU threads divided between them.")]
Launcher = Annotated[Literal[LAUNCHERS], typer.Option(help="Where the runs go.")]
RayAddress = Annotated[Optional[str], typer.Option(help="Ray cluster address (default: a local Ray instance).",
                                                   show_default=False)]
NumCpus = Annotated[float, typer.Option(help="Ray: CPUs per run.")]
NumGpus = Annotated[float, typer.Option(help="Ray: GPUs per run.")]
SlurmPartition = Annotated[Optional[str], typer.Option(help="submitit: Slurm partition.", show_default=False)]
TimeoutMin = Annotated[int, typer.Option(help="submitit: minutes per run.")]
Expect = Annotated[Optional[list[str]], typer.Option(
    "--expect", help="A go/no-go gate on a final metric, e.g. 'test_acc>=0.95' (repeatable): each is printed met, "
                     "missed or inconclusive (its 95% interval straddles the threshold); any not met: exit 3.",
    show_default=False)]

Tracker = Annotated[Optional[list[str]], typer.Option(
    "--tracker", help="Also stream the history, config and final metrics to an experiment tracker as the run goes: "
                      "tensorboard (event files in the run's tb/), mlflow (--tracker-uri) or wandb (offline unless "
                      "logged in); repeatable. Default: $NLAB_TRACKER (a comma list). Each needs its extra, e.g. "
                      "pip install 'nlab[mlflow]'.", show_default=False)]
TrackerUri = Annotated[Optional[str], typer.Option(
    "--tracker-uri", help="MLflow tracking URI (default: sqlite:///logs/mlflow.db under NLAB_HOME).",
    show_default=False)]


def opt(help: str, panel: str | None = None, *names: str, **kw) -> typer.Option:
    """A command option with its help text and its panel in `--help` (and its flag names where they differ)."""
    return typer.Option(*names, help=help, rich_help_panel=panel, **kw)


def _print_error(message: str, hint: str | None = None) -> None:
    from rich.markup import escape

    from phases.core.render import console

    console().print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)  # one line per message: greppable
    if hint:
        console().print(f"  [bold]fix:[/bold] {escape(hint)}", soft_wrap=True)


def execute(fn: Callable[..., dict], *args: Any, json_out: bool = False, expect: list[str] | None = None,
            phase: str | None = None, **kwargs: Any) -> dict:
    """Call a phase function the way every command does: NlabError -> its exit code with a message naming
    what is wrong, Ctrl-C -> exit 1, and with --json the result as one JSON object on stdout. Anything else
    is a bug and keeps its traceback (exit 1). `expect`: gates on the result (phases/core/gates.py), checked for
    form (and, given the `phase`, metric names) before the run, judged after it, kept in the phase's run folder
    (expectations.json); any not met is exit 3."""
    from phases.core import gates as gate
    from phases.core.errors import NlabError
    from phases.core.jsonio import dumps

    try:
        gates = gate.parse_gates(expect or [])
        if gates and phase:
            gate.check_names(gates, phase)
        result = fn(*args, **kwargs)
    except NlabError as e:
        _print_error(e.message, e.hint)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        _print_error("interrupted")
        raise typer.Exit(1) from None
    missed = False
    if gates:
        result["expectations"] = judged = gate.judge(gates, result)
        gate.render(judged)
        if phase and result.get("run_dir") and Path(result["run_dir"]).is_dir():  # the new run keeps its verdicts
            from phases.core.jsonio import atomic_write_json

            atomic_write_json(Path(result["run_dir"]) / "expectations.json", judged)
        missed = any(g["verdict"] != "met" for g in judged)
    if json_out:
        sys.stdout.write(dumps(result) + "\n")
        sys.stdout.flush()
    if missed:
        raise typer.Exit(3)
    return result


def given_options(ctx: typer.Context) -> set[str]:
    """The parameters given on the command line, not left at their defaults (what a --resume may override)."""
    return {p for p in ctx.params
            if getattr(ctx.get_parameter_source(p), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")}


def bad_usage(message: str, hint: str | None = None) -> typer.Exit:
    """For checks made in the CLI layer itself: print and return the exit to raise."""
    _print_error(message, hint)
    return typer.Exit(2)


def read_stdin_json() -> list[dict]:
    """JSON objects piped in by an earlier command (`nlab ... --json | nlab ... -`): one object, a list of
    objects, or one object per line."""
    text = sys.stdin.read()
    if not text.strip():
        raise bad_usage("'-' was given but stdin is empty",
                        "pipe the --json output of another nlab command, e.g. nlab train-moe --json | ...")
    try:
        obj = json.loads(text)
        objs = obj if isinstance(obj, list) else [obj]
    except json.JSONDecodeError:
        try:
            objs = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise bad_usage(f"stdin: line {e.lineno}: not JSON ({e.msg})",
                            "pipe the --json output of an nlab command") from None
    if not all(isinstance(o, dict) for o in objs):
        raise bad_usage("stdin: expected JSON objects", "pipe the --json output of an nlab command")
    return objs


def expand_stdin_runs(paths: list[str]) -> list[str]:
    """Replace `-` by the run folders named in JSON on stdin (`run_dir` keys)."""
    if "-" not in paths:
        return paths
    runs = []
    for obj in read_stdin_json():
        if "run_dir" not in obj:
            raise bad_usage("stdin: a JSON object has no 'run_dir'", "pipe the --json output of an nlab command")
        runs.append(str(obj["run_dir"]))
    out: list[str] = []
    for p in paths:
        out.extend(runs if p == "-" else [p])
    return out

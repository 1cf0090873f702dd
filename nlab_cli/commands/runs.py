"""nlab runs: the run folders as a lab notebook (list, show, diff, compare, gc). A command group; the work is in
phases/notebook/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nlab_cli.common import Json, TrackerUri, execute, expand_stdin_runs
from phases.notebook.config import ExportConfig, GcConfig, ListConfig, PairConfig, ReportConfig, ShowConfig

app = typer.Typer(
    name="runs", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="The run folders as a lab notebook: list (filter, total compute), show, diff, compare (the paired test "
         "for the phase), report (Markdown/HTML), export (to MLflow or TensorBoard) and gc. Reads logs/ under "
         "NLAB_HOME, or the folders given; writes nothing but report's file, export's target and gc --yes.")
Runs = Annotated[list[str], typer.Argument(help="Run folders or run ids under logs/ ('-' reads run_dir from --json "
                                                "on stdin).", show_default=False)]

Dirs = Annotated[Optional[list[str]], typer.Argument(
    help="Folders searched recursively for run folders (default: logs/ under NLAB_HOME).", show_default=False)]
RunA = Annotated[str, typer.Argument(help="Run A: a run folder, or its run id under logs/.", show_default=False)]
RunB = Annotated[str, typer.Argument(help="Run B: a run folder, or its run id under logs/.", show_default=False)]


@app.command("list")
def list_runs(
    dirs: Dirs = None,
    phase: Annotated[Optional[str], typer.Option(help="Only runs of this phase (e.g. train-moe).",
                                                 show_default=False)] = None,
    status: Annotated[Optional[str], typer.Option(help="Only runs with this status: completed, failed, running "
                                                       "or stopped (killed).", show_default=False)] = None,
    where: Annotated[Optional[list[str]], typer.Option(
        help="KEY=VALUE, KEY!=VALUE, KEY>VALUE, KEY>=VALUE, KEY<VALUE, KEY<=VALUE over config.json options or "
             "metrics.json metrics, e.g. 'lr=0.004' or 'test_acc>0.9'; repeatable (all must hold).",
        show_default=False)] = None,
    since: Annotated[Optional[str], typer.Option(help="Only runs started on or after this date (YYYY-MM-DD, or an "
                                                      "ISO time).", show_default=False)] = None,
    sum_: Annotated[Optional[str], typer.Option("--sum", help="Print the total of wall_time (compute accounting) "
                                                              "or of a numeric metric over the listed runs.",
                                                show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the list as JSON on stdout (one object per "
                                                          "run, with run_dir) instead of the table.")] = False,
) -> None:
    """A table of the runs: id, phase, status, primary metric with its 95% interval and n, wall time, key options."""
    from phases.notebook import listing

    config = ListConfig(dirs=dirs or [], phase=phase, status=status, where=where or [], since=since, sum=sum_,
                        table=not json_out)
    execute(lambda c: listing.run(c)["runs"], config, json_out=json_out)


@app.command("show")
def show(run: RunA, json_out: Json = False) -> None:
    """One run: status, exit reason and environment, its config, its metrics (headline first), its files."""
    from phases.notebook import inspect

    execute(inspect.show, ShowConfig(run), json_out=json_out)


@app.command("check")
def check(
    run: RunA,
    expect: Annotated[list[str], typer.Option(
        "--expect", help="A go/no-go gate on the run's metrics, e.g. 'test_acc>=0.95' (repeatable); any not met "
                         "(missed, or its 95% interval straddling the threshold): exit 3.", show_default=False)],
    json_out: Json = False,
) -> None:
    """Judge a finished run against go/no-go gates: each printed met, missed or inconclusive; exit 3 unless all met."""
    from phases.notebook import inspect

    execute(inspect.metrics_of, ShowConfig(run), json_out=json_out, expect=expect)


@app.command("diff")
def diff(run_a: RunA, run_b: RunB, json_out: Json = False) -> None:
    """The options that differ between two runs, then every scalar metric side by side with B - A."""
    from phases.notebook import inspect

    execute(inspect.diff, PairConfig(run_a, run_b), json_out=json_out)


@app.command("compare")
def compare(run_a: RunA, run_b: RunB, json_out: Json = False) -> None:
    """The paired test for the phase: McNemar and a paired bootstrap on the items both runs predicted, or a paired
    bootstrap on apoptosis's validation block losses."""
    from phases.notebook import compare as comparison

    execute(comparison.compare, PairConfig(run_a, run_b), json_out=json_out)


@app.command("gc")
def gc(
    dirs: Dirs = None,
    yes: Annotated[bool, typer.Option("--yes", help="Delete the listed runs and their checkpoint folders (a run "
                                                    "whose lock is held is never deleted).")] = False,
    json_out: Json = False,
) -> None:
    """Failed and stopped runs (not completed, lock not held) with their checkpoints and sizes; --yes deletes."""
    from phases.notebook import gc as collect

    execute(collect.gc, GcConfig(dirs=dirs or [], yes=yes), json_out=json_out)


@app.command("report")
def report(
    runs: Runs,
    out: Annotated[Path, typer.Option("--out", help="The Markdown report; the runs' plots are copied into "
                                                    "<name>_files/ beside it.")] = Path("report.md"),
    all_options: Annotated[bool, typer.Option("--all-options", help="Every option of each run, not only those "
                                                                    "that differ from the phase's defaults.")] = False,
    html: Annotated[bool, typer.Option("--html", help="Also write <name>.html (needs pip install "
                                                      "'nlab[report]').")] = False,
    title: Annotated[Optional[str], typer.Option(help="The report's title.", show_default=False)] = None,
    json_out: Json = False,
) -> None:
    """A Markdown lab report: each run's config, headline metrics with 95% intervals and n, analyze-history's
    findings, its plots, and the paired comparison of every two runs of one phase."""
    from phases.notebook import report as reporting

    config = ReportConfig(runs=expand_stdin_runs(runs), out=str(out), all_options=all_options, html=html,
                          title=title)
    execute(reporting.report, config, json_out=json_out)


@app.command("export")
def export(
    runs: Runs,
    to: Annotated[str, typer.Option("--to", help="mlflow (the store of --tracker-uri) or tensorboard (event files "
                                                 "under --logdir).")] = "mlflow",
    tracker_uri: TrackerUri = None,
    logdir: Annotated[Optional[Path], typer.Option(
        "--logdir", help="TensorBoard: the folder of one run's event files (default: "
                         "logs/tensorboard/<phase>/<run_id>).", show_default=False)] = None,
    json_out: Json = False,
) -> None:
    """Send finished runs to MLflow or TensorBoard after the fact: config, every history point, final metrics
    (a run already there is skipped)."""
    from phases.notebook import export as exporting

    config = ExportConfig(runs=expand_stdin_runs(runs), to=to, tracker_uri=tracker_uri,
                          logdir=str(logdir) if logdir else None)
    execute(exporting.export, config, json_out=json_out)

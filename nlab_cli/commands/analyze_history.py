"""nlab analyze-history: stage-wise loss spikes, stagnation, forgetting and overfitting, with a plot."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from nlab_cli.common import Expect, Json, Name, Out, execute, expand_stdin_runs
from phases.history.config import HistoryConfig, Thresholds

_T = Thresholds()


def analyze_history(
    paths: Annotated[list[str], typer.Argument(
        help="Run folders, history.jsonl files or Lightning metrics.csv files; '-' reads run folders from the "
             "--json output of another nlab command on stdin.", show_default=False)],
    window: Annotated[int, typer.Option(help="Logged points on each side of a stage boundary for the spike "
                                             "factor.")] = _T.window,
    spike_threshold: Annotated[float, typer.Option(help="Spike factor at which a boundary counts as a "
                                                        "spike.")] = _T.spike_threshold,
    stagnation_tol: Annotated[float, typer.Option(help="A stage is stagnant when its loss trend changes the "
                                                       "loss by less than this fraction over its second "
                                                       "half.")] = _T.stagnation_tol,
    patience: Annotated[int, typer.Option(help="Validation evaluations without improvement (the last worse) "
                                               "while training loss falls that make overfitting.")] = _T.patience,
    forgetting_threshold: Annotated[float, typer.Option(help="Relative drop from a task's best value that counts "
                                                             "as forgetting.")] = _T.forgetting_threshold,
    loss_metric: Annotated[str, typer.Option(help="The metric that is the loss.")] = _T.loss_metric,
    val_split: Annotated[str, typer.Option(help="The split holding validation evaluations.")] = _T.val_split,
    val_metric: Annotated[Optional[str], typer.Option(help="Validation metric for best step and overfitting "
                                                           "(default: the metric the run selected on, e.g. train-lora's acc, else the loss when logged).",
                                                      show_default=False)] = None,
    skip_bad_lines: Annotated[bool, typer.Option(help="Skip (and count) malformed lines instead of "
                                                      "stopping.")] = False,
    plot: Annotated[bool, typer.Option(help="Draw history.png in the run folder.")] = True,
    out: Out = None,
    name: Name = None,
    json_out: Json = False,
    expect: Expect = None,
) -> None:
    """Find loss spikes at stage boundaries, stagnation, overfitting and forgetting in training histories."""
    from phases import history

    config = HistoryConfig(
        inputs=expand_stdin_runs(paths),
        thresholds=Thresholds(loss_metric, val_split, val_metric, window, spike_threshold, stagnation_tol, patience,
                              forgetting_threshold),
        skip_bad_lines=skip_bad_lines, plot=plot, out=str(out) if out else None, name=name)
    execute(history.run, config, json_out=json_out, expect=expect, phase="analyze-history")

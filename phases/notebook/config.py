"""Options of the `nlab runs` subcommands. Strings and lists only: importing this costs nothing."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ListConfig:
    dirs: list[str] = field(default_factory=list)  # folders searched recursively (default: logs/ under NLAB_HOME)
    phase: str | None = None
    status: str | None = None  # completed, failed, running or stopped
    where: list[str] = field(default_factory=list)  # `key=value`, `key>value`, ... over config or metrics
    since: str | None = None  # runs started on or after this date (ISO)
    sum: str | None = None  # a numeric field totalled over the listed runs (`wall_time`, or a metric)
    table: bool = True  # the table on stderr (off with --json: the list goes to stdout instead)


@dataclass
class ShowConfig:
    run: str


@dataclass
class PairConfig:
    """`runs diff` and `runs compare`: run A against run B."""

    run_a: str
    run_b: str


@dataclass
class GcConfig:
    dirs: list[str] = field(default_factory=list)
    yes: bool = False  # delete; without it, only list


@dataclass
class ReportConfig:
    runs: list[str] = field(default_factory=list)  # run folders or run ids
    out: str = "report.md"  # the Markdown file; plots go to <stem>_files/ beside it
    all_options: bool = False  # every option, not only those that differ from the phase's defaults
    html: bool = False  # also <stem>.html, rendered with the markdown library
    title: str | None = None


@dataclass
class ExportConfig:
    runs: list[str] = field(default_factory=list)
    to: str = "mlflow"  # mlflow, tensorboard or wandb
    tracker_uri: str | None = None  # mlflow: the store (default: sqlite under logs/)
    logdir: str | None = None  # tensorboard: where the event files go (default: logs/tensorboard/<phase>/<run_id>)

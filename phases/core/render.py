"""Human output, always on stderr (stdout carries data only): metric tables, plain-word findings, progress bars.

Progress bars show only on a terminal; in pipes, files and CI they stay quiet."""

from __future__ import annotations

import math
import os
import sys
import time
from functools import lru_cache
from typing import Any, Iterable, Sequence


@lru_cache(maxsize=1)
def console():
    from rich.console import Console

    # wide enough for tables when stderr is a file or pipe (rich would fall back to 80 columns)
    width = None if sys.stderr.isatty() else int(os.environ.get("COLUMNS", 120))
    return Console(stderr=True, width=width, highlight=False)


def fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.{digits - 1}e}"
        s = f"{value:.{digits}f}"
        return s.rstrip("0").rstrip(".") if "." in s else s
    if isinstance(value, (list, tuple)):
        inner = ", ".join(fmt(v, 3) for v in value[:12])
        return f"[{inner}{', ...' if len(value) > 12 else ''}]"
    return str(value)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left", header_style="bold")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*[fmt(v) for v in row])
    console().print(t)


def render_metrics(metrics: dict, title: str, keys: Sequence[str] | None = None) -> None:
    """A two-column table of the scalar metrics (the headline metric first, in bold)."""
    primary = metrics.get("primary")
    keys = list(keys) if keys is not None else [
        k for k, v in metrics.items() if k not in ("primary", "phase") and not isinstance(v, dict)]
    if primary in keys:
        keys.remove(primary)
        keys.insert(0, primary)
    rows = [(f"[bold]{k}[/bold]" if k == primary else k, metrics[k]) for k in keys if k in metrics]
    table(title, ["metric", "value"], rows)


def say(message: str, style: str | None = None, markup: bool = True) -> None:
    console().print(message, style=style, markup=markup, soft_wrap=True)


def warn(message: str) -> None:
    console().print(f"[yellow]warning:[/yellow] {message}", soft_wrap=True)


def show_progress() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI") and not os.environ.get("NLAB_NO_PROGRESS")


class progress:
    """`with progress(total, "training") as p: ... p.advance()` - a rich bar with steps, items/s and ETA on
    a terminal; silent elsewhere. `p.note(text)` updates the text after the bar (current loss, say)."""

    def __init__(self, total: int | None, description: str, unit: str = "it"):
        self.total, self.description, self.unit = total, description, unit
        self._bar = None
        self.start = time.perf_counter()

    def __enter__(self) -> "progress":
        if show_progress():
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[note]}"), console=console(), transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, rate="", note="")
        return self

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            task = self._bar.tasks[0]
            elapsed = max(time.perf_counter() - self.start, 1e-9)
            rate = f"{(task.completed + n) / elapsed:.1f} {self.unit}/s"
            self._bar.update(self._task, advance=n, rate=rate)

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, note=text)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

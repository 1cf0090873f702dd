"""Reading training histories: nlab run folders, `history.jsonl` files and Lightning-style `metrics.csv` files,
all normalised to one list of points `{step, split, stage, task, metrics}`."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from phases.core.errors import InputError
from phases.core.jsonio import iter_jsonl_numbered

RESERVED = {"step", "split", "stage", "task", "epoch", "time", "timestamp", "wall_time"}
_SPLIT_PREFIX = re.compile(r"^(train|training|val|valid|validation|test|eval)[_/](.+)$")
_SPLIT_ALIASES = {"training": "train", "valid": "val", "validation": "val"}
BAD_LINE_HINT = "fix or delete that line, or pass --skip-bad-lines to skip and count such lines"


@dataclass
class Point:
    step: int
    split: str
    stage: str | None
    task: str | None  # the data an evaluation was taken on (an earlier stage's, for forgetting)
    metrics: dict[str, float]


@dataclass
class History:
    name: str
    source: Path
    points: list[Point]
    bad_lines: list[int] = field(default_factory=list)

    def stages(self) -> list[str | None]:
        """Stage names in order of first appearance (by step); [None] for a history without stages."""
        seen: list[str | None] = []
        for p in sorted(self.points, key=lambda p: p.step):
            if p.stage not in seen:
                seen.append(p.stage)
        return seen

    def metric_names(self) -> list[str]:
        return sorted({m for p in self.points for m in p.metrics})


def _number(value, key: str) -> float | None:
    """A metric value: numbers pass, null is 'not logged', anything non-finite is bad input."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"non-finite value {value!r} for {key!r}")
        return float(value)
    return None  # strings, lists, dicts: not a metric


def _bad(path: Path, line: int, why: str, skip: bool, bad: list[int]) -> None:
    if skip:
        bad.append(line)
        return
    raise InputError(f"{path}:{line}: {why}", BAD_LINE_HINT)


def read_history_jsonl(path: Path, skip_bad_lines: bool = False) -> History:
    bad: list[int] = []
    points = []
    for line_no, rec in iter_jsonl_numbered(path, skip_bad_lines=skip_bad_lines, bad=bad, hint=BAD_LINE_HINT):
        step = rec.get("step")
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step):
            _bad(path, line_no, f"'step' must be a number, got {step!r}", skip_bad_lines, bad)
            continue
        try:
            metrics = {k: v for k, v in ((k, _number(v, k)) for k, v in rec.items() if k not in RESERVED)
                       if v is not None}
        except ValueError as e:
            _bad(path, line_no, str(e), skip_bad_lines, bad)
            continue
        if metrics:
            points.append(Point(int(step), str(rec.get("split") or "train"), _opt_str(rec.get("stage")),
                                _opt_str(rec.get("task")), metrics))
    return History(_name(path), path, points, sorted(bad))


def _opt_str(v) -> str | None:
    return None if v is None else str(v)


def _split_column(col: str) -> tuple[str, str]:
    """Lightning column names: `train_loss`, `val/acc`, `val_loss_epoch`, `train_loss_step` -> (split, metric)."""
    m = _SPLIT_PREFIX.match(col)
    split, metric = (m.group(1), m.group(2)) if m else ("train", col)
    if metric.endswith("_step"):
        metric = metric[: -len("_step")]
    return _SPLIT_ALIASES.get(split, split), metric


def read_metrics_csv(path: Path, skip_bad_lines: bool = False) -> History:
    """Lightning's CSVLogger `metrics.csv`: a `step` (and usually `epoch`) column, one column per logged metric,
    blank where a metric was not logged on that row. Columns are split by their prefix (train_/val_/test_)."""
    bad: list[int] = []
    points: list[Point] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise InputError(f"{path}: empty CSV file", "pass a metrics.csv with a header row and data rows")
        if "step" not in header and "epoch" not in header:
            raise InputError(f"{path}:1: CSV header has no 'step' or 'epoch' column",
                             "use Lightning's metrics.csv layout: step, epoch and one column per metric")
        step_col = "step" if "step" in header else "epoch"
        for line_no, row in enumerate(reader, start=2):
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                _bad(path, line_no, f"{len(row)} fields where the header has {len(header)}", skip_bad_lines, bad)
                continue
            rec = dict(zip(header, row))
            try:
                step = float(rec[step_col])
                if not math.isfinite(step):
                    raise ValueError
            except ValueError:
                _bad(path, line_no, f"'{step_col}' must be a number, got {rec[step_col]!r}", skip_bad_lines, bad)
                continue
            by_split: dict[str, dict[str, float]] = {}
            try:
                for col, cell in rec.items():
                    if col in RESERVED or not cell.strip():
                        continue
                    try:
                        value = float(cell)
                    except ValueError:
                        continue  # a text column is not a metric
                    if not math.isfinite(value):
                        raise ValueError(f"non-finite value {cell!r} for {col!r}")
                    split, metric = _split_column(col)
                    by_split.setdefault(split, {})[metric] = value
            except ValueError as e:
                _bad(path, line_no, str(e), skip_bad_lines, bad)
                continue
            points += [Point(int(step), split, None, None, m) for split, m in by_split.items()]
    return History(_name(path), path, points, sorted(bad))


def _name(path: Path) -> str:
    """A run folder's name, or the file's parent folder and name for a bare file."""
    if path.name in ("history.jsonl", "metrics.csv"):
        return path.parent.name or path.name
    return path.stem


def read_history(path: Path | str, skip_bad_lines: bool = False) -> History:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder",
                         "pass a run folder, a history.jsonl file or a Lightning metrics.csv")
    if path.is_dir():
        for candidate in ("history.jsonl", "metrics.csv"):
            if (path / candidate).is_file():
                return read_history(path / candidate, skip_bad_lines)
        raise InputError(f"{path}: folder holds no history.jsonl or metrics.csv",
                         "pass an nlab run folder (logs/<phase>/<run_id>) or the history file itself")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file", "pass a history with at least one logged point")
    if path.suffix.lower() == ".csv":
        hist = read_metrics_csv(path, skip_bad_lines)
    else:
        hist = read_history_jsonl(path, skip_bad_lines)
    if not hist.points:
        raise InputError(f"{path}: no numeric metric in any record",
                         "each record needs a 'step' and at least one numeric metric, e.g. "
                         '{"step": 10, "split": "train", "loss": 2.31}')
    return hist

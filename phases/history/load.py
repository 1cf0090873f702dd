"""Reading training histories: nlab run folders, `history.jsonl` files and Lightning-style `metrics.csv` files,
all normalised to one list of points `{step, split, stage, task, metrics}`."""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from phases.core.errors import InputError
from phases.core.jsonio import iter_jsonl_numbered, read_text

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
    # the validation metric the run chose its weights on, when its metrics.json says (train-lora: accuracy);
    # overfitting is judged on it unless --val-metric says otherwise
    selection_metric: str | None = None

    def stages(self) -> list[str | None]:
        """Stage names in order of first appearance (by step); [None] for a history without stages."""
        seen: list[str | None] = []
        for p in sorted(self.points, key=lambda p: p.step):
            if p.stage not in seen:
                seen.append(p.stage)
        return seen

    def metric_names(self) -> list[str]:
        return sorted({m for p in self.points for m in p.metrics})


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bad(path: Path, line: int, why: str, skip: bool, bad: list[int]) -> None:
    if skip:
        bad.append(line)
        return
    raise InputError(f"{path}:{line}: {why}", BAD_LINE_HINT)


def _metrics(values: dict, metric_keys: set[str], parse) -> dict[str, float]:
    """A record's metric values: the keys that hold a number somewhere in the file. Blank/null is 'not logged';
    a value that is not a finite number is bad input (ValueError naming the key)."""
    out = {}
    for key in metric_keys & set(values):
        raw = values[key]
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        value = parse(raw)
        if value is None or not math.isfinite(value):
            raise ValueError(f"{'non-finite' if value is not None else 'non-numeric'} value {raw!r} for {key!r}")
        out[key] = value
    return out


def _parse_row(path: Path, line_no: int, step_col: str, values: dict, metric_keys: set[str], parse, skip: bool,
               bad: list[int]) -> tuple[int, dict[str, float]] | None:
    """(step, metrics) of one record, or None for a bad line (raised, or skipped and counted with `skip`)."""
    step = parse(values.get(step_col))
    if step is None or not math.isfinite(step):
        _bad(path, line_no, f"'{step_col}' must be a number, got {values.get(step_col)!r}", skip, bad)
        return None
    try:
        return int(step), _metrics(values, metric_keys, parse)
    except ValueError as e:
        _bad(path, line_no, str(e), skip, bad)
        return None


def _json_number(raw) -> float | None:
    return float(raw) if _is_number(raw) else None


def read_history_jsonl(path: Path, skip_bad_lines: bool = False) -> History:
    bad: list[int] = []
    records = list(iter_jsonl_numbered(path, skip_bad_lines=skip_bad_lines, bad=bad, hint=BAD_LINE_HINT))
    # a metric is a key holding a number in some record: anything else there (text, NaN) is a bad line
    metric_keys = {k for _, rec in records for k, v in rec.items() if k not in RESERVED and _is_number(v)}
    points = []
    for line_no, rec in records:
        row = _parse_row(path, line_no, "step", rec, metric_keys, _json_number, skip_bad_lines, bad)
        if row is not None and row[1]:
            points.append(Point(row[0], str(rec.get("split") or "train"), _opt_str(rec.get("stage")),
                                _opt_str(rec.get("task")), row[1]))
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


def _csv_number(cell: str) -> float | None:
    try:
        return float(cell)
    except (TypeError, ValueError):
        return None


def read_metrics_csv(path: Path, skip_bad_lines: bool = False) -> History:
    """Lightning's CSVLogger `metrics.csv`: a `step` (and usually `epoch`) column, one column per logged metric,
    blank where a metric was not logged on that row. Columns are split by their prefix (train_/val_/test_)."""
    bad: list[int] = []
    points: list[Point] = []
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    header = next(reader, None)
    if not header:
        raise InputError(f"{path}: empty CSV file", "pass a metrics.csv with a header row and data rows")
    if "step" not in header and "epoch" not in header:
        raise InputError(f"{path}:1: CSV header has no 'step' or 'epoch' column",
                         "use Lightning's metrics.csv layout: step, epoch and one column per metric")
    step_col = "step" if "step" in header else "epoch"
    rows = []
    for line_no, row in enumerate(reader, start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            _bad(path, line_no, f"{len(row)} fields where the header has {len(header)}", skip_bad_lines, bad)
            continue
        rows.append((line_no, dict(zip(header, row))))
    # a metric is a column holding a number in some row: anything else in it (text, nan, inf) is a bad line
    metric_cols = {c for _, rec in rows for c, cell in rec.items()
                   if c not in RESERVED and _csv_number(cell) is not None}
    for line_no, rec in rows:
        row = _parse_row(path, line_no, step_col, rec, metric_cols, _csv_number, skip_bad_lines, bad)
        if row is None:
            continue
        by_split: dict[str, dict[str, float]] = {}
        for col, value in row[1].items():
            split, metric = _split_column(col)
            by_split.setdefault(split, {})[metric] = value
        points += [Point(row[0], split, None, None, m) for split, m in by_split.items()]
    return History(_name(path), path, points, sorted(bad))


def _name(path: Path) -> str:
    """A run folder's name, or the file's parent folder and name for a bare file."""
    if path.name in ("history.jsonl", "metrics.csv"):
        return path.parent.name or path.name
    return path.stem


def _selection_metric(run_dir: Path) -> str | None:
    """`selection_metric` of the run folder's metrics.json, when there is one (a finished nlab run)."""
    import json

    try:
        value = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")).get("selection_metric")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


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
        hist.selection_metric = _selection_metric(path.parent)
    if not hist.points:
        raise InputError(f"{path}: no numeric metric in any record",
                         "each record needs a 'step' and at least one numeric metric, e.g. "
                         '{"step": 10, "split": "train", "loss": 2.31}')
    return hist

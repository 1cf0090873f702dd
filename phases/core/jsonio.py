"""JSON files that survive a crash: atomic whole-file writes and flushed append-only JSONL.

Whole files (config, manifest, metrics) are written to a temporary file in the same folder and renamed over the
target, so a reader never sees half a file. JSONL files are appended one flushed line at a time; a run killed
mid-line leaves at most one partial last line, which `JsonlWriter` cuts off when it reopens the file."""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from phases.core.errors import InputError

NL = b"\n"


def to_jsonable(value: Any) -> Any:
    """Plain JSON types only: numpy/torch scalars become numbers, paths strings, non-finite floats null
    (JSON has no NaN; a metric that is undefined is written as null rather than as invalid JSON)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(value.tolist())
    if hasattr(value, "item"):
        return to_jsonable(value.item())
    return str(value)


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)


def atomic_write_text(path: Path | str, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, dumps(obj, indent=2) + "\n")


def atomic_write_jsonl(path: Path | str, records: Iterable[dict]) -> None:
    """A whole JSONL file at once (a file derived at the end of a run, or rewritten), atomically."""
    atomic_write_text(path, "".join(dumps(r) + "\n" for r in records))


def read_text(path: Path | str, what: str = "file") -> str:
    """The one way nlab reads a text file it is given (datasets, histories, predictions, templates, run records):
    as UTF-8. A missing file, a binary file (a NUL byte) or bytes that are not UTF-8 raise InputError naming the
    file and the line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{what} not found: {path}", "check the path") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})", "check the path and its permissions") from None
    nul = data.find(b"\0")
    if nul >= 0:
        raise InputError(f"{path}:{data.count(NL, 0, nul) + 1}: a binary file (NUL byte), not text",
                         "pass the text file itself (it may be damaged or of another kind)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}:{data.count(NL, 0, e.start) + 1}: not UTF-8 text (byte 0x{data[e.start]:02x})",
                         "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8), or fix that line") from None


def read_lines(path: Path | str, what: str = "file") -> list[str]:
    """A text file's lines (each with its newline, as `open().readlines()` gives them), read by `read_text`."""
    return io.StringIO(read_text(path, what), newline=None).readlines()


def read_json(path: Path | str, what: str = "JSON file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}", "check the path")
    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: malformed JSON ({e.msg})", "fix or remove the file") from None


def _cut_partial_tail(path: Path) -> None:
    """Drop a last line without its newline: the record a killed writer had in flight."""
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # walk back to the last newline (records are small; read in chunks from the end)
        pos, chunk = size, 65536
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            block = f.read(pos - start)
            nl = block.rfind(b"\n")
            if nl >= 0:
                f.truncate(start + nl + 1)
                return
            pos = start
        f.truncate(0)


class JsonlWriter:
    """Append-only JSONL: one record per line, flushed after every record."""

    def __init__(self, path: Path | str, on_write: Callable[[dict], None] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            _cut_partial_tail(self.path)
        self._f = open(self.path, "a", encoding="utf-8")
        self._on_write = on_write  # told of each record once it is on disk (a run's trackers)

    def write(self, record: dict) -> None:
        self._f.write(dumps(record) + "\n")
        self._f.flush()
        if self._on_write is not None:
            self._on_write(record)

    def write_many(self, records: Iterable[dict]) -> None:
        for r in records:
            self.write(r)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_jsonl_numbered(
    path: Path | str, skip_bad_lines: bool = False, bad: list | None = None, hint: str = "fix or delete that line"
) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each record of a JSONL file. A malformed line raises InputError naming file
    and line, unless `skip_bad_lines`, in which case it is skipped and its line number appended to `bad`.
    A partial last line (no trailing newline, unparsable) is the record a killed writer had in flight:
    it is always skipped."""
    path = Path(path)
    lines = read_lines(path)
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if i == len(lines) and not line.endswith("\n"):
                continue  # the record in flight when a writer was killed
            if skip_bad_lines:
                if bad is not None:
                    bad.append(i)
                continue
            raise InputError(f"{path}:{i}: malformed JSON line ({e})", hint) from None
        yield i, rec


def iter_jsonl(path: Path | str, **kwargs) -> Iterator[dict]:
    for _, rec in iter_jsonl_numbered(path, **kwargs):
        yield rec


def read_jsonl(path: Path | str, **kwargs) -> list[dict]:
    return list(iter_jsonl(path, **kwargs))


def truncate_jsonl(path: Path | str, through: int, key: str = "step") -> int:
    """Keep only the records whose `key` is at most `through` (records without it are kept), atomically: what a
    resumed run does to the records it logged after its checkpoint, before it logs them again. A missing file
    is left missing. Returns how many records were dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    records = read_jsonl(path)
    keep = [r for r in records if not isinstance(r.get(key), (int, float)) or r[key] <= through]
    if len(keep) != len(records):  # (a partial last line is cut when a JsonlWriter reopens the file)
        atomic_write_jsonl(path, keep)
    return len(records) - len(keep)

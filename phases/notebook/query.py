"""The filters of `nlab runs list`: `--where KEY<op>VALUE` over a run's options and metrics, `--since DATE`."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from phases.core.errors import InputError
from phases.core.expressions import OPS, parse

GRAMMAR = ("KEY=VALUE, KEY!=VALUE, KEY>VALUE, KEY>=VALUE, KEY<VALUE or KEY<=VALUE, where KEY is an option of "
           "config.json or a metric of metrics.json, e.g. --where 'lr=0.004' --where 'test_acc>0.9'")


def _number(v) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _text(v) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: str

    def holds(self, run: dict) -> bool:
        """A run without the key never matches; numbers compare as numbers (lr=0.004 matches 4e-3), anything else
        as text, where only = and != apply."""
        source = run["config"] if self.key in run["config"] else run["metrics"]
        if self.key not in source:
            return False
        actual = source[self.key]
        a, b = _number(actual), _number(self.value)
        if a is not None and b is not None:
            return OPS[self.op](a, b)
        if self.op in ("=", "!="):
            return OPS[self.op](_text(actual), self.value)
        return False


def parse_where(exprs: list[str]) -> list[Condition]:
    return [Condition(*parse(e, "--where", GRAMMAR)) for e in exprs]


def parse_since(text: str | None) -> _dt.datetime | None:
    """A date or ISO time; without a zone, local time (as the manifests' times are written)."""
    if text is None:
        return None
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--since {text!r}: not a date", "write YYYY-MM-DD or YYYY-MM-DDTHH:MM, e.g. "
                                                           "--since 2026-12-01") from None
    return t if t.tzinfo else t.astimezone()

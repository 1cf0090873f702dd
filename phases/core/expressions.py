"""The one small expression grammar of nlab's filters and gates: `KEY<op>VALUE` with op one of = != > >= < <=
(`nlab runs list --where 'lr=0.004'`, `--expect 'test_acc>=0.95'`)."""

from __future__ import annotations

import operator
import re

from phases.core.errors import InputError

_EXPR = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(!=|>=|<=|=|>|<)\s*(\S(?:.*\S)?)\s*$")
OPS = {"=": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def parse(expr: str, option: str, grammar: str) -> tuple[str, str, str]:
    """(key, op, value) of one expression; a malformed one is exit 2 showing the accepted `grammar`."""
    m = _EXPR.match(expr)
    if m is None:
        raise InputError(f"{option} {expr!r}: not an expression nlab understands", f"write {grammar}")
    return m.group(1), m.group(2), m.group(3)

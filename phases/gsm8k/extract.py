"""Answer extraction and matching, as lm-evaluation-harness's gsm8k task does it, plus a numeric comparison.

- strict: the first match of `#### (-?[0-9.,]+)` (the format GSM8K solutions end with);
- flexible: the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)` anywhere in the completion (the first non-empty group);
- no match: "[invalid]", which never equals a gold answer.
Before comparing, both sides lose `,`, `$`, everything up to a `#### ` and one trailing `.`, and are lowercased
(lm-eval's `regexes_to_ignore` and `ignore_case`). lm-eval then compares the strings; here two strings that
both parse as decimal numbers are compared as numbers (`18.00` equals `18`), and any other pair as strings.
`numeric_only` counts the matches that exist only because of that."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

INVALID = "[invalid]"
_IGNORE = (re.compile(","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))


@lru_cache(maxsize=16)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def extract(text: str, pattern: str, select: int) -> str:
    """lm-eval's regex filter: all matches, the `select`-th (0 first, -1 last); for alternation patterns the
    first non-empty group; stripped; INVALID when nothing matches."""
    matches = _compiled(pattern).findall(text)
    if not matches:
        return INVALID
    match = matches[select]
    if isinstance(match, tuple):
        match = next((m for m in match if m), "")
    return match.strip()


def extract_both(text: str, strict_regex: str, flexible_regex: str) -> tuple[str, str]:
    return extract(text, strict_regex, 0), extract(text, flexible_regex, -1)


def normalize(answer: str) -> str:
    for pattern in _IGNORE:
        answer = pattern.sub("", answer)
    return answer.lower()


def _number(s: str) -> Decimal | None:
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def string_match(prediction: str, gold: str) -> bool:
    """lm-eval's exact match after normalization."""
    return normalize(prediction) == normalize(gold)


def is_correct(prediction: str, gold: str) -> bool:
    if prediction == INVALID:
        return False
    p, g = normalize(prediction), normalize(gold)
    pn, gn = _number(p), _number(g)
    if pn is not None and gn is not None:
        return pn == gn
    return p == g


def canonical(prediction: str) -> str | None:
    """The answer a vote counts: equal numbers get one key (`18.00` and `18` vote together); None abstains."""
    if prediction == INVALID:
        return None
    p = normalize(prediction)
    n = _number(p)
    if n is None:
        return p or None
    return format(n.normalize(), "f") if n != 0 else "0"

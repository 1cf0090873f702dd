"""Answer extraction and matching, as lm-evaluation-harness's gsm8k task does it, plus a numeric comparison.

- strict: the first match of `#### (-?[0-9.,]+)` (the format GSM8K solutions end with);
- flexible: the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)` anywhere in the completion (the first non-empty group);
- no match: "[invalid]", which never equals a gold answer.
Matching is the project's one answer rule (phases/core/answers.py): both sides get lm-eval's normalisation
(drop `,`, `$`, everything up to `#### `, one trailing `.`; lowercase); lm-eval then compares the strings, the
rule compares two numbers by their exact decimal value (`18.00` equals `18`) and anything else as strings.
`numeric_only` counts the matches that exist only because of that."""

from __future__ import annotations

import re
from functools import lru_cache

from phases.core.answers import INVALID, canonical, normalize, same_answer

__all__ = ["INVALID", "canonical", "extract", "extract_both", "is_correct", "normalize", "string_match"]


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


def string_match(prediction: str, gold: str) -> bool:
    """lm-eval's exact match after normalization."""
    return normalize(prediction) == normalize(gold)


def is_correct(prediction: str, gold: str) -> bool:
    """The prediction equals the gold answer under the project's one rule (phases.core.answers)."""
    return same_answer(prediction, gold)

"""When two answers are the same answer, written once: eval-gsm8k scores and votes with it, ensemble-vote votes and
scores with it.

The rule (lm-eval's gsm8k normalisation, then an exact numeric comparison):
- an answer is turned into text and loses `,`, `$`, everything up to a `#### `, one trailing `.`, surrounding
  white space, and is lowercased (lm-eval's `regexes_to_ignore` and `ignore_case`); runs of white space inside it
  count as one space (text finals such as SCAN's `I_JUMP  I_WALK`, SST-2's `Positive`);
- two answers that both parse as finite decimal numbers are equal when their values are equal, exactly (Decimal,
  not float): "18", "18.0", "18.00", "$18" and 18 are one answer, "1,000" is "1000";
- any other pair is compared as the normalised text;
- None, INVALID (no answer was extracted) and an answer that normalises to nothing equal nothing, not even
  themselves.
`canonical` is the key that implements the rule (equal answers, equal keys), so votes can count with it.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

INVALID = "[invalid]"  # lm-eval's marker for "no answer found"
_IGNORE = (re.compile(","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))


def normalize(answer: str) -> str:
    """lm-eval's gsm8k normalisation: drop `,`, `$`, everything up to `#### ` and one trailing `.`; lowercase."""
    for pattern in _IGNORE:
        answer = pattern.sub("", answer)
    return answer.lower()


def number(text: str) -> Decimal | None:
    """The finite decimal value of a normalised answer, None when it is not a number."""
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def canonical(answer) -> str | None:
    """The answer's key under the rule: a number's plain decimal form ("18.00" -> "18", "-0" -> "0"), else the
    normalised text with its white space collapsed; None for no answer (None, INVALID, or nothing left after
    normalising)."""
    if answer is None or answer == INVALID:
        return None
    text = " ".join(normalize(str(answer)).split())
    if not text:
        return None
    n = number(text)
    if n is None:
        return text
    return format(n.normalize(), "f") if n != 0 else "0"


def same_answer(a, b) -> bool:
    """Whether two answers are equal under the rule (no answer is never equal to anything)."""
    key = canonical(a)
    return key is not None and key == canonical(b)

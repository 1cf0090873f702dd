"""Voting, written once: `ensemble-vote` combines runs with it and `eval-gsm8k --samples k` uses it for maj@k.

Hard majority vote over answers (GSM8K numbers, class labels) with a deterministic, documented tie-break, and
soft voting (mean of class probabilities) for classifiers. `None` is an abstention (no answer extracted)."""

from __future__ import annotations

from collections import Counter
from typing import Hashable, Sequence

TIE_BREAKS = ("best-member", "confidence", "first")


def majority_vote(answers: Sequence[Hashable | None], tie_break: str = "first",
                  member_rank: Sequence[int] | None = None,
                  confidences: Sequence[float | None] | None = None) -> tuple[Hashable | None, int]:
    """(winning answer, its votes). Abstentions (None) do not vote; all abstaining gives (None, 0).

    Ties between answers with the same number of votes are broken by:
    - `first`: the tied answer given by the earliest member (in the order given);
    - `best-member`: the tied answer given by the best-ranked member (`member_rank[i]`, 0 = best; for an
      ensemble, members ranked by their own accuracy or selection metric);
    - `confidence`: the tied answer with the highest summed confidence of its voters, then `first`.
    """
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"unknown tie-break {tie_break!r}; use one of {TIE_BREAKS}")
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0
    top = max(counts.values())
    tied = [a for a in counts if counts[a] == top]
    if len(tied) == 1:
        return tied[0], top
    voters = {a: [i for i, x in enumerate(answers) if x == a] for a in tied}
    if tie_break == "best-member":
        if member_rank is None:
            raise ValueError("tie-break best-member needs member_rank")
        return min(tied, key=lambda a: min(member_rank[i] for i in voters[a])), top
    if tie_break == "confidence":
        if confidences is None:
            raise ValueError("tie-break confidence needs confidences")
        conf = {a: sum(confidences[i] or 0.0 for i in voters[a]) for a in tied}
        best = max(conf.values())
        tied = [a for a in tied if conf[a] == best]
    return min(tied, key=lambda a: voters[a][0]), top


def soft_vote(probs: Sequence[Sequence[float]]) -> tuple[int, list[float]]:
    """(argmax class, mean probabilities) over members' probability vectors; ties go to the lowest class index."""
    n = len(probs)
    if n == 0:
        raise ValueError("soft vote over no members")
    k = len(probs[0])
    if any(len(p) != k for p in probs):
        raise ValueError("members' probability vectors differ in length")
    mean = [sum(p[c] for p in probs) / n for c in range(k)]
    return max(range(k), key=lambda c: (mean[c], -c)), mean

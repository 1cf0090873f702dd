"""What a backend is given and what it hands back: one problem with its prompt (Item), one set of completions
(Result). Backends differ in how they batch and where the model runs, never in these."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Protocol


@dataclass
class Item:
    id: int | str  # index of the problem in its split ("<dataset>:<index>" in a mix of datasets)
    question: str
    solution: str  # the gold worked solution (for --ppl)
    gold: str  # the gold final answer (after '####')
    shots: list[int]  # train-split indices of the shots in the prompt
    prompt: str | list[dict]  # completion text, or chat messages
    prompt_ids: list[int] | None = None  # tokenized prompt (transformers backend)
    dataset: str = "gsm8k"  # the registry name of its dataset


@dataclass
class Completion:
    text: str  # cut at the first stop string
    finish: str  # "eos", "stop" or "length"
    tokens: int | None  # generated tokens (None when a server does not say)


@dataclass
class Result:
    id: int | str
    greedy: Completion
    samples: list[Completion] = field(default_factory=list)
    prompt_tokens: int | None = None
    gen_seconds: float = 0.0  # this problem's share of the generation wall time
    gold_nll: float | None = None  # --ppl: summed negative log-likelihood of the gold solution
    gold_tokens: int | None = None


def cut_at_stop(text: str, stops) -> str:
    """Everything before the earliest stop string (lm-eval splits on each stop string in turn: the same)."""
    for s in stops:
        text = text.split(s)[0]
    return text


def sample_seed(seed: int, problem: int, sample: int) -> int:
    """A sample's own seed: the same problem and sample index give the same draw in any batch or run."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{problem}:{sample}".encode()).digest()[:8], "little") >> 1


class Backend(Protocol):
    identity: dict

    def run(self, items: list[Item], done: set[int], emit: Callable[[list[Result]], None]) -> None:
        """Produce a Result for every item whose id is not in `done`, passing them to `emit` as they finish."""

"""SST-2 and SCAN written as question/answer text, in GSM8K's shape (`MathProblem`: question, a short worked
answer ending in `#### FINAL`, and the final), so that eval-gsm8k evaluates and train-lora fine-tunes on them
exactly as on GSM8K. Built from the `sst2` and `scan` loaders; `{"train": [...], "test": [...]}` as `gsm8k` gives.

- `sst2-qa`: "What is the sentiment of this movie review: positive or negative?\\nReview: <sentence>" ->
  "The sentiment is positive.\\n#### positive". SST-2's test labels are not public: `test` is the dev split.
- `scan-qa`: "Translate this command into actions: <command>" -> "#### I_TURN_LEFT I_JUMP" (the simple split)."""

from __future__ import annotations

from pathlib import Path

from phases.core.data.gsm8k import MathProblem
from phases.core.data.scan import load_scan
from phases.core.data.sentences import load_sst2

SST2_QUESTION = "What is the sentiment of this movie review: positive or negative?\nReview: {sentence}"
SCAN_QUESTION = "Translate this command into actions: {command}"


def _problems(pairs) -> list[MathProblem]:
    """(question, worked answer, final) triples as MathProblems numbered from 0 in their split."""
    return [MathProblem(i, q, a, f) for i, (q, a, f) in enumerate(pairs)]


def load_sst2_qa(folder: Path) -> dict[str, list[MathProblem]]:
    data = load_sst2(folder)

    def split(sentences, labels):
        for sentence, y in zip(sentences, labels):
            label = data.classes[int(y)]
            yield (SST2_QUESTION.replace("{sentence}", sentence), f"The sentiment is {label}.\n#### {label}", label)

    return {"train": _problems(split(data.train_x, data.train_y)), "test": _problems(split(data.test_x, data.test_y))}


def load_scan_qa(folder: Path) -> dict[str, list[MathProblem]]:
    data = load_scan(folder)

    def split(pairs):
        for command, actions in pairs:
            yield SCAN_QUESTION.replace("{command}", command), f"#### {actions}", actions

    return {"train": _problems(split(data["simple_train"])), "test": _problems(split(data["simple_test"]))}

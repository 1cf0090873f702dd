"""`eval-gsm8k --export FILE`: a run's sampled (and greedy) solutions as training lines, the lab's Phase 29a
(sampled "borderline" solutions injected into a fine-tune).

One JSONL line per kept solution: `question`, `answer` (the completion, ending in `#### <final>`: the text before
the first strict match, or the whole completion when only the flexible extraction found an answer, then
`#### ` and the extracted final), `dataset`, `source_id` (the problem's id), `sample` (its index in the record's
`samples`; null for the greedy completion), `correct` (the final under the one answer rule), `temperature` (0 for
the greedy one), `model` and `adapter`. A completion with no answer at all cannot be a training line and is
counted as skipped. Written from predictions.jsonl at the end of a run (a resumed one too), atomically, so
`phases.core.data.gsm8k.read_gsm8k_jsonl` and `train-lora --train-file` read it back."""

from __future__ import annotations

import re

from phases.core.answers import INVALID, same_answer
from phases.gsm8k.items import Item
from phases.gsm8k.prompts import PromptSpec


def training_answer(completion: str, spec: PromptSpec) -> str | None:
    """The completion as a training answer ending in `#### <final>`, or None when no answer can be extracted."""
    from phases.gsm8k.extract import extract

    strict = re.search(spec.strict_regex, completion)
    if strict is not None:
        final, body = extract(completion, spec.strict_regex, 0), completion[:strict.start()]
    else:
        final, body = extract(completion, spec.flexible_regex, -1), completion
    if final == INVALID or not final:
        return None
    body = body.strip()
    return f"{body}\n#### {final}" if body else f"#### {final}"


def solution_lines(records: list[dict], items: dict, spec: PromptSpec, which: str, model: str,
                   adapter: str | None, temperature: float) -> tuple[list[dict], dict]:
    """The kept training lines of the records (greedy, then each sample, problem by problem) and the counts."""
    lines, counts = [], {"export_lines": 0, "export_correct": 0, "export_incorrect": 0, "export_skipped": 0}
    for rec in records:
        item: Item = items[rec["id"]]
        candidates = [(None, rec["completion"], 0.0)] + [(j, s["completion"], temperature)
                                                          for j, s in enumerate(rec.get("samples", []))]
        for sample, completion, temp in candidates:
            answer = training_answer(completion, spec)
            if answer is None:
                counts["export_skipped"] += 1
                continue
            correct = same_answer(answer.rsplit("####", 1)[1].strip(), item.gold)
            counts["export_correct" if correct else "export_incorrect"] += 1
            if which == "all" or (which == "correct") == correct:
                lines.append({"question": item.question, "answer": answer, "dataset": item.dataset,
                              "source_id": item.id, "sample": sample, "correct": correct, "temperature": temp,
                              "model": model, "adapter": adapter})
    counts["export_lines"] = len(lines)
    return lines, counts

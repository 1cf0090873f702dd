"""From completions to numbers: one prediction record per problem, running accuracies at each checkpoint, and
the final metrics, all computed from the records alone (so a resumed run's numbers come from the same place as
an uninterrupted one's)."""

from __future__ import annotations

import math

from phases.core.stats import wilson_interval
from phases.core.voting import majority_vote
from phases.gsm8k.extract import INVALID, canonical, extract_both, is_correct, string_match
from phases.gsm8k.items import Item, Result
from phases.gsm8k.prompts import EXTRACTIONS, PromptSpec


def _vote(answers: list[str], gold: str) -> dict:
    winner, votes = majority_vote([canonical(a) for a in answers], tie_break="first")
    return {"answer": winner, "votes": votes, "correct": winner is not None and is_correct(winner, gold)}


def record(item: Item, result: Result, spec: PromptSpec, split: str) -> dict:
    """The predictions.jsonl line of one problem."""
    strict, flexible = extract_both(result.greedy.text, spec.strict_regex, spec.flexible_regex)
    found = {"strict": strict, "flexible": flexible}
    # `prediction` is the answer as a vote counts it (ensemble-vote reads it): canonical, None when none was found
    rec = {"id": item.id, "dataset": item.dataset, "split": split, "target": item.gold,
           "prediction": canonical(found[spec.primary]), "correct": is_correct(found[spec.primary], item.gold),
           "strict": strict, "flexible": flexible,
           "strict_correct": is_correct(strict, item.gold), "flexible_correct": is_correct(flexible, item.gold),
           "completion": result.greedy.text, "finish": result.greedy.finish, "shots": item.shots,
           "prompt_tokens": result.prompt_tokens, "completion_tokens": result.greedy.tokens,
           "gen_seconds": result.gen_seconds}
    if result.samples:
        extracted = [extract_both(s.text, spec.strict_regex, spec.flexible_regex) for s in result.samples]
        rec["samples"] = [{"completion": s.text, "finish": s.finish, "tokens": s.tokens, "strict": e[0],
                           "flexible": e[1]} for s, e in zip(result.samples, extracted)]
        for k, ext in enumerate(EXTRACTIONS):
            vote = _vote([e[k] for e in extracted], item.gold)
            rec[f"{ext}_maj"], rec[f"{ext}_maj_votes"] = vote["answer"], vote["votes"]
            rec[f"{ext}_maj_correct"] = vote["correct"]
    if result.gold_nll is not None:
        rec["gold_nll"], rec["gold_tokens"] = result.gold_nll, result.gold_tokens
    return rec


def accuracy(flags) -> dict:
    """Accuracy of right/wrong outcomes with its 95% Wilson interval and counts."""
    flags = [bool(f) for f in flags]
    n, correct = len(flags), sum(flags)
    low, high = wilson_interval(correct, n)
    return {"acc": correct / n if n else float("nan"), "low": low, "high": high, "correct": correct, "n": n}


def accuracy_keys(prefix: str, flags) -> dict:
    """`<prefix>_acc`, `_acc_low`, `_acc_high`, `<prefix>_n_correct` and `<prefix>_n` of right/wrong outcomes."""
    a = accuracy(flags)
    return {f"{prefix}_acc": a["acc"], f"{prefix}_acc_low": a["low"], f"{prefix}_acc_high": a["high"],
            f"{prefix}_n_correct": a["correct"], f"{prefix}_n": a["n"]}


def _acc(records: list[dict], key: str) -> dict:
    return accuracy(r[key] for r in records)


def accuracies(records: list[dict]) -> dict:
    """Accuracy with its 95% Wilson interval for each extraction (and its majority vote, when sampled)."""
    out = {"n": len(records)}
    keys = [f"{ext}_correct" for ext in EXTRACTIONS]
    if records and "strict_maj_correct" in records[0]:
        keys += [f"{ext}_maj_correct" for ext in EXTRACTIONS]
    for key in keys:
        a = _acc(records, key)
        name = key.removesuffix("_correct") + "_acc"
        out.update({name: a["acc"], f"{name}_low": a["low"], f"{name}_high": a["high"],
                    key.removesuffix("_correct") + "_n_correct": a["correct"]})
    return out


def checkpoint(step: int, records: list[dict], split: str, task: str, stage: str | None = None) -> dict:
    """A history.jsonl point: accuracies over the first `step` problems (dataset order); `stage` names the pass
    of a --route run (`<adapter>/<part>`), `task` the run's --dataset (analyze-history groups points by it)."""
    acc = accuracies(records)
    acc.pop("n")
    return {"step": step, "split": split, **({"stage": stage} if stage else {}), "task": task, "n": len(records),
            **acc}


def _total(records: list[dict], key: str) -> int | None:
    values = [r.get(key) for r in records]
    return None if any(v is None for v in values) else sum(values)


def summary(records: list[dict], spec: PromptSpec) -> dict:
    """The final numbers of a run (everything except its identity, which the phase adds)."""
    out = accuracies(records)
    for ext in EXTRACTIONS:
        out[f"{ext}_invalid"] = sum(r[ext] == INVALID for r in records)
        # matches that lm-eval's string comparison would not count (e.g. "18.00" for 18)
        out[f"{ext}_numeric_only"] = sum(r[f"{ext}_correct"] and not string_match(r[ext], r["target"])
                                         for r in records)
    out["finished_by_length"] = sum(r["finish"] == "length" for r in records)
    gen_seconds = sum(r["gen_seconds"] for r in records)
    tokens = _total(records, "completion_tokens")
    if tokens is not None and records and "samples" in records[0]:
        sampled = [s["tokens"] for r in records for s in r["samples"]]
        tokens = None if any(t is None for t in sampled) else tokens + sum(sampled)
    prompt_tokens = _total(records, "prompt_tokens")
    out.update({
        "prompt_tokens_mean": prompt_tokens / len(records) if prompt_tokens is not None and records else None,
        "completion_tokens": tokens,
        "gen_seconds": gen_seconds,
        "tokens_per_s": tokens / gen_seconds if tokens is not None and gen_seconds > 0 else None,
        "problems_per_min": 60 * len(records) / gen_seconds if gen_seconds > 0 else None,
    })
    if records and "gold_nll" in records[0]:
        nll, n_tok = sum(r["gold_nll"] for r in records), sum(r["gold_tokens"] for r in records)
        out.update({"gold_ppl": math.exp(nll / n_tok), "gold_nll_per_token": nll / n_tok, "gold_tokens": n_tok})
    return out

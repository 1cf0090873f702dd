"""The ensemble-vote phase: combine the predictions of several runs of one phase over the same items.

Members are ranked best first: by the sweep's selection metric with --from-sweep, else in the order given (the
ranking is never taken from the test items being voted on). Answers are compared by the project's one answer
rule (phases/core/answers.py: exact decimal value when both are numbers, so GSM8K's 18 equals 18.00 and $18, else
normalised text); the ensemble against its best member by phases/core/compare.py."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from phases import registry
from phases.core import render, stats
from phases.core.answers import canonical, same_answer
from phases.core.compare import paired_correctness
from phases.core.errors import InputError
from phases.core.jsonio import iter_jsonl_numbered
from phases.core.options import check_options
from phases.core.runs import Run, load_run_dir
from phases.core.voting import majority_vote, soft_vote
from phases.ensemble.config import EnsembleConfig

PHASE = "ensemble-vote"


def _members(c: EnsembleConfig) -> list[Path]:
    if c.from_sweep:
        sweep = load_run_dir(c.from_sweep)
        m = sweep["metrics"]
        info = registry.get(sweep["manifest"].get("phase"))
        # seed-sweep's top seeds, or sweep's: the seeds of its best configuration (the same keys)
        if info is None or info.kind != "sweep" or not m or "top_k" not in m:
            raise InputError(f"--from-sweep {c.from_sweep}: not a finished seed-sweep or sweep run folder",
                             "pass a folder printed as run_dir by `nlab seed-sweep` or `nlab sweep`")
        ranked = sorted(m["top_k"], key=lambda t: t["rank"])
        if len(ranked) < c.top_k:  # the sweep kept fewer: rank all its completed seeds the same way
            done = [s for s in m["seeds"] if s["status"] == "completed"]
            done.sort(key=lambda s: (-s["select"] if m["mode"] == "max" else s["select"], s["seed"]))
            ranked = [{"run_dir": s["run_dir"]} for s in done]
        return [Path(t["run_dir"]) for t in ranked[: c.top_k]] + [Path(r) for r in c.runs]
    return [Path(r) for r in c.runs]


def _load_predictions(run_dir: Path) -> dict[str, dict]:
    path = run_dir / "predictions.jsonl"
    if not path.is_file():
        raise InputError(f"{run_dir}: no predictions.jsonl", "ensemble runs of a phase that writes predictions")
    items: dict[str, dict] = {}
    for line, rec in iter_jsonl_numbered(path):
        if "id" not in rec or "target" not in rec or "prediction" not in rec:
            raise InputError(f"{path}:{line}: a prediction needs 'id', 'target' and 'prediction'",
                             "use a predictions.jsonl written by an nlab phase")
        if "probs" in rec and not _probabilities(rec["probs"]):
            raise InputError(f"{path}:{line}: 'probs' must be a list of probabilities (finite numbers in [0, 1]), "
                             f"got {rec['probs']!r}", "use a predictions.jsonl written by an nlab classifier phase")
        key = json.dumps(rec["id"], sort_keys=True)
        if key in items:
            raise InputError(f"{path}:{line}: duplicate id {rec['id']!r}", "each item may be predicted once per run")
        items[key] = rec
    if not items:
        raise InputError(f"{path}: no predictions", "ensemble finished runs")
    return items


def _probabilities(probs) -> bool:
    """Class probabilities a soft vote can average: a non-empty list of finite numbers in [0, 1] (a NaN would win
    every argmax it meets)."""
    return (isinstance(probs, list) and bool(probs)
            and all(isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1 for p in probs))


def _check(c: EnsembleConfig, members: list[Path]) -> None:
    check_options(c)  # each option's own range or choice (declared in the config); below, options together
    if len(members) < 2:
        raise InputError(f"{len(members)} run(s) given: a vote needs at least 2",
                         "pass two or more run folders, or --from-sweep SWEEP --top-k 3")
    if len({m.resolve() for m in members}) != len(members):
        raise InputError("the same run is given twice", "pass each run folder once")


def run(config: EnsembleConfig) -> dict:
    members = _members(config)
    _check(config, members)
    phases = {}
    for m in members:
        manifest = load_run_dir(m)["manifest"]
        phases[str(m)] = manifest.get("phase")
    if len(set(phases.values())) > 1:
        raise InputError("runs of different phases: " + ", ".join(f"{p} ({d})" for d, p in phases.items()),
                         "vote only over runs of one phase")
    preds = [_load_predictions(m) for m in members]
    ids = list(preds[0])
    for m, p in zip(members[1:], preds[1:]):
        if set(p) != set(ids):
            missing, extra = set(ids) - set(p), set(p) - set(ids)
            raise InputError(f"{m}: its predictions cover other items than {members[0]} ({len(missing)} missing, "
                             f"{len(extra)} extra; e.g. {sorted(missing or extra)[0]})",
                             "ensemble runs evaluated on the same items")
        for key in ids:
            if canonical(p[key]["target"]) != canonical(preds[0][key]["target"]):
                raise InputError(f"{m}: item {key} has target {p[key]['target']!r} but {members[0]} has "
                                 f"{preds[0][key]['target']!r}", "ensemble runs over the same data")
    if config.method == "soft" and not all("probs" in p[k] for p in preds for k in ids):
        raise InputError("--method soft needs class probabilities ('probs') in every prediction",
                         "use --method hard, or runs of a classifier phase")
    ranks = list(range(len(members)))
    records, member_correct, ens_correct = [], np.zeros((len(members), len(ids)), bool), np.zeros(len(ids), bool)
    for j, key in enumerate(ids):
        target = preds[0][key]["target"]
        answers = [p[key]["prediction"] for p in preds]
        rec = {"id": preds[0][key]["id"], "target": target, "member_predictions": answers}
        if config.method == "soft":
            winner, mean = soft_vote([p[key]["probs"] for p in preds])
            rec.update(prediction=winner, probs=mean)
        else:
            confidences = [_confidence(p[key]) for p in preds]
            if config.tie_break == "confidence" and any(c is None for c in confidences):
                raise InputError("--tie-break confidence needs 'probs' or 'confidence' in every prediction",
                                 "use --tie-break best-member or first")
            keys = [canonical(a) for a in answers]
            won, votes = majority_vote(keys, config.tie_break, member_rank=ranks, confidences=confidences)
            rec.update(prediction=None if won is None else answers[keys.index(won)], votes=votes)
        for i, a in enumerate(answers):
            member_correct[i, j] = same_answer(a, target)
        ens_correct[j] = same_answer(rec["prediction"], target)
        rec["correct"] = bool(ens_correct[j])
        records.append(rec)
    metrics = _metrics(members, member_correct, ens_correct, preds, ids, config)
    with Run.create(PHASE, {**asdict(config), "members": [str(m) for m in members]}, out=config.out,
                    name=config.name) as run_:
        for r in records:
            run_.predict(r)
        out = run_.write_metrics(metrics, primary="ensemble_acc")
    _render(out)
    return out


def _confidence(pred: dict) -> float | None:
    if isinstance(pred.get("confidence"), (int, float)):
        return float(pred["confidence"])
    probs, p = pred.get("probs"), pred.get("prediction")
    if isinstance(probs, list) and isinstance(p, int) and 0 <= p < len(probs):
        return float(probs[p])
    return None


def _metrics(members, member_correct, ens_correct, preds, ids, c: EnsembleConfig) -> dict:
    n = len(ids)
    accs = member_correct.mean(axis=1)
    best = int(np.argmax(accs))
    ens_acc = float(ens_correct.mean())
    low, high = stats.wilson_interval(int(ens_correct.sum()), n)
    vs_best = paired_correctness(dict(zip(ids, ens_correct)), dict(zip(ids, member_correct[best])),
                                 "the ensemble", "the best member")
    k = len(members)
    keys = [[canonical(p[i]["prediction"]) for i in ids] for p in preds]
    disagree = [[float(np.mean([a != b for a, b in zip(keys[x], keys[y])])) for y in range(k)] for x in range(k)]
    pairs = [disagree[x][y] for x in range(k) for y in range(x + 1, k)]
    return {
        "ensemble_acc": ens_acc, "ensemble_acc_low": low, "ensemble_acc_high": high, "n": n,
        "n_members": k, "method": c.method, "tie_break": c.tie_break if c.method == "hard" else None,
        "members": [{"rank": i + 1, "run_dir": str(m), "acc": float(accs[i])} for i, m in enumerate(members)],
        "best_member_acc": float(accs[best]), "best_member": str(members[best]),
        "mean_member_acc": float(accs.mean()),
        "oracle_acc": float(member_correct.any(axis=0).mean()),
        "mean_pairwise_disagreement": float(np.mean(pairs)), "pairwise_disagreement": disagree,
        "gain_over_best": vs_best["diff"], "gain_low": vs_best["diff_low"], "gain_high": vs_best["diff_high"],
        "only_ensemble_right": vs_best["only_a_right"], "only_best_right": vs_best["only_b_right"],
        "mcnemar_p": vs_best["mcnemar_p"], "gain_beyond_noise": vs_best["beyond_noise"],
        "verdict": vs_best["verdict"],
    }


def _render(m: dict) -> None:
    rows = [(f"member {x['rank']}", x["acc"], Path(x["run_dir"]).name) for x in m["members"]]
    rows += [("ensemble", m["ensemble_acc"], f"{m['method']} vote"), ("oracle (any member right)", m["oracle_acc"],
                                                                       "")]
    render.table(f"ensemble of {m['n_members']} runs on n={m['n']} items", ["", "accuracy", "run"], rows)
    noise = "beyond noise" if m["gain_beyond_noise"] else "within noise"
    render.say(f"gain over the best member: {m['gain_over_best']:+.4f} (95% paired bootstrap "
               f"{m['gain_low']:+.4f} to {m['gain_high']:+.4f}; McNemar exact p={m['mcnemar_p']:.3g} on "
               f"{m['only_ensemble_right']} vs {m['only_best_right']} discordant items): {noise}. "
               f"Mean pairwise disagreement {m['mean_pairwise_disagreement']:.3f}.")
    render.say(f"run folder: {m['run_dir']}")

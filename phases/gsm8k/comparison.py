"""`eval-gsm8k --compare RUN_A RUN_B`: which problems one run solves and the other does not, McNemar's exact
test on those discordant pairs (the verdict: p < ALPHA), the accuracy difference with a paired bootstrap interval,
and both accuracies at each checkpoint, on the problems both runs evaluated (phases/core/compare.py).

A run is an eval-gsm8k run folder or a train-lora one run with `--test-n`: its predictions.jsonl is the test
evaluation of the adapter it chose on validation, so two fine-tunes compare directly."""

from __future__ import annotations

from pathlib import Path

from phases.core import render
from phases.core.errors import InputError
from phases.core.options import check_options
from phases.core.jsonio import iter_jsonl
from phases.core.runs import Run, load_run_dir
from phases.core.compare import paired_correctness
from phases.core.stats import wilson_interval
from phases.gsm8k.config import CompareConfig
from phases.gsm8k.phase import PHASE as EVAL_PHASE
from phases.gsm8k.prompts import EXTRACTIONS

PHASE = "compare-gsm8k"
ALPHA = 0.05
LORA_PHASE = "train-lora"  # not imported: phases.lora builds on this package


def _load(path: str, which: str) -> dict:
    run = load_run_dir(path)
    phase = run["manifest"].get("phase")
    if phase not in (EVAL_PHASE, LORA_PHASE):
        raise InputError(f"--compare {path}: run {which} is a {phase!r} run, not eval-gsm8k or train-lora",
                         "pass two eval-gsm8k run folders, or train-lora run folders that ran --test-n")
    if run["config"].get("route"):
        raise InputError(f"--compare {path}: run {which} is a --route run (several adapters per problem)",
                         "compare runs of one model or adapter; a --route run's metrics hold its own comparison")
    preds = Path(path) / Run.PREDICTIONS
    if not preds.is_file():
        fix = ("rerun it with --test-n N (its chosen adapter on N test problems), or evaluate an adapter with "
               "eval-gsm8k --adapter" if phase == LORA_PHASE else "pass a run that evaluated problems")
        raise InputError(f"--compare {path}: run {which} has no predictions.jsonl", fix)
    run["records"] = {r["id"]: r for r in iter_jsonl(preds)}
    # a train-lora run's predictions are its test evaluation; each record names its split
    run["split"] = run["config"].get("split") or next((r.get("split") for r in run["records"].values()), None)
    return run


def _label(run: dict) -> str:
    c = run["config"]
    preset = (c.get("resolved") or {}).get("prompt", {}).get("name") or c.get("preset")
    if run["manifest"].get("phase") == LORA_PHASE:
        adapter = (run["metrics"] or {}).get("best_adapter")
    else:  # NAME=PATH or PATH; a path shortened to its run folder and step
        given = c.get("adapters") or []
        adapter = c.get("use_adapter") or (given[0] if len(given) == 1 else None)
        if adapter and "=" not in adapter:
            adapter = "/".join(Path(adapter).parts[-3:])
    tuned = f" + {adapter}" if adapter else ""
    return f"{Path(str(c.get('model', '?'))).name}{tuned} / {preset} ({run['dir'].name})"


def run(config: CompareConfig) -> dict:
    check_options(config)
    a, b = _load(config.run_a, "A"), _load(config.run_b, "B")
    split_a, split_b = a["split"], b["split"]
    if split_a != split_b:
        raise InputError(f"--compare: run A evaluated the {split_a} split and run B the {split_b} split",
                         "compare runs on the same split")
    common = sorted(set(a["records"]) & set(b["records"]))
    if not common:
        raise InputError("--compare: the two runs share no evaluated problem",
                         "compare runs on overlapping --n/--offset")
    k = config.checkpoint_every or a["config"].get("checkpoint_every") or 50
    if k < 1:
        raise InputError(f"--checkpoint-every {k}: must be at least 1", "use e.g. 50")
    ra, rb = a["records"], b["records"]
    metrics: dict = {"n": len(common), "only_in_a": len(set(ra) - set(rb)), "only_in_b": len(set(rb) - set(ra)),
                     "run_a": str(a["dir"]), "run_b": str(b["dir"]), "label_a": _label(a), "label_b": _label(b),
                     "split": split_a}
    pairs = []
    for ext in EXTRACTIONS:
        key = f"{ext}_correct"
        c = paired_correctness({i: ra[i][key] for i in common}, {i: rb[i][key] for i in common}, alpha=ALPHA)
        for side in ("a", "b"):
            correct = c["both_right"] + c[f"only_{side}_right"]
            low, high = wilson_interval(correct, len(common))
            metrics.update({f"{ext}_acc_{side}": correct / len(common), f"{ext}_acc_{side}_low": low,
                            f"{ext}_acc_{side}_high": high})
        metrics.update({f"{ext}_solved_only_by_a": c["only_a_right"], f"{ext}_solved_only_by_b": c["only_b_right"],
                        f"{ext}_solved_by_both": c["both_right"], f"{ext}_solved_by_neither": c["both_wrong"],
                        f"{ext}_mcnemar_p": c["mcnemar_p"], f"{ext}_beyond_noise": c["beyond_noise"],
                        f"{ext}_diff": c["diff"], f"{ext}_diff_low": c["diff_low"], f"{ext}_diff_high": c["diff_high"],
                        f"{ext}_verdict": c["verdict"],
                        f"{ext}_ids_only_a": c["ids_only_a_right"], f"{ext}_ids_only_b": c["ids_only_b_right"]})
    checkpoints, task = [], a["config"].get("dataset") or "gsm8k"
    for step in sorted({*range(k, len(common) + 1, k), len(common)}):
        ids = common[:step]
        point = {"step": step, "split": split_a, "task": task}
        for ext in EXTRACTIONS:
            point[f"{ext}_acc_a"] = sum(bool(ra[i][f"{ext}_correct"]) for i in ids) / step
            point[f"{ext}_acc_b"] = sum(bool(rb[i][f"{ext}_correct"]) for i in ids) / step
        checkpoints.append(point)
    metrics["checkpoints"] = checkpoints
    prim_a = a["metrics"].get("primary_extraction") if a["metrics"] else None
    prim_b = b["metrics"].get("primary_extraction") if b["metrics"] else None
    primary_ext = prim_a if prim_a and prim_a == prim_b else "strict"
    metrics["compared_on"] = primary_ext
    for i in common:
        pairs.append({"id": i, "target": ra[i]["target"], "a": ra[i]["prediction"], "b": rb[i]["prediction"],
                      **{f"{ext}_{side}": bool(r[i][f"{ext}_correct"]) for ext in EXTRACTIONS
                         for side, r in (("a", ra), ("b", rb))}})
    cfg = {"run_a": str(a["dir"].resolve()), "run_b": str(b["dir"].resolve()), "checkpoint_every": k,
           "out": config.out, "name": config.name}
    with Run.create(PHASE, cfg, out=config.out, name=config.name) as run_:
        for point in checkpoints:
            run_.log(point)
        run_.jsonl("pairs.jsonl").write_many(pairs)
        out = run_.write_metrics(metrics, primary=f"{primary_ext}_mcnemar_p")
    _render(out)
    return out


def _render(m: dict) -> None:
    render.say(f"A: {m['label_a']}\nB: {m['label_b']}", markup=False)
    rows = []
    for ext in EXTRACTIONS:
        verdict = "beyond noise" if m[f"{ext}_beyond_noise"] else "within noise"
        rows.append((ext, m[f"{ext}_acc_a"], m[f"{ext}_acc_b"], m[f"{ext}_solved_only_by_a"],
                     m[f"{ext}_solved_only_by_b"], m[f"{ext}_solved_by_both"], m[f"{ext}_solved_by_neither"],
                     m[f"{ext}_mcnemar_p"], verdict))
    render.table(f"A vs B on {m['n']} common {m['split']} problems (McNemar exact, alpha {ALPHA})",
                 ["extraction", "acc A", "acc B", "only A", "only B", "both", "neither", "p", "difference"], rows)
    render.table("accuracy at each checkpoint", ["n", "strict A", "strict B", "flexible A", "flexible B"],
                 [(p["step"], p["strict_acc_a"], p["strict_acc_b"], p["flexible_acc_a"], p["flexible_acc_b"])
                  for p in m["checkpoints"]])
    if m["only_in_a"] or m["only_in_b"]:
        render.warn(f"{m['only_in_a']} problem(s) only in A and {m['only_in_b']} only in B are left out")
    render.say(f"run folder: {m['run_dir']}")

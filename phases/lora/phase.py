"""The train-lora phase: check the options, read and format the data, load the model (eval-gsm8k's loading code)
with a fresh LoRA adapter, open (or resume) the run, train with evaluations, then choose the adapter on
validation accuracy, evaluate only that one (and the base model, on the same problems) on the test split when
--test-n is given, and write the metrics and the accuracy-against-steps plot."""

from __future__ import annotations

import shutil
from dataclasses import asdict

from phases.core import render
from phases.core.compare import paired_correctness
from phases.core.data import load
from phases.core.errors import InputError
from phases.core.jsonio import iter_jsonl
from phases.core.options import check_options
from phases.core.runs import Run
from phases.core.training import cut_records_after
from phases.gsm8k.items import Item
from phases.gsm8k.prompts import default_preset, parse_datasets, resolve_spec
from phases.lora import data
from phases.lora.config import TrainLoraConfig
from phases.lora.train import ADAPTERS, CHECKPOINT, VAL_PREDICTIONS, Validation, adapter_name, adapter_path, train

PHASE = "train-lora"
BASE_TEST_PREDICTIONS = "base_test_predictions.jsonl"  # the base model on the same test problems
PLOT = "accuracy_vs_steps.png"


def check(c: TrainLoraConfig) -> None:
    """Option checks that need no data or model."""
    check_options(c)
    if not c.targets:
        raise InputError("--target-modules is empty", "e.g. --target-modules q_proj,v_proj")
    parse_datasets(c.dataset)
    if "," in c.dataset:
        raise InputError(f"--dataset {c.dataset}: train-lora trains on one dataset",
                         "train one adapter per dataset (then route between them with eval-gsm8k --route)")
    if c.eval_every > c.max_steps:
        raise InputError(f"--eval-every {c.eval_every} is beyond --max-steps {c.max_steps}: only the base model and "
                         "the last step would be evaluated", f"use --eval-every {max(1, c.max_steps // 4)} or less")
    data.stages(c)  # --mix, --extra-ratio and --extra-file together


def preset_of(c: TrainLoraConfig) -> str:
    return c.preset or default_preset([c.dataset], chat=True)


def _test_problems(c: TrainLoraConfig) -> list:
    if not c.test_n:
        return []
    test = load(c.dataset, c.data_dir, option="--dataset")["test"]
    if c.test_n > len(test):
        raise InputError(f"--test-n {c.test_n}: the {c.dataset} test split has only {len(test)} problems",
                         f"use --test-n {len(test)} or less")
    return test[:c.test_n]


def run(config: TrainLoraConfig) -> dict:
    c = config
    check(c)
    spec = resolve_spec(preset_of(c), max_new_tokens=c.eval_max_new_tokens)
    problems = data.read_problems(c)
    test_problems = _test_problems(c)
    options = asdict(c)
    resumed = Run.open(PHASE, c, options, later=("resolved",)) if c.resume else None

    import torch

    from phases.core.device import device_name, prepare
    from phases.gsm8k.models import load_model, resolve_dtype, resolve_source
    from phases.lora.adapter import add_lora

    resolve_source(c.model)
    device = prepare(c.device, c.seed, c.deterministic)
    dtype = resolve_dtype(c.dtype, device)
    # the frozen base in the compute dtype (bf16 where native: autocast would otherwise cast every base weight at
    # every forward, as frozen weights are not in its cast cache); peft keeps the trained LoRA matrices in fp32
    loaded = load_model(c.model, dtype, device)
    torch.manual_seed(c.seed)  # LoRA's A matrices are drawn from the run's seed
    loaded.model = add_lora(loaded.model, c.targets, c.r, c.alpha, c.lora_dropout)
    tok = loaded.tokenizer

    train_shots = data.shots_for(spec, problems.train, len(problems.train), exclude_self=True)
    train_ex, too_long = data.encode_examples(tok, spec, problems.train, train_shots, "train", c.max_length)
    extra_shots = data.shots_for(spec, problems.train, len(problems.extra), exclude_self=False)
    extra_ex, extra_too_long = data.encode_examples(tok, spec, problems.extra, extra_shots, "extra", c.max_length)
    val_shots = data.shots_for(spec, problems.train, len(problems.val), exclude_self=False)
    val_ex, _ = data.encode_examples(tok, spec, problems.val, val_shots, "val", 10**9)
    val = Validation(data.val_items(spec, problems.val, val_shots), val_ex)
    plan = data.Plan(train_ex, extra_ex, data.stages(c), c.batch_size * c.grad_accum, c.seed, c.group_by_length)

    identity = {**loaded.identity, "trainable_parameters": sum(p.numel() for p in loaded.model.parameters()
                                                               if p.requires_grad)}
    full = {**options, "resolved": {"preset": spec.name, "prompt": spec.to_dict(), "model": identity, "dtype": dtype,
                                    "training_source": problems.source,
                                    "val_ids": [p.id for p in problems.val]}}
    if resumed:
        resumed.check_same_config(full, c.resume_may_differ)
    run_ = resumed or Run.open(PHASE, c, full)
    checkpoint = run_.load_checkpoint(CHECKPOINT, "its first evaluation (step 0)") if c.resume else None
    with run_:
        run_.set_device(str(device), device_name(device))
        if checkpoint is not None:  # what was logged after the checkpoint is done again
            cut_records_after(run_, checkpoint["step"], VAL_PREDICTIONS)
            run_.path(Run.PREDICTIONS).unlink(missing_ok=True)
            run_.path(BASE_TEST_PREDICTIONS).unlink(missing_ok=True)
        for tmp in (run_.checkpoint_dir / ADAPTERS).glob(".*.tmp"):  # a killed save's leftovers
            shutil.rmtree(tmp, ignore_errors=True)
        result = train(loaded, plan, val, c, spec, run_, device, dtype, checkpoint)
        evaluations = _evaluations(run_)
        best = _select(evaluations)
        metrics = {
            **_validation_metrics(run_, evaluations, best),
            **_test_metrics(run_, loaded, spec, test_problems, problems, best, c, device, dtype),
            "model": identity, "dtype": dtype, "device": str(device), "preset": spec.name,
            "training_source": problems.source, "train_examples": len(train_ex),
            "train_examples_too_long": too_long, "extra_examples": len(extra_ex),
            "extra_examples_too_long": extra_too_long, "extra_lines_about_val_problems": problems.extra_held_out,
            "stages": [asdict(s) for s in plan.stages],
            "steps": c.max_steps, "examples_per_step": c.batch_size * c.grad_accum,
            "train_seconds": result.train_seconds, "train_loss_last": result.last_loss,
            "tokens_per_s": result.tokens / result.train_seconds if result.train_seconds else None,
            "padding_share": 1 - result.tokens / result.padded if result.padded else None,
            # the history's overfitting check watches validation accuracy, the metric the adapter is chosen on
            "selection_metric": "acc",
            "adapters": ADAPTERS, "checkpoint": CHECKPOINT, "plot": _plot(evaluations, best, run_.path(PLOT)),
        }
        out = run_.write_metrics(metrics, primary="test_acc" if test_problems else "val_acc")
    _render(out)
    return out


# --- after training: selection, the step ablation, the test ----------------------------------------------------
def _evaluations(run_: Run) -> list[dict]:
    """Every validation evaluation of the run (history points), with its per-problem correctness."""
    points = [r for r in iter_jsonl(run_.path(Run.HISTORY)) if r.get("split") == "val"]
    correct: dict[int, dict] = {}
    for r in iter_jsonl(run_.path(VAL_PREDICTIONS)):
        correct.setdefault(r["step"], {})[r["id"]] = r["correct"]
    return [{**p, "correct": correct.get(p["step"], {})} for p in sorted(points, key=lambda p: p["step"])]


def _select(evaluations: list[dict]) -> dict:
    """The trained adapter with the best validation accuracy (ties: the earliest step); step 0, the base model, is
    the reference, not a candidate."""
    trained = [e for e in evaluations if e["step"] > 0] or evaluations
    return max(trained, key=lambda e: (e["acc"], -e["step"]))


def _validation_metrics(run_: Run, evaluations: list[dict], best: dict) -> dict:
    base = evaluations[0]
    rows = []
    for e in evaluations:  # the step ablation: every checkpoint on the same validation problems
        vs_best = paired_correctness(e["correct"], best["correct"], f"step {e['step']}", f"step {best['step']}")
        rows.append({k: e[k] for k in ("step", "loss", "ppl", "acc", "acc_low", "acc_high", "n", "strict_acc",
                                       "flexible_acc", "finished_by_length")}
                    | {"vs_best_p": vs_best["mcnemar_p"], "vs_best": vs_best["verdict"]})
    vs_base = paired_correctness(best["correct"], base["correct"], f"step {best['step']}", "base")
    return {
        "best_step": best["step"], "best_adapter": f"{ADAPTERS}/{adapter_name(best['step'])}",
        "val_acc": best["acc"], "val_acc_low": best["acc_low"], "val_acc_high": best["acc_high"], "val_n": best["n"],
        "val_loss": best["loss"], "val_ppl": best["ppl"], "val_strict_acc": best["strict_acc"],
        "val_flexible_acc": best["flexible_acc"],
        "val_base_acc": base["acc"], "val_best_vs_base": {k: v for k, v in vs_base.items() if not k.startswith("ids_")},
        "val_last_acc": evaluations[-1]["acc"], "val_last_step": evaluations[-1]["step"],
        "evaluations": rows,
    }


def _test_metrics(run_: Run, loaded, spec, test_problems, problems, best: dict, c, device, dtype) -> dict:
    """The chosen adapter, and the base model, on the first --test-n test problems: evaluated once, at the end."""
    if not test_problems:
        return {}
    from phases.lora.adapter import load_adapter_weights
    from phases.lora.evaluate import evaluate

    shots = data.shots_for(spec, problems.pool, len(test_problems), exclude_self=False)
    items = [Item(p.id, p.question, p.answer, p.final, [s.id for s in sh], data.prompt_of(spec, p, sh))
             for p, sh in zip(test_problems, shots)]
    examples, _ = data.encode_examples(loaded.tokenizer, spec, test_problems, shots, "test", 10**9)
    pad = loaded.tokenizer.pad_token_id
    load_adapter_weights(loaded.model, adapter_path(run_, best["step"]))
    point, records = evaluate(loaded, spec, items, examples, pad, device, dtype, c.eval_batch_size, "test")
    for r in records:
        run_.predict(r)
    with loaded.model.disable_adapter():
        base_point, base_records = evaluate(loaded, spec, items, examples, pad, device, dtype, c.eval_batch_size,
                                            "test")
    with run_.jsonl(BASE_TEST_PREDICTIONS) as f:
        f.write_many(base_records)
    vs = paired_correctness({r["id"]: r["correct"] for r in records}, {r["id"]: r["correct"] for r in base_records},
                            f"adapter (step {best['step']})", "base model")
    out = {f"test_{k}": point[k] for k in ("acc", "acc_low", "acc_high", "n", "loss", "ppl", "strict_acc",
                                            "strict_acc_low", "strict_acc_high", "flexible_acc", "flexible_acc_low",
                                            "flexible_acc_high")}
    out.update({f"base_test_{k}": base_point[k] for k in ("acc", "acc_low", "acc_high", "loss", "ppl")})
    out["test_vs_base"] = {k: v for k, v in vs.items() if not k.startswith("ids_")}
    return out


def _plot(evaluations: list[dict], best: dict, path) -> str | None:
    """Validation accuracy against steps with 95% Wilson intervals, the chosen step marked."""
    from phases.core.plots import pyplot, save

    plt = pyplot()
    steps = [e["step"] for e in evaluations]
    acc = [e["acc"] for e in evaluations]
    err = [[a - e["acc_low"] for a, e in zip(acc, evaluations)], [e["acc_high"] - a for a, e in zip(acc, evaluations)]]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.errorbar(steps, acc, yerr=err, marker="o", capsize=3, label="validation accuracy (95% Wilson)")
    ax.axvline(best["step"], color="grey", linestyle=":", label=f"chosen: step {best['step']}")
    ax2 = ax.twinx()
    ax2.plot(steps, [e["loss"] for e in evaluations], color="tab:orange", alpha=0.6, label="gold-solution loss")
    ax.set_xlabel("step")
    ax.set_ylabel(f"accuracy (n={evaluations[0]['n']})")
    ax2.set_ylabel("validation loss per answer token")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return save(fig, path).name


def _fmt_interval(m: dict, key: str) -> str:
    return f"{m[key]:.3f} [{m[key + '_low']:.3f}, {m[key + '_high']:.3f}]"


def _render(m: dict) -> None:
    rows = [(r["step"], f"{r['acc']:.3f}", f"[{r['acc_low']:.3f}, {r['acc_high']:.3f}]", f"{r['loss']:.3f}",
             f"{r['ppl']:.2f}", "chosen" if r["step"] == m["best_step"] else ("base" if r["step"] == 0 else ""))
            for r in m["evaluations"]]
    render.table(f"validation (n={m['val_n']}, carved from the training data)",
                 ["step", "accuracy", "95% Wilson", "loss", "ppl", ""], rows)
    facts = [("chosen adapter", m["best_adapter"]), ("vs the base model (validation)", m["val_best_vs_base"]["verdict"])]
    if "test_acc" in m:
        facts += [(f"test accuracy (n={m['test_n']})", _fmt_interval(m, "test_acc")),
                  ("base model, same test problems", _fmt_interval(m, "base_test_acc")),
                  ("adapter vs base (test)", m["test_vs_base"]["verdict"])]
    facts += [("tokens per second (training)", f"{m['tokens_per_s']:.0f}" if m["tokens_per_s"] else "-"),
              ("padding share", f"{m['padding_share']:.3f}" if m["padding_share"] is not None else "-"),
              ("last training loss", f"{m['train_loss_last']:.4f}" if m["train_loss_last"] is not None else "-")]
    render.table("train-lora", ["", "value"], facts)
    render.say(f"run folder: {m['run_dir']}  (plot: {m['plot']})")

"""The ewc phase: check the options, build the scenario (data first: nothing is written for a rejected run), run
every method on identical data and seed, compute the metrics once for all, and show one comparison table."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

from phases.core import render
from phases.core.device import device_name, prepare
from phases.core.errors import InputError
from phases.core.jsonio import read_json, read_jsonl
from phases.core.options import check_memory, check_options, not_one_of
from phases.core.runs import Run
from phases.ewc.config import (CURRICULUM_METHODS, CURRICULUM_SCENARIOS, GPT_METHODS, GPT_SCENARIOS, METHODS,
                               MODEL_SCENARIOS, EwcConfig)

PHASE = "ewc"


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise InputError(f"--method {text!r}: no method given", f"choose one or more of: {', '.join(METHODS)}")
    for m in methods:
        if m not in METHODS:
            raise not_one_of("--method", m, METHODS, "a comma-separated list of them, e.g. --method naive,ewc")
    if len(set(methods)) != len(methods):
        raise InputError(f"--method {text!r}: a method is named twice", "name each method once")
    return methods


def check(c: EwcConfig) -> list[str]:
    """Every option that can be checked without data; returns the methods."""
    check_options(c)  # each option's own range or choice (declared in the config); below, options together
    methods = parse_methods(c.methods)
    for m in methods:
        if m in CURRICULUM_METHODS and c.scenario not in CURRICULUM_SCENARIOS:
            raise InputError(f"--method {m} does not apply to --scenario {c.scenario}: it needs a base/modified "
                             f"curriculum ({', '.join(CURRICULUM_SCENARIOS)})",
                             f"use naive, ewc, l2 or replay here, or --scenario scan for {m}")
    for m in methods:
        if m in GPT_METHODS and c.scenario not in GPT_SCENARIOS:
            raise InputError(f"--method {m} does not apply to --scenario {c.scenario}: it turns over the MLP neurons "
                             f"of a GPT", f"use it with --scenario {' or '.join(GPT_SCENARIOS)}")
    if c.reconsolidate and c.scenario != "shakespeare-wikitext":
        raise InputError(f"--reconsolidate does not apply to --scenario {c.scenario}: it adds a third stage back on "
                         "Shakespeare after the shift to WikiText", "use it with --scenario shakespeare-wikitext")
    if c.model != "mlp" and c.scenario not in MODEL_SCENARIOS:
        raise InputError(f"--model {c.model} does not apply to --scenario {c.scenario} (it fixes its own model)",
                         f"--model chooses only in {', '.join(MODEL_SCENARIOS)}")
    if c.scenario in CURRICULUM_SCENARIOS:
        from phases.core.curriculum import parse_mix

        parse_mix(c.mix)
    check_memory(c)
    return methods


def _check_turnover(c: EwcConfig, methods: list[str], scn) -> None:
    steps = c.steps or scn.steps
    if "apoptosis" in methods and c.turnover_interval >= steps:
        raise InputError(f"--turnover-interval {c.turnover_interval} with {steps} steps per stage: no turnover event "
                         "would happen", f"use a --turnover-interval below {steps} (or more --steps)")


def _check_buffer(c: EwcConfig, methods: list[str], scn) -> None:
    if "replay" not in methods:
        return
    earlier = {st.task for st in scn.stages("replay")[:-1]}
    available = sum(scn.tasks[t].n_train for t in earlier)
    if c.buffer_size > available:
        raise InputError(f"--buffer-size {c.buffer_size} is larger than the data it would hold: the stages before "
                         f"the last have {available} training examples",
                         f"use --buffer-size {available} or less")


RESULT = "result.json"  # per method: what a resumed run reuses instead of training the method again
# per method: every task's held-out items after every stage (which items each stage changed; probs left out)
STAGE_PREDICTIONS = "stage_predictions.jsonl"


def _result_record(r) -> dict:
    return {"R": r.R, "loss_R": r.loss_R, "n": r.n, "extra": r.extra, "seconds": r.seconds}


def _finished_method(folder: Path, scn, method: str):
    """The result of a method a previous attempt finished, or None. Its history and predictions are read back
    from the files it wrote, so the metrics of a resumed run are computed from exactly the same records."""
    from phases.ewc.train import MethodResult

    if not (folder / RESULT).is_file():
        return None
    saved = read_json(folder / RESULT)
    stages = scn.stages(method)
    by_stage: dict[str, list[dict]] = {st.name: [] for st in stages}
    for rec in read_jsonl(folder / STAGE_PREDICTIONS):
        by_stage[rec.pop("stage")].append(rec)
    return MethodResult(method, stages, history=read_jsonl(folder / "history.jsonl"),
                        items=read_jsonl(folder / "predictions.jsonl"),
                        stage_items=[by_stage[st.name] for st in stages], **saved)


def run(config: EwcConfig) -> dict:
    from phases.ewc.report import build_metrics, render_summary, write_plots
    from phases.ewc.scenarios import build
    from phases.ewc.train import train_method

    methods = check(config)
    device = prepare(config.device, config.seed, config.deterministic)
    scn = build(config)  # loads and checks the data: a missing dataset is exit 2 before any folder exists
    _check_buffer(config, methods, scn)
    _check_turnover(config, methods, scn)
    cfg = {**asdict(config), "methods": ",".join(methods), "steps_per_stage": config.steps or scn.steps,
           "lr": config.lr or scn.lr}
    with Run.open(PHASE, config, cfg) as run_:
        run_.set_device(str(device), device_name(device))
        render.say(f"ewc: scenario {scn.name}, {len(scn.tasks)} tasks ({', '.join(t.name for t in scn.tasks)}), "
                   f"methods {', '.join(methods)}, {cfg['steps_per_stage']} steps per stage on {device}")
        results = []
        for m in methods:
            folder = run_.dir / "methods" / m
            done = _finished_method(folder, scn, m)
            if done is not None:
                render.say(f"{m}: finished before the run was interrupted; kept")
                results.append(done)
                continue
            shutil.rmtree(folder, ignore_errors=True)  # an interrupted method restarts from scratch
            writer = run_.jsonl(f"methods/{m}/history.jsonl")
            results.append(train_method(scn, m, config, device, writer.write))
            writer.close()
            preds = run_.jsonl(f"methods/{m}/predictions.jsonl")
            preds.write_many(results[-1].items)
            preds.close()
            staged = run_.jsonl(f"methods/{m}/{STAGE_PREDICTIONS}")
            for st, items in zip(results[-1].stages, results[-1].stage_items):
                staged.write_many([{"stage": st.name, **{k: v for k, v in it.items() if k != "probs"}}
                                   for it in items])
            staged.close()
            # written last: its presence marks the method finished (history and predictions complete)
            run_.write_json(f"methods/{m}/{RESULT}", _result_record(results[-1]))
        metrics = build_metrics(scn, results, config)
        if config.heatmap:
            metrics["heatmaps"] = write_plots(run_.dir, scn, results)
        out = run_.write_metrics(metrics, primary=metrics["primary_key"])
    render_summary(scn, results, out, config.stage_diff)
    return out

"""The eval-gsm8k phase: check the options, load the problems and the model, then evaluate window by window
(`checkpoint_every` problems in dataset order), writing each problem's record as soon as it is done and a history
point after each window, and finally the metrics.

Resume: the problems whose records are in predictions.jsonl are done; a window with any other problem is decoded
again whole (so its schedule, and every number, is that of an uninterrupted run) and only the missing records are
written; history points not yet written are written. Nothing is written twice, nothing is lost, and every
record and accuracy is that of an uninterrupted run (only the timings differ).

Beyond GSM8K: `--dataset` takes any question/answer dataset of prompts.DATASETS (SST-2 and SCAN written as
questions with `#### FINAL` answers, phases/core/data/qa.py) or a comma list of them (ids `<dataset>:<index>`);
`--export` writes the run's solutions as training lines at its end (export.py); `--route` evaluates every adapter
in its own resumable pass and adds the oracle and a learned router (routing.py)."""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, replace
from pathlib import Path

from phases.core import render
from phases.core.data import load
from phases.core.errors import InputError
from phases.core.jsonio import iter_jsonl
from phases.core.options import check_options
from phases.core.runs import Run
from phases.gsm8k.config import EvalConfig
from phases.gsm8k.extract import INVALID
from phases.gsm8k.items import Backend, Item
from phases.gsm8k.metrics import checkpoint, record, summary
from phases.gsm8k.prompts import PromptSpec, build_prompt, default_preset, parse_datasets, resolve_spec, shot_draws

PHASE = "eval-gsm8k"
_EXTRA_BODY_HINT = 'pass a JSON object, e.g. \'{"top_k": 1, "repeat_penalty": 1.0}\''


def check(c: EvalConfig) -> dict:
    """Option checks that need no data or model. Returns the parsed --extra-body."""
    check_options(c)  # each option's own range or choice (declared in the config); below, options together
    if c.samples and not c.temperature > 0:
        raise InputError(f"--temperature {c.temperature}: sampling needs a temperature above 0",
                         "use e.g. --temperature 0.7")
    extra = {}
    if c.backend == "openai":
        if not c.api_base or not c.api_base.startswith(("http://", "https://")):
            raise InputError(f"--api-base {c.api_base!r}: the openai backend needs the server's URL",
                             "e.g. --api-base http://127.0.0.1:8000/v1")
        if c.adapters:
            raise InputError("--adapter needs the transformers backend (a server's weights are its own)",
                             "load the adapter into the server itself, or use --backend transformers")
        if c.ppl:
            raise InputError("--ppl needs the transformers backend (servers do not score given text alike)",
                             "drop --ppl, or use --backend transformers")
        if c.extra_body:
            try:
                extra = json.loads(c.extra_body)
            except json.JSONDecodeError as e:
                raise InputError(f"--extra-body: not JSON ({e.msg})", _EXTRA_BODY_HINT) from None
            if not isinstance(extra, dict):
                raise InputError("--extra-body: not a JSON object", _EXTRA_BODY_HINT)
    else:
        if c.backend == "llamacpp":
            for opt, given, why in (("--adapter", c.adapters, "peft adapters load into transformers models"),
                                    ("--ppl", c.ppl, "scoring given text is done by the transformers backend"),
                                    ("--dtype", c.dtype != "auto", "the .gguf file's own quantised weights run"),
                                    ("--device", c.device not in ("auto", "cpu"), "it runs on the CPU")):
                if given:
                    raise InputError(f"{opt} does not apply to --backend llamacpp ({why})",
                                     f"drop {opt}, or use --backend transformers")
        for opt, given in (("--api-base", c.api_base), ("--extra-body", c.extra_body)):
            if given:
                raise InputError(f"{opt} only applies to --backend openai", f"drop {opt} or add --backend openai")
    parse_datasets(c.dataset)
    _check_export(c)
    _check_route(c)
    return extra


def _check_export(c: EvalConfig) -> None:
    if c.export is None:
        return
    if not c.samples:
        raise InputError(f"--export {c.export}: writes sampled solutions, but --samples is 0",
                         "add --samples k --temperature T (e.g. --samples 4 --temperature 0.8)")
    if c.split != "train":
        raise InputError(f"--export {c.export}: exported lines are training data; sampling them from the "
                         f"{c.split} split would put {c.split} problems into training", "add --split train")
    if c.route:
        raise InputError("--export does not apply to --route runs", "export from a run of one model or adapter")
    target = Path(c.export).expanduser()
    if target.is_dir():
        raise InputError(f"--export {c.export}: is a folder", "give a file name, e.g. --export sampled.jsonl")
    parent = next((p for p in target.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"--export {c.export}: {parent} is a file, not a folder", "choose a path under a folder")


def _check_route(c: EvalConfig) -> None:
    if c.route is None:
        return
    if len(c.adapters) < 2:
        raise InputError(f"--route {c.route}: needs at least 2 adapters to route between, got {len(c.adapters)}",
                         "give each expert as --adapter NAME=PATH (two or more)")
    for opt, given in (("--use-adapter", c.use_adapter), ("--samples", c.samples), ("--ppl", c.ppl)):
        if given:
            raise InputError(f"{opt} does not apply to --route (every adapter is evaluated, greedy)",
                             f"drop {opt}, or evaluate one adapter without --route")


def _problems(spec: PromptSpec, dataset: str, data: dict, split: str, indices: list[int], mixed: bool,
              exclude_self: bool) -> list[Item]:
    """Items for problems `indices` of one split of one dataset, with shots from that dataset's train split."""
    rows, train = data[split], data["train"]
    draws = shot_draws(spec, len(train), max(indices) + 1, exclude_self=exclude_self) if indices else []
    items = []
    for i in indices:
        p = rows[i]
        shots = [(train[j].question, train[j].answer) for j in draws[i]]
        items.append(Item(f"{dataset}:{p.id}" if mixed else p.id, p.question, p.answer, p.final, draws[i],
                          build_prompt(spec, p.question, shots), dataset=dataset))
    return items


def _items(c: EvalConfig, spec: PromptSpec) -> tuple[list[Item], list[Item]]:
    """The evaluated problems (--n of each dataset from --offset) and, for a router, the training problems it
    learns from (--router-train-n of each dataset's train split, drawn with --seed, never an evaluated one)."""
    datasets = parse_datasets(c.dataset)
    mixed = len(datasets) > 1
    items, router_items = [], []
    for name in datasets:
        data = load(name, c.data_dir, option="--data-dir")
        split = data[c.split]
        n = c.n if c.n is not None else len(split) - c.offset
        if n < 1 or c.offset + n > len(split):
            raise InputError(f"--n {c.n} --offset {c.offset}: the {c.split} split of {name} has only {len(split)} "
                             "problems", f"use --n {max(len(split) - c.offset, 0)} or less (or a smaller --offset)")
        evaluated = range(c.offset, c.offset + n)
        items += _problems(spec, name, data, c.split, list(evaluated), mixed, exclude_self=c.split == "train")
        if c.route in ("router", "all"):
            pool = [j for j in range(len(data["train"])) if not (c.split == "train" and j in evaluated)]
            if c.router_train_n > len(pool):
                raise InputError(f"--router-train-n {c.router_train_n}: the train split of {name} has only "
                                 f"{len(pool)} problems outside the evaluated ones",
                                 f"use --router-train-n {len(pool)} or less")
            picked = sorted(random.Random(c.seed).sample(pool, c.router_train_n))
            router_items += _problems(spec, name, data, "train", picked, mixed, exclude_self=True)
    return items, router_items


def _backend(c: EvalConfig, spec: PromptSpec, extra: dict, items: list[Item]) -> tuple[Backend, str]:
    if c.backend == "openai":
        from phases.gsm8k.openai_backend import OpenAIBackend

        return OpenAIBackend(c.api_base, c.model, spec, api_key=os.environ.get(c.api_key_env) or None,
                             concurrency=c.concurrency, max_retries=c.max_retries, retry_backoff=c.retry_backoff,
                             timeout=c.request_timeout, samples=c.samples, temperature=c.temperature, seed=c.seed,
                             extra_body=extra), "server"
    from phases.core.device import device_name, prepare
    if c.backend == "llamacpp":
        from phases.core.device import set_threads
        from phases.gsm8k.llamacpp_backend import LlamaCppBackend

        prepare("cpu", c.seed)
        backend = LlamaCppBackend(c.model, spec, c.samples, c.temperature, c.seed, set_threads())
        backend.prepare(items)
        return backend, "cpu (llama.cpp)"
    from phases.gsm8k.hf_backend import TransformersBackend
    from phases.gsm8k.models import apply_adapters, load_model, parse_adapters, resolve_source

    resolve_source(c.model)  # a bad path fails before anything slow
    adapters = parse_adapters(c.adapters)
    device = prepare(c.device, c.seed)
    loaded = load_model(c.model, c.dtype, device)
    # a --route run evaluates every adapter in turn (peft's set_adapter), starting with the first
    apply_adapters(loaded, adapters, adapters[0][0] if c.route and adapters else c.use_adapter)
    backend = TransformersBackend(loaded, spec, c.batch_size, c.samples, c.temperature, c.seed, c.ppl)
    backend.prepare(items)
    return backend, f"{device} ({device_name(device)})"


def _evaluate(run_: Run, items: list[Item], backend: Backend, c: EvalConfig, spec: PromptSpec,
              file: str = Run.PREDICTIONS, stage: str | None = None, split: str | None = None) -> list[dict]:
    """Evaluate `items` window by window into the append-only `file` (one record per problem), resuming from the
    records already there; history points carry `stage` (a --route pass) and the records `split`."""
    split = split or c.split
    pred_path, hist_path = run_.path(file), run_.path(Run.HISTORY)
    wanted = {it.id for it in items}
    records = {r["id"]: r for r in (iter_jsonl(pred_path) if pred_path.exists() else []) if r.get("id") in wanted}
    logged = {(r.get("stage"), r.get("step")) for r in (iter_jsonl(hist_path) if hist_path.exists() else [])}
    if records:
        render.say(f"resuming{' ' + stage if stage else ''}: {len(records)} of {len(items)} problems already "
                   "evaluated")
    by_id = {it.id: it for it in items}
    k = c.checkpoint_every
    write = run_.jsonl(file).write
    with render.progress(len(items), f"{PHASE} {stage}" if stage else PHASE, unit="problem") as bar:
        bar.advance(len(records))

        def emit(results) -> None:
            for res in results:
                rec = record(by_id[res.id], res, spec, split)
                write(rec)
                records[res.id] = rec
                bar.advance()

        for start in range(0, len(items), k):
            window = items[start:start + k]
            if any(it.id not in records for it in window):
                backend.run(window, set(records), emit)
            step = start + len(window)
            if (stage, step) not in logged:
                point = checkpoint(step, [records[it.id] for it in items[:step]], split, c.dataset, stage)
                run_.log(point)
                bar.note(f"{stage + ' ' if stage else ''}{spec.primary} acc {point[spec.primary + '_acc']:.3f} "
                         f"at n={step}")
    return [records[it.id] for it in items]


def run(config: EvalConfig) -> dict:
    extra = check(config)
    # no --preset: the dataset's own (recorded in config.json, so a resume or a rerun names it alike)
    c = replace(config, preset=config.preset or default_preset(parse_datasets(config.dataset)))
    spec = resolve_spec(c.preset, c.template, c.shots, c.max_new_tokens)
    items, router_items = _items(c, spec)
    options = asdict(c)
    # a resume is checked on its options before the model loads, then on the resolved prompt and model; a new run
    # folder is made only once the model has loaded (a bad model writes nothing)
    resumed = Run.open(PHASE, c, options, later=("resolved",)) if c.resume else None
    backend, device = _backend(c, spec, extra, items + router_items)
    identity = backend.identity
    full = {**options, "resolved": {"prompt": spec.to_dict(), "model": identity}}
    if resumed:
        resumed.check_same_config(full, c.resume_may_differ)
    run_ = resumed or Run.open(PHASE, c, full)
    with run_:
        run_.set_device(device)
        about = {
            "dataset": c.dataset, "preset": spec.name, "shots": spec.shots, "max_new_tokens": spec.max_new_tokens,
            "primary_extraction": spec.primary, "template": spec.to_dict(),
            "extractor": {"strict": f"first match of {spec.strict_regex}",
                          "flexible": f"last match of {spec.flexible_regex}",
                          "normalize": "remove ',', '$', text up to '#### ', one trailing '.'; lowercase; "
                                       "white space collapsed",
                          "compare": "as numbers when both parse as decimals, else as strings",
                          "no_match": INVALID},
            "model": identity, "backend": c.backend, "device": device, "batch_size": c.batch_size,
            "split": c.split, "offset": c.offset,
        }
        if c.route:
            out = _route(run_, items, router_items, backend, c, spec, about)
        else:
            records = _evaluate(run_, items, backend, c, spec)
            active = next((a["name"] for a in identity.get("adapters", []) if a["active"]), None)
            metrics = {**summary(records, spec), **about, "adapter": active,
                       "samples": c.samples, "temperature": c.temperature if c.samples else None}
            if c.export:
                metrics.update(_export(records, items, spec, c, active))
            out = run_.write_metrics(metrics, primary=f"{spec.primary}_acc")
    (_render_route if c.route else _render)(out, spec)
    return out


def _export(records: list[dict], items: list[Item], spec: PromptSpec, c: EvalConfig, adapter: str | None) -> dict:
    """--export: the run's solutions as training lines, written whole from its records (a resumed run too)."""
    from phases.core.jsonio import atomic_write_jsonl
    from phases.gsm8k.export import solution_lines

    lines, counts = solution_lines(records, {it.id: it for it in items}, spec, c.export_filter, c.model, adapter,
                                   c.temperature)
    atomic_write_jsonl(Path(c.export).expanduser(), lines)
    render.say(f"exported {len(lines)} training lines ({c.export_filter}) to {c.export}")
    return {**counts, "export": c.export, "export_filter": c.export_filter}


def _route(run_: Run, items: list[Item], router_items: list[Item], backend, c: EvalConfig, spec: PromptSpec,
           about: dict) -> dict:
    """--route: every adapter on every problem (each pass resumable window by window), then the oracle and the
    router (phases/gsm8k/routing.py); predictions.jsonl is written whole at the end from the passes' files."""
    from phases.core.jsonio import atomic_write_jsonl
    from phases.gsm8k import routing

    names = [a["name"] for a in backend.identity["adapters"]]

    def evaluate(its, **where):
        return _evaluate(run_, its, backend, c, spec, **where)

    results = routing.passes(names, items, router_items, backend.model, c.split, evaluate)
    metrics, preds = routing.route(names, items, router_items, results, backend, c.route, c.seed)
    atomic_write_jsonl(run_.path(Run.PREDICTIONS), preds)
    metrics.update(about, router_train_n=len(router_items), per_adapter={
        a: summary(list(results[a]["eval"].values()), spec) for a in names})
    return run_.write_metrics(metrics, primary="oracle_acc" if c.route == "oracle" else "router_acc")


def _render_route(m: dict, spec: PromptSpec) -> None:
    def row(label: str, key: str):
        return (label, m[f"{key}_acc"], f"[{m[f'{key}_acc_low']:.3f}, {m[f'{key}_acc_high']:.3f}]",
                f"{m[f'{key}_n_correct']}/{m[f'{key}_n']}")

    rows = [row(f"adapter {a}" + (" (best)" if a == m["best_adapter"] else ""), f"adapter_{a}") for a in m["adapters"]]
    rows.append(row("oracle (any adapter)", "oracle"))
    if "router_acc" in m:
        rows += [row("router", "router"), row("routing (solvable problems)", "routing")]
    render.table(f"{m['dataset']} {m['split']} (n={m['n']}, preset {spec.name}): adapters as experts",
                 ["", "accuracy", "95% Wilson", "correct"], rows)
    if "router_acc" in m:
        render.say(f"oracle gap {m['oracle_gap']:.3f}; router choices {m['router_choices']}; "
                   f"router vs best single adapter: {m['router_vs_best_verdict']}", markup=False)
    render.say(f"run folder: {m['run_dir']}")


def _render(m: dict, spec: PromptSpec) -> None:
    rows = []
    for key in ("strict_acc", "flexible_acc", "strict_maj_acc", "flexible_maj_acc"):
        if key in m:
            label = key.replace("_acc", "") + (" (primary)" if key == m["primary"] else "")
            label = label.replace("_maj", f" maj@{m['samples']}")
            rows.append((label, m[key], f"[{m[key + '_low']:.3f}, {m[key + '_high']:.3f}]",
                         f"{m[key.replace('_acc', '_n_correct')]}/{m['n']}"))
    render.table(f"{m['dataset']} {m['split']} (n={m['n']}, preset {spec.name}, {spec.shots}-shot)",
                 ["extraction", "accuracy", "95% Wilson", "correct"], rows)
    facts = [("invalid (strict / flexible)", f"{m['strict_invalid']} / {m['flexible_invalid']}"),
             ("stopped at the token limit", m["finished_by_length"]),
             ("problems per minute", m["problems_per_min"]), ("tokens per second", m["tokens_per_s"]),
             ("mean prompt tokens", m["prompt_tokens_mean"])]
    if "gold_ppl" in m:
        facts.append(("perplexity of the gold solutions", m["gold_ppl"]))
    render.table("run", ["", "value"], facts)
    render.say(f"run folder: {m['run_dir']}")

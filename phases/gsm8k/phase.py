"""The eval-gsm8k phase: check the options, load the problems and the model, then evaluate window by window
(`checkpoint_every` problems in dataset order), writing each problem's record as soon as it is done and a history
point after each window, and finally the metrics.

Resume: the problems whose records are in predictions.jsonl are done; a window with any other problem is decoded
again whole (so its schedule, and every number, is that of an uninterrupted run) and only the missing records are
written; history points not yet written are written. Nothing is written twice, nothing is lost, and every
record and accuracy is that of an uninterrupted run (only the timings differ)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

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
from phases.gsm8k.prompts import PromptSpec, build_prompt, resolve_spec, shot_draws

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
        for opt, given in (("--api-base", c.api_base), ("--extra-body", c.extra_body)):
            if given:
                raise InputError(f"{opt} only applies to --backend openai", f"drop {opt} or add --backend openai")
    return extra


def _items(c: EvalConfig, spec: PromptSpec) -> list[Item]:
    data = load("gsm8k", c.data_dir, option="--data-dir")
    split, train = data[c.split], data["train"]
    if c.offset + c.n > len(split):
        raise InputError(f"--n {c.n} --offset {c.offset}: the {c.split} split has only {len(split)} problems",
                         f"use --n {max(len(split) - c.offset, 0)} or less (or a smaller --offset)")
    draws = shot_draws(spec, len(train), c.offset + c.n, exclude_self=c.split == "train")
    items = []
    for p in split[c.offset:c.offset + c.n]:
        shots = [(train[j].question, train[j].answer) for j in draws[p.id]]
        items.append(Item(p.id, p.question, p.answer, p.final, draws[p.id], build_prompt(spec, p.question, shots)))
    return items


def _backend(c: EvalConfig, spec: PromptSpec, extra: dict, items: list[Item]) -> tuple[Backend, str]:
    if c.backend == "openai":
        from phases.gsm8k.openai_backend import OpenAIBackend

        return OpenAIBackend(c.api_base, c.model, spec, api_key=os.environ.get(c.api_key_env) or None,
                             concurrency=c.concurrency, max_retries=c.max_retries, retry_backoff=c.retry_backoff,
                             timeout=c.request_timeout, samples=c.samples, temperature=c.temperature, seed=c.seed,
                             extra_body=extra), "server"
    from phases.core.device import device_name, prepare
    from phases.gsm8k.hf_backend import TransformersBackend
    from phases.gsm8k.models import apply_adapters, load_model, parse_adapters, resolve_source

    resolve_source(c.model)  # a bad path fails before anything slow
    adapters = parse_adapters(c.adapters)
    device = prepare(c.device, c.seed)
    loaded = load_model(c.model, c.dtype, device)
    apply_adapters(loaded, adapters, c.use_adapter)
    backend = TransformersBackend(loaded, spec, c.batch_size, c.samples, c.temperature, c.seed, c.ppl)
    backend.prepare(items)
    return backend, f"{device} ({device_name(device)})"


def _evaluate(run_: Run, items: list[Item], backend: Backend, c: EvalConfig, spec: PromptSpec) -> list[dict]:
    pred_path, hist_path = run_.path(Run.PREDICTIONS), run_.path(Run.HISTORY)
    wanted = {it.id for it in items}
    records = {r["id"]: r for r in (iter_jsonl(pred_path) if pred_path.exists() else []) if r.get("id") in wanted}
    logged = {r.get("step") for r in (iter_jsonl(hist_path) if hist_path.exists() else [])}
    if records:
        render.say(f"resuming: {len(records)} of {len(items)} problems already evaluated")
    by_id = {it.id: it for it in items}
    k = c.checkpoint_every
    with render.progress(len(items), PHASE, unit="problem") as bar:
        bar.advance(len(records))

        def emit(results) -> None:
            for res in results:
                rec = record(by_id[res.id], res, spec, c.split)
                run_.predict(rec)
                records[res.id] = rec
                bar.advance()

        for start in range(0, len(items), k):
            window = items[start:start + k]
            if any(it.id not in records for it in window):
                backend.run(window, set(records), emit)
            step = start + len(window)
            if step not in logged:
                point = checkpoint(step, [records[it.id] for it in items[:step]], c.split)
                run_.log(point)
                bar.note(f"{spec.primary} acc {point[spec.primary + '_acc']:.3f} at n={step}")
    return [records[it.id] for it in items]


def run(config: EvalConfig) -> dict:
    c = config
    extra = check(c)
    spec = resolve_spec(c.preset, c.template, c.shots, c.max_new_tokens)
    items = _items(c, spec)
    options = asdict(c)
    # a resume is checked on its options before the model loads, then on the resolved prompt and model; a new run
    # folder is made only once the model has loaded (a bad model writes nothing)
    resumed = Run.open(PHASE, c, options, later=("resolved",)) if c.resume else None
    backend, device = _backend(c, spec, extra, items)
    identity = backend.identity
    full = {**options, "resolved": {"prompt": spec.to_dict(), "model": identity}}
    if resumed:
        resumed.check_same_config(full, c.resume_may_differ)
    run_ = resumed or Run.open(PHASE, c, full)
    with run_:
        run_.set_device(device)
        records = _evaluate(run_, items, backend, c, spec)
        metrics = {
            **summary(records, spec),
            "preset": spec.name, "shots": spec.shots, "max_new_tokens": spec.max_new_tokens,
            "primary_extraction": spec.primary, "template": spec.to_dict(),
            "extractor": {"strict": f"first match of {spec.strict_regex}",
                          "flexible": f"last match of {spec.flexible_regex}",
                          "normalize": "remove ',', '$', text up to '#### ', one trailing '.'; lowercase",
                          "compare": "as numbers when both parse as decimals, else as strings",
                          "no_match": INVALID},
            "model": identity, "backend": c.backend, "device": device, "batch_size": c.batch_size,
            "adapter": next((a["name"] for a in identity.get("adapters", []) if a["active"]), None),
            "split": c.split, "offset": c.offset,
            "samples": c.samples, "temperature": c.temperature if c.samples else None,
        }
        out = run_.write_metrics(metrics, primary=f"{spec.primary}_acc")
    _render(out, spec)
    return out


def _render(m: dict, spec: PromptSpec) -> None:
    rows = []
    for key in ("strict_acc", "flexible_acc", "strict_maj_acc", "flexible_maj_acc"):
        if key in m:
            label = key.replace("_acc", "") + (" (primary)" if key == m["primary"] else "")
            label = label.replace("_maj", f" maj@{m['samples']}")
            rows.append((label, m[key], f"[{m[key + '_low']:.3f}, {m[key + '_high']:.3f}]",
                         f"{m[key.replace('_acc', '_n_correct')]}/{m['n']}"))
    render.table(f"GSM8K {m['split']} (n={m['n']}, preset {spec.name}, {spec.shots}-shot)",
                 ["extraction", "accuracy", "95% Wilson", "correct"], rows)
    facts = [("invalid (strict / flexible)", f"{m['strict_invalid']} / {m['flexible_invalid']}"),
             ("stopped at the token limit", m["finished_by_length"]),
             ("problems per minute", m["problems_per_min"]), ("tokens per second", m["tokens_per_s"]),
             ("mean prompt tokens", m["prompt_tokens_mean"])]
    if "gold_ppl" in m:
        facts.append(("perplexity of the gold solutions", m["gold_ppl"]))
    render.table("run", ["", "value"], facts)
    render.say(f"run folder: {m['run_dir']}")

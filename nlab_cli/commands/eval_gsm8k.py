"""nlab eval-gsm8k: GSM8K accuracy of a causal LM (or of an OpenAI-compatible server), resumable; --compare
compares two such runs."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from nlab_cli.common import (DataDir, Expect, Device, Json, Name, Out, Seed, bad_usage, execute, expand_stdin_runs,
                             given_options)
from nlab_cli.common import Tracker, TrackerUri
from nlab_cli.common import opt as _opt
from nlab_cli.options import build_config
from phases.gsm8k.config import (BACKENDS, DTYPES, EXPORT_FILTERS, PRESETS, ROUTES, SPLITS, CompareConfig,
                                  EvalConfig)

_D = EvalConfig()
_COMPARE_OPTIONS = {"compare", "checkpoint_every", "out", "name", "json_out", "expect"}


def eval_gsm8k(
    ctx: typer.Context,
    model: Annotated[str, _opt("Hub id, local model folder or .gguf file (with --backend openai: the served model's "
                               "name).")] = _D.model,
    adapter: Annotated[Optional[list[str]], _opt("peft LoRA adapter folder, as PATH or NAME=PATH; repeat for "
                                                 "several.", show_default=False)] = None,
    use_adapter: Annotated[Optional[str], _opt("Name of the adapter to evaluate (needed when several are given).",
                                               show_default=False)] = None,
    dtype: Annotated[Literal[DTYPES], _opt("auto (bfloat16 where the CPU/GPU computes it natively, else float32), "
                                           "bfloat16 or float32.")] = _D.dtype,
    device: Device = _D.device,
    backend: Annotated[Literal[BACKENDS], _opt("transformers (load the model here), openai (an OpenAI-compatible "
                                               "server) or llamacpp (a .gguf file run here by llama-cpp-python, "
                                               "its own quantised kernels; the nlab[llamacpp] extra).")] = _D.backend,
    dataset: Annotated[str, _opt("Question/answer dataset: gsm8k, sst2-qa or scan-qa, or a comma list of them "
                                 "(--n problems of each; ids become DATASET:INDEX).")] = _D.dataset,
    preset: Annotated[Optional[Literal[PRESETS]], _opt(
        "Prompt preset (default: the dataset's: lm-eval for gsm8k, sst2-qa, scan-qa, qa for a mix). lm-eval "
        "(5-shot 'Question: ... Answer:', as lm-evaluation-harness), chat (zero-shot, chat template, asks for "
        "'#### <number>'), chat-fewshot (the 5 shots as chat turns), qa / qa-chat (any question/answer dataset, "
        "text finals).", show_default=False)] = _D.preset,
    template: Annotated[Optional[str], _opt("A prompt file: .json with preset fields to override, or text with a "
                                            "{question} placeholder replacing the question template.",
                                            show_default=False)] = None,
    shots: Annotated[Optional[int], _opt("Shots from the train split (default: the preset's).",
                                         show_default=False)] = None,
    max_new_tokens: Annotated[Optional[int], _opt("Token limit per completion (default: the preset's, 256).",
                                                  show_default=False)] = None,
    split: Annotated[Literal[SPLITS], _opt("Split to evaluate.")] = _D.split,
    n: Annotated[Optional[int], _opt("Number of problems (of each dataset), from --offset on (default: the rest of "
                                     "the split).", show_default=False)] = _D.n,
    offset: Annotated[int, _opt("Index of the first problem.")] = _D.offset,
    data_dir: DataDir = None,
    batch_size: Annotated[int, _opt("Sequences decoded together (problems x (1 + samples)).")] = _D.batch_size,
    checkpoint_every: Annotated[int, _opt("Running accuracy in history.jsonl every k problems (dataset order).")]
    = _D.checkpoint_every,
    samples: Annotated[int, _opt("Sampled completions per problem for self-consistency (maj@k); 0: greedy only.")]
    = _D.samples,
    temperature: Annotated[float, _opt("Sampling temperature of --samples.")] = _D.temperature,
    seed: Seed = _D.seed,
    ppl: Annotated[bool, _opt("Also report the perplexity of the gold solutions.")] = _D.ppl,
    export: Annotated[Optional[str], _opt("Write the sampled (and greedy) solutions as JSONL training lines "
                                          "(question, answer ending '#### FINAL', correct, ...) to this file; needs "
                                          "--split train --samples k.", show_default=False)] = None,
    export_filter: Annotated[Literal[EXPORT_FILTERS], _opt("Which solutions --export writes.")] = _D.export_filter,
    route: Annotated[Optional[Literal[ROUTES]], _opt(
        "Adapters as experts (2+ --adapter NAME=PATH): every adapter on every problem, the oracle, and (router, "
        "all) a router learned on training problems, against the best single adapter.",
        show_default=False)] = None,
    router_train_n: Annotated[int, _opt("Training problems (of each dataset) the --route router learns from.")]
    = _D.router_train_n,
    api_base: Annotated[Optional[str], _opt("openai backend: the server's base URL, e.g. http://127.0.0.1:8000/v1.",
                                            show_default=False)] = None,
    api_key_env: Annotated[str, _opt("openai backend: environment variable holding the API key (the key is never "
                                     "logged or written).")] = _D.api_key_env,
    concurrency: Annotated[int, _opt("openai backend: problems in flight at once.")] = _D.concurrency,
    max_retries: Annotated[int, _opt("openai backend: retries of a failed request before the run fails.")]
    = _D.max_retries,
    retry_backoff: Annotated[float, _opt("openai backend: seconds before the first retry (doubling).")]
    = _D.retry_backoff,
    request_timeout: Annotated[float, _opt("openai backend: seconds to wait for one answer.")] = _D.request_timeout,
    extra_body: Annotated[Optional[str], _opt("openai backend: JSON object merged into every request, e.g. "
                                              "'{\"top_k\": 1, \"repeat_penalty\": 1.0}' for greedy llama.cpp.",
                                              show_default=False)] = None,
    resume: Annotated[Optional[str], _opt("Continue the run in this folder (after a crash or kill); options not "
                                          "given are taken from it.", show_default=False)] = None,
    compare: Annotated[Optional[tuple[str, str]], _opt("Compare two eval-gsm8k runs instead of evaluating: problems "
                                                       "solved by one only, McNemar's exact test, accuracy at each "
                                                       "checkpoint ('-' reads run folders from --json on stdin).",
                                                       show_default=False)] = None,
    out: Out = None,
    name: Name = None,
    json_out: Json = False,
    expect: Expect = None,
    tracker: Tracker = None,
    tracker_uri: TrackerUri = None,
) -> None:
    """Evaluate a causal LM on GSM8K: batched, resumable, strict and flexible extraction, maj@k, perplexity."""
    given = given_options(ctx)
    if compare is not None:
        extra = sorted(set(given) - _COMPARE_OPTIONS)
        if extra:
            shown = ", ".join("--" + e.replace("_", "-") for e in extra)
            raise bad_usage(f"--compare takes no evaluation options (got {shown})",
                            "pass only the two run folders and optionally --checkpoint-every, --out, --name, --json")
        # `--compare - -` takes both runs from stdin, in order
        runs = expand_stdin_runs(["-"] if compare == ("-", "-") else list(compare))
        if len(runs) != 2:
            raise bad_usage(f"--compare needs exactly two runs, got {len(runs)}", "pass RUN_A RUN_B")
        from phases import gsm8k

        config = CompareConfig(runs[0], runs[1], checkpoint_every if "checkpoint_every" in given else None,
                               str(out) if out else None, name)
        execute(gsm8k.compare, config, json_out=json_out, expect=expect)
        return
    from phases import gsm8k

    config = build_config(ctx, EvalConfig, renamed={"adapter": "adapters"}, adapter=list(adapter or []))
    execute(gsm8k.run, config, json_out=json_out, expect=expect, phase="eval-gsm8k")

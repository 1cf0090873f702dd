"""Options of eval-gsm8k and of its --compare mode, with their documented defaults. Light to import: the CLI
builds these (no torch, no transformers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from phases.core.options import at_least, choice, positive
from phases.gsm8k.prompts import preset_names

BACKENDS = ("transformers", "openai", "llamacpp")
DTYPES = ("auto", "bfloat16", "float32")
PRESETS = tuple(preset_names())  # the files in phases/gsm8k/presets: a new preset is a new file
SPLITS = ("test", "train")
EXPORT_FILTERS = ("all", "correct", "incorrect")
ROUTES = ("oracle", "router", "all")


@dataclass
class EvalConfig:
    model: str = "HuggingFaceTB/SmolLM2-135M-Instruct"  # hub id, model folder or .gguf file (openai: served name)
    backend: str = choice("transformers", BACKENDS)
    adapters: list[str] = field(default_factory=list)  # peft LoRA folders, "PATH" or "NAME=PATH"
    use_adapter: str | None = None  # which adapter is active (needed when several are given)
    dtype: str = choice("auto", DTYPES)  # auto: bfloat16 where the CPU/GPU computes it natively, else float32
    device: str = "auto"
    dataset: str = "gsm8k"  # one of prompts.DATASETS, or a comma list of them (a mix: --n problems of each)
    preset: str | None = choice(None, PRESETS)  # default: the dataset's (prompts.default_preset)
    template: str | None = None  # a .json prompt spec overriding the preset's fields, or a text question template
    shots: int | None = None  # default: the preset's
    max_new_tokens: int | None = None  # default: the preset's (256)
    split: str = choice("test", SPLITS)
    n: int | None = at_least(1, None)  # problems (of each dataset), from --offset on; default: the rest of the split
    offset: int = at_least(0, 0)
    data_dir: str | None = None
    batch_size: int = at_least(1, 16)  # sequences decoded together (problems x (1 + samples))
    checkpoint_every: int = at_least(1, 50)  # history point every k problems, in dataset order
    samples: int = at_least(0, 0)  # sampled completions per problem for maj@k (0: greedy only)
    temperature: float = at_least(0, 0.7)  # for the samples; the headline completion is always greedy
    seed: int = 0
    ppl: bool = False  # also the perplexity of the gold solutions
    export: str | None = None  # JSONL of the sampled (and greedy) solutions as training lines (needs --samples)
    export_filter: str = choice("all", EXPORT_FILTERS)  # which exported solutions: all, correct or incorrect ones
    route: str | None = choice(None, ROUTES)  # every --adapter on every problem, the oracle and a learned router
    router_train_n: int = at_least(1, 200)  # training problems (of each dataset) the router learns from
    api_base: str | None = None  # openai backend: e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the key (never written anywhere)
    concurrency: int = at_least(1, 4)  # openai backend: problems in flight
    max_retries: int = at_least(0, 4)
    retry_backoff: float = at_least(0, 1.0)  # seconds before the first retry; doubles each time
    request_timeout: float = positive(300.0)
    extra_body: str | None = None  # JSON object merged into every request (e.g. {"top_k": 1})
    resume: str | None = None
    out: str | None = None
    name: str | None = None
    tracker: list[str] | None = None  # experiment trackers (as the training phases: TrainingRunOptions)
    tracker_uri: str | None = None

    # operational options a resumed run may change: they do not change what is computed
    resume_may_differ: ClassVar[tuple[str, ...]] = ("api_base", "api_key_env", "concurrency", "max_retries",
                                                    "retry_backoff", "request_timeout", "export", "export_filter")


@dataclass
class CompareConfig:
    run_a: str
    run_b: str
    checkpoint_every: int | None = at_least(1, None)  # default: run A's
    out: str | None = None
    name: str | None = None

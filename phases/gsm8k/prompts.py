"""Prompts as data: a preset (presets/<name>.json) or a template file says how a problem becomes a prompt.

A prompt spec holds the format (`completion`: one text, `chat`: messages for the model's chat template), the
question and shot templates (`{question}`, `{answer}` placeholders, replaced literally so braces elsewhere are
safe), the number of shots and their seed, the stop strings, the token limit, the extraction regexes and which
extraction is the headline. A template file is either a JSON object with any of these fields (overriding the
chosen preset) or plain text, which replaces the preset's question template."""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from phases.core.errors import InputError
from phases.core.jsonio import read_json, read_text

PRESET_DIR = Path(__file__).parent / "presets"
# the question/answer datasets (phases.core.data registry names) eval-gsm8k evaluates and train-lora trains on
DATASETS = ("gsm8k", "sst2-qa", "scan-qa")
# a dataset's preset when --preset is not given: (eval-gsm8k's default, the chat format train-lora uses); a mix of
# datasets (--dataset gsm8k,sst2-qa) takes MIXED_PRESETS, whose regexes read numbers and text alike
DEFAULT_PRESETS = {"gsm8k": ("lm-eval", "chat"), "sst2-qa": ("sst2-qa", "qa-chat"), "scan-qa": ("scan-qa", "qa-chat")}
MIXED_PRESETS = ("qa", "qa-chat")
FORMATS = ("completion", "chat")
EXTRACTIONS = ("strict", "flexible")


@dataclass(frozen=True)
class PromptSpec:
    name: str
    description: str
    format: str
    system: str | None
    question_template: str
    target_template: str
    shot_separator: str
    shots: int
    fewshot_seed: int
    stop: tuple[str, ...]
    max_new_tokens: int
    strict_regex: str
    flexible_regex: str
    primary: str

    def to_dict(self) -> dict:
        return {**asdict(self), "stop": list(self.stop)}


FIELDS = tuple(PromptSpec.__dataclass_fields__)


def parse_datasets(text: str, option: str = "--dataset") -> list[str]:
    """`gsm8k` or a comma list such as `gsm8k,sst2-qa,scan-qa` (each once)."""
    names = [d.strip() for d in str(text).split(",")]
    for d in names:
        if d not in DATASETS:
            raise InputError(f"{option} {d!r}: unknown dataset (eval-gsm8k reads question/answer datasets)",
                             f"choose one or more (comma-separated) of: {', '.join(DATASETS)}")
    if len(set(names)) != len(names):
        raise InputError(f"{option} {text!r}: a dataset is named twice", "name each dataset once")
    return names


def default_preset(datasets: list[str], chat: bool = False) -> str:
    """The preset used when none is given: the dataset's own (DEFAULT_PRESETS), or the mixed one for several."""
    pair = DEFAULT_PRESETS[datasets[0]] if len(datasets) == 1 else MIXED_PRESETS
    return pair[chat]


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def _read_preset(name: str) -> dict:
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        raise InputError(f"--preset {name!r}: unknown preset", f"choose one of: {', '.join(preset_names())}")
    return {"name": name, **read_json(path, "preset")}


def _read_template(path: Path) -> dict:
    """Fields a template file overrides."""
    if not path.is_file():
        raise InputError(f"--template {path}: file not found", "pass a .json prompt spec or a text template")
    text = read_text(path, "--template")
    if path.suffix.lower() != ".json":
        return {"question_template": text}
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"--template {path}:{e.lineno}: malformed JSON ({e.msg})", "fix the file") from None
    if not isinstance(fields, dict):
        raise InputError(f"--template {path}: expected a JSON object of prompt fields",
                         f"use any of: {', '.join(FIELDS)}")
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise InputError(f"--template {path}: unknown field(s) {', '.join(unknown)}",
                         f"use any of: {', '.join(FIELDS)}")
    return fields


def _checked(fields: dict, where: str) -> PromptSpec:
    def bad(msg: str, fix: str) -> InputError:
        return InputError(f"{where}: {msg}", fix)

    types = {"format": str, "question_template": str, "target_template": str, "shot_separator": str,
             "shots": int, "fewshot_seed": int, "max_new_tokens": int, "strict_regex": str, "flexible_regex": str,
             "primary": str, "description": str, "name": str}
    for key, typ in types.items():
        if not isinstance(fields.get(key), typ) or isinstance(fields.get(key), bool):
            raise bad(f"field {key!r} must be a {typ.__name__}, got {fields.get(key)!r}", "fix the prompt spec")
    if fields["format"] not in FORMATS:
        raise bad(f"format {fields['format']!r} is not one of {FORMATS}", "use completion or chat")
    if "{question}" not in fields["question_template"]:
        raise bad("the question template has no {question} placeholder",
                  "put {question} where the problem's text goes")
    if fields["shots"] > 0 and "{answer}" not in fields["target_template"]:
        raise bad("the target template has no {answer} placeholder, so shots would have no solutions",
                  "put {answer} where a shot's worked solution goes, or use 0 shots")
    if fields["shots"] < 0 or fields["max_new_tokens"] < 1:
        raise bad("shots must be >= 0 and max_new_tokens >= 1", "fix the values")
    if fields["primary"] not in EXTRACTIONS:
        raise bad(f"primary {fields['primary']!r} is not one of {EXTRACTIONS}", "use strict or flexible")
    stop = fields.get("stop")
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise bad("stop must be a list of non-empty strings", "fix the prompt spec")
    if fields.get("system") is not None and not isinstance(fields["system"], str):
        raise bad("system must be a string or null", "fix the prompt spec")
    for key in ("strict_regex", "flexible_regex"):
        try:
            re.compile(fields[key])
        except re.error as e:
            raise bad(f"{key} is not a valid regular expression ({e})", "fix the regex") from None
    return PromptSpec(**{**{k: fields.get(k) for k in FIELDS}, "stop": tuple(stop)})


def resolve_spec(preset: str, template: str | None = None, shots: int | None = None,
                 max_new_tokens: int | None = None) -> PromptSpec:
    """The preset, overridden by a template file, then by --shots and --max-new-tokens."""
    fields = _read_preset(preset)
    where = f"--preset {preset}"
    if template is not None:
        fields.update(_read_template(Path(template)))
        fields["name"] = f"{preset}+{Path(template).name}"
        where = f"--template {template}"
    if shots is not None:
        if shots < 0:
            raise InputError(f"--shots {shots}: must be >= 0", "use 0 for zero-shot")
        fields["shots"] = shots
    if max_new_tokens is not None:
        if max_new_tokens < 1:
            raise InputError(f"--max-new-tokens {max_new_tokens}: must be >= 1", "use e.g. 256")
        fields["max_new_tokens"] = max_new_tokens
    return _checked(fields, where)


def shot_draws(spec: PromptSpec, n_pool: int, upto: int, exclude_self: bool) -> list[list[int]]:
    """Shot indices into the train split for problems 0..upto-1, as lm-evaluation-harness draws them: one
    random.Random(fewshot_seed) shared by the problems in order, `sample(pool, shots)` per problem (one extra,
    then the problem itself dropped, when the shots come from the split being evaluated). Problem i's shots
    therefore do not depend on --offset, --n or the order of evaluation."""
    if spec.shots == 0:
        return [[] for _ in range(upto)]
    if spec.shots + exclude_self > n_pool:
        raise InputError(f"{spec.shots} shots but the train split has only {n_pool} problems", "use fewer --shots")
    rnd = random.Random(spec.fewshot_seed)
    draws = []
    for i in range(upto):
        drawn = rnd.sample(range(n_pool), spec.shots + exclude_self)
        draws.append([j for j in drawn if not (exclude_self and j == i)][:spec.shots])
    return draws


def fill(template: str, question: str | None = None, answer: str | None = None) -> str:
    if question is not None:
        template = template.replace("{question}", question)
    if answer is not None:
        template = template.replace("{answer}", answer)
    return template


def build_prompt(spec: PromptSpec, question: str, shots: list[tuple[str, str]]) -> str | list[dict]:
    """A completion prompt (text) or chat messages for one problem, with its shots (question, solution)."""
    if spec.format == "completion":
        parts = [fill(spec.question_template, q) + fill(spec.target_template, answer=a) + spec.shot_separator
                 for q, a in shots]
        return "".join(parts) + fill(spec.question_template, question)
    messages = [{"role": "system", "content": spec.system}] if spec.system else []
    for q, a in shots:
        messages += [{"role": "user", "content": fill(spec.question_template, q)},
                     {"role": "assistant", "content": fill(spec.target_template, answer=a)}]
    return messages + [{"role": "user", "content": fill(spec.question_template, question)}]


def gold_target(spec: PromptSpec, solution: str) -> str:
    """The text whose perplexity --ppl reports: the gold worked solution as the preset's answer turn."""
    return fill(spec.target_template, answer=solution)

"""eval-gsm8k without a model: answer extraction and matching against hand-made completions, the prompt presets
and template files, and lm-eval's few-shot draws on the real GSM8K files."""

from __future__ import annotations

import json
import random

import pytest

from phases.core.errors import InputError
from phases.gsm8k.extract import INVALID, canonical, extract_both, is_correct, normalize, string_match
from phases.gsm8k.prompts import build_prompt, resolve_spec, shot_draws

LM_EVAL = resolve_spec("lm-eval")


def both(text: str) -> tuple[str, str]:
    return extract_both(text, LM_EVAL.strict_regex, LM_EVAL.flexible_regex)


@pytest.mark.parametrize("completion, strict, flexible, gold, strict_ok, flexible_ok", [
    # the GSM8K format, with a thousands separator
    ("She pays 1,000 + 234 = <<1000+234=1234>>1,234 dollars.\n#### 1,234", "1,234", "1,234", "1234", True, True),
    # dollars, and a trailing period after the last number
    ("The total is $18.\n#### $18", INVALID, "$18", "18", False, True),
    ("So she makes $18.", INVALID, "$18.", "18", False, True),
    # decimals compared as numbers: 18.00 is 18 (lm-eval's string match would say no)
    ("#### 18.00", "18.00", "18.00", "18", True, True),
    ("Half: 1/2 = 0.5\n#### 0.5", "0.5", "0.5", ".5", True, True),
    # negative numbers
    ("The temperature drops to -3 degrees.\n#### -3", "-3", "-3", "-3", True, True),
    ("It is 5 - 8 = -3", INVALID, "-3", "-3", False, True),
    # strict takes the first '#### N', flexible the last number anywhere
    ("#### 7\nQuestion: what is 2+2?\nAnswer: 4", "7", "4", "7", True, False),
    # no answer at all
    ("I do not know.", INVALID, INVALID, "5", False, False),
    ("", INVALID, INVALID, "5", False, False),
    # a lone digit is found by the second branch of the flexible pattern
    ("x = 5", INVALID, "5", "5", False, True),
    # a wrong answer stays wrong
    ("#### 1,235", "1,235", "1,235", "1234", False, False),
])
def test_extraction_and_matching_on_hand_made_completions(completion, strict, flexible, gold, strict_ok,
                                                          flexible_ok):
    assert both(completion) == (strict, flexible)
    assert is_correct(strict, gold) is strict_ok
    assert is_correct(flexible, gold) is flexible_ok


def test_normalization_is_lm_evals_and_numeric_matches_are_counted_apart():
    assert normalize("$1,234.") == "1234"
    assert normalize("The answer is #### 42") == "42"  # '(?s).*#### ' removes everything up to the marker
    assert normalize("ABC") == "abc"  # ignore_case
    assert string_match("1,234", "1234") and is_correct("1,234", "1234")
    assert not string_match("18.00", "18") and is_correct("18.00", "18")  # numeric only
    assert not is_correct(INVALID, INVALID)  # no extraction is never right, whatever the gold says
    assert not is_correct("..", "18") and not is_correct("-", "-1")


def test_canonical_answers_vote_together():
    assert canonical("18.00") == canonical("18") == canonical("$18.") == canonical("#### 18") == "18"
    assert canonical("1,000") == "1000" and canonical("-0") == canonical("0") == "0"
    assert canonical("0.50") == "0.5"
    assert canonical(INVALID) is None


def test_lm_eval_prompt_is_the_harness_format(data_root):
    train = [json.loads(line) for line in (data_root / "gsm8k" / "train.jsonl").open()]
    draws = shot_draws(LM_EVAL, len(train), 3, exclude_self=False)
    # lm-eval: one random.Random(1234) shared by the problems in order, sample(train, 5) per problem
    rnd = random.Random(1234)
    assert draws == [rnd.sample(range(len(train)), 5) for _ in range(3)]
    shots = [(train[j]["question"], train[j]["answer"]) for j in draws[2]]
    prompt = build_prompt(LM_EVAL, "How many?", shots)
    expected = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in shots) + "Question: How many?\nAnswer:"
    assert prompt == expected
    # problem i's shots do not depend on how many problems come after it
    assert shot_draws(LM_EVAL, len(train), 1, exclude_self=False)[0] == draws[0]


def test_shots_from_the_evaluated_split_never_include_the_problem():
    spec = resolve_spec("lm-eval", shots=3)
    draws = shot_draws(spec, 10, 10, exclude_self=True)
    assert all(len(d) == 3 and i not in d for i, d in enumerate(draws))


def test_chat_presets_are_messages():
    chat = build_prompt(resolve_spec("chat"), "What is 2+2?", [])
    assert [m["role"] for m in chat] == ["user"] and "#### <number>" in chat[0]["content"]
    assert chat[0]["content"].endswith("What is 2+2?")
    few = build_prompt(resolve_spec("chat-fewshot"), "Q?", [("A?", "x\n#### 1"), ("B?", "y\n#### 2")])
    assert [m["role"] for m in few] == ["user", "assistant", "user", "assistant", "user"]
    assert few[0]["content"] == "Question: A?\nAnswer:" and few[1]["content"] == "x\n#### 1"


def test_template_files(tmp_path):
    text = tmp_path / "q.txt"
    text.write_text("Problem: {question}\nSolution:")
    spec = resolve_spec("lm-eval", str(text), shots=0, max_new_tokens=64)
    assert spec.question_template == "Problem: {question}\nSolution:" and spec.shots == 0
    assert spec.max_new_tokens == 64 and spec.stop == LM_EVAL.stop
    as_json = tmp_path / "p.json"
    as_json.write_text(json.dumps({"format": "completion", "question_template": "Q: {question}\nA:",
                                   "stop": ["Q:"], "primary": "flexible"}))
    spec = resolve_spec("chat", str(as_json))
    assert spec.format == "completion" and spec.stop == ("Q:",) and spec.primary == "flexible"
    assert build_prompt(spec, "2+2?", []) == "Q: 2+2?\nA:"


@pytest.mark.parametrize("content, suffix, message", [
    ("Answer this:", ".txt", "no {question} placeholder"),
    ('{"question_template": "{question}", "colour": "red"}', ".json", "unknown field(s) colour"),
    ('{"format": "poem"}', ".json", "format 'poem'"),
    ('{"strict_regex": "(["}', ".json", "not a valid regular expression"),
    ('{"primary": "loose"}', ".json", "primary 'loose'"),
    ('["a"]', ".json", "expected a JSON object"),
    ('{"shots": 2, "target_template": "no placeholder"}', ".json", "no {answer} placeholder"),
])
def test_bad_template_files(tmp_path, content, suffix, message):
    path = tmp_path / f"t{suffix}"
    path.write_text(content)
    with pytest.raises(InputError) as e:
        resolve_spec("lm-eval", str(path))
    assert message in e.value.message and str(path) in e.value.message


def test_unknown_preset_names_the_choices():
    with pytest.raises(InputError) as e:
        resolve_spec("lmeval")
    assert "chat, chat-fewshot, lm-eval" in e.value.hint

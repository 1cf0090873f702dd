"""GSM8K: grade-school math word problems, JSONL with `question` and `answer` (`... #### N`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from phases.core.errors import InputError
from phases.core.jsonio import read_lines


@dataclass(frozen=True)
class MathProblem:
    id: int  # 0-based index in its split file
    question: str
    answer: str  # the full worked solution
    final: str  # the text after '####'


def read_gsm8k_jsonl(path: Path, fix: str = "restore the official GSM8K file") -> list[MathProblem]:
    """Question/answer lines (`answer` ends in '#### FINAL'); `fix` is the advice an error gives."""
    problems = []
    for i, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            q, a = rec["question"], rec["answer"]
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}:{i}: not a question/answer record ({type(e).__name__}: {e})",
                             f"each line must be a JSON object with 'question' and 'answer'; {fix}") from None
        if not isinstance(q, str) or not isinstance(a, str) or "####" not in a:
            raise InputError(f"{path}:{i}: the answer has no '#### <final answer>' line", fix)
        problems.append(MathProblem(len(problems), q, a, a.rsplit("####", 1)[1].strip()))
    if not problems:
        raise InputError(f"{path}: no problems", fix)
    return problems


def load_gsm8k(folder: Path) -> dict[str, list[MathProblem]]:
    return {split: read_gsm8k_jsonl(folder / f"{split}.jsonl") for split in ("train", "test")}


GSM8K_URL = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/{}.jsonl"
GSM8K_SHA256 = {"train": "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
                "test": "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"}


def download_gsm8k(folder: Path) -> None:
    from phases.core.data.download import download_url

    for split, sha in GSM8K_SHA256.items():
        download_url(GSM8K_URL.format(split), folder / f"{split}.jsonl", sha)

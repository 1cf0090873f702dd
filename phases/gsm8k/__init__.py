"""`nlab eval-gsm8k`: fast, resumable GSM8K evaluation of causal LMs (transformers or an OpenAI-compatible
server), with LoRA adapters, prompt presets as data, strict and flexible extraction, maj@k, perplexity of the
gold solutions, and a comparison of two runs."""

from phases.gsm8k.config import CompareConfig, EvalConfig


def run(config: EvalConfig) -> dict:
    from phases.gsm8k.phase import run as _run

    return _run(config)


def compare(config: CompareConfig) -> dict:
    from phases.gsm8k.comparison import run as _run

    return _run(config)


__all__ = ["CompareConfig", "EvalConfig", "compare", "run"]

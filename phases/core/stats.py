"""Statistics shared by the phases, from scipy wherever scipy has them: binomial intervals for accuracies,
McNemar's exact test for paired correct/incorrect outcomes, and bootstrap intervals."""

from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np

_LOWER_IS_BETTER = re.compile(r"(loss|ppl|perplexity|error|err|nll|mse|mae|bpc|bpb|forgetting|spike|time)", re.I)


def lower_is_better(metric: str) -> bool:
    """Direction of a metric from its name: losses, perplexities and errors go down, everything else up."""
    return bool(_LOWER_IS_BETTER.search(metric))


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (what an accuracy on n items is worth)."""
    if n == 0:
        return (float("nan"), float("nan"))
    from scipy.stats import binomtest

    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (A right & B wrong, A wrong & B right)."""
    n = int(only_a) + int(only_b)
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(int(only_a), n, 0.5).pvalue)


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], n_resamples: int = 10_000,
                          confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over paired items (e.g. per-item correctness of two systems) with a percentile bootstrap
    interval that resamples items."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = a - b
    if len(diff) < 2 or np.all(diff == diff[0]):
        d = float(diff.mean()) if len(diff) else float("nan")
        return d, d, d
    from scipy.stats import bootstrap

    res = bootstrap((diff,), np.mean, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(diff.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high)


def bootstrap_diff_of_means(a: Sequence[float], b: Sequence[float], n_resamples: int = 10_000,
                            confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """mean(a) - mean(b) for two independent samples (e.g. two seed sweeps), percentile bootstrap interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("need at least 2 values on each side for a bootstrap interval")
    from scipy.stats import bootstrap

    stat: Callable = lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis)  # noqa: E731
    res = bootstrap((a, b), stat, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(a.mean() - b.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high)


def beyond_noise(low: float, high: float) -> bool:
    """A difference is called beyond noise when its interval excludes zero."""
    return bool(low > 0 or high < 0)

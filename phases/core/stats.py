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


# --- configurations compared across seeds (nlab sweep) -----------------------------------------------------------

def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of a few seeds' values ((mean, mean) for a single value or no spread)."""
    v = np.asarray(values, dtype=float)
    m = float(v.mean())
    if len(v) < 2 or np.all(v == v[0]):
        return m, m
    from scipy.stats import t

    half = float(t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m - half, m + half


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value (unequal variances). Two samples without any spread: 0 if they differ, else
    1 (scipy returns NaN there)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.std() == 0 and b.std() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    from scipy.stats import ttest_ind

    return float(ttest_ind(a, b, equal_var=False).pvalue)


def paired_permutation_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided permutation test of the mean paired difference: every sign flip of the per-seed differences
    (2**n of them). Distribution-free, but its smallest p-value is 2 / 2**n (0.25 with 3 seeds)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if np.all(d == 0):
        return 1.0
    from scipy.stats import permutation_test

    res = permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided")
    return float(res.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down; monotone; capped at 1). NaN stays NaN and is not counted."""
    p = np.asarray(pvalues, dtype=float)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    out = np.full(len(p), np.nan)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        out[i] = running
    return out.tolist()


def _welch_power(diff: float, sd_a: float, sd_b: float, n: int, alpha: float) -> float:
    """Power of a two-sided Welch t-test with n seeds per side to detect a true difference `diff`: the noncentral
    t's tails, integrated over the chi-square of the variance estimate at 400 quantiles (scipy's `nct` returns NaN
    at some moderate noncentralities)."""
    from scipy.stats import chi2, norm, t

    var = sd_a ** 2 + sd_b ** 2
    df = (n - 1) * var ** 2 / (sd_a ** 4 + sd_b ** 4)  # Welch-Satterthwaite at equal n
    ncp = abs(diff) / np.sqrt(var / n)
    crit = t.ppf(1 - alpha / 2, df) * np.sqrt(chi2.ppf((np.arange(400) + 0.5) / 400, df) / df)
    return float(np.mean(norm.cdf(ncp - crit) + norm.cdf(-ncp - crit)))


def detectable_difference(sd_a: float, sd_b: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference that n seeds per side detect with the given power (Welch, two-sided)."""
    if n < 2 or (sd_a == 0 and sd_b == 0):
        return 0.0 if n >= 2 else float("inf")
    from scipy.optimize import brentq

    scale = np.sqrt((sd_a ** 2 + sd_b ** 2) / n)
    return float(brentq(lambda d: _welch_power(d, sd_a, sd_b, n, alpha) - power, 1e-9 * scale, 1e4 * scale))


def seeds_to_resolve(diff: float, sd_a: float, sd_b: float, alpha: float = 0.05, power: float = 0.8,
                     most: int = 100_000) -> int | None:
    """How many seeds per side make `diff` detectable (with the observed spreads); None if no count up to `most`
    does (a difference of zero never is)."""
    if diff == 0:
        return None
    if sd_a == 0 and sd_b == 0:
        return 2
    if _welch_power(diff, sd_a, sd_b, most, alpha) < power:
        return None
    lo, hi = 2, most  # power grows with n: bisect for the first n that reaches it
    while lo < hi:
        mid = (lo + hi) // 2
        if _welch_power(diff, sd_a, sd_b, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return lo

"""Go/no-go gates: `--expect 'test_acc>=0.95'` on a run's final metrics, each judged met, missed or inconclusive.

A gate is met when the metric passes and, where the metric has a 95% interval in the metrics (`<m>_ci_low` and
`<m>_ci_high`, or `<m>_low` and `<m>_high`), the whole interval passes too; when the point passes but the interval
straddles the threshold the gate is inconclusive (said so, and not counted as a pass); otherwise missed. Any gate
not met makes the command exit 3, so a pipeline or CI stops on a failed experiment. The expression grammar is
the one of `nlab runs list --where` (phases/core/expressions.py)."""

from __future__ import annotations

from phases.core.errors import InputError
from phases.core.expressions import OPS, parse

GRAMMAR = "METRIC>=NUMBER (or >, <=, <, =, !=), e.g. --expect 'test_acc>=0.95' --expect 'max_spike_factor<2'"


def parse_gates(exprs: list[str]) -> list[tuple[str, str, float]]:
    """The gates as (metric, op, threshold); a malformed one, or a threshold that is not a number, is exit 2."""
    gates = []
    for e in exprs:
        key, op, value = parse(e, "--expect", GRAMMAR)
        try:
            threshold = float(value)
        except ValueError:
            raise InputError(f"--expect {e!r}: {value!r} is not a number", f"write {GRAMMAR}") from None
        gates.append((key, op, threshold))
    return gates


def check_names(gates: list[tuple[str, str, float]], phase: str) -> None:
    """Before the run: refuse a metric the phase never writes (the registry's patterns), listing them."""
    from phases import registry

    info = registry.get(phase)
    if info is None or not info.metrics:
        return
    for key, _, _ in gates:
        if not info.writes_metric(key):
            raise InputError(f"--expect {key}: {phase} writes no such metric",
                             f"use one of: {', '.join(info.metrics)}")


def _interval(metrics: dict, key: str) -> tuple[float, float] | None:
    for low, high in ((f"{key}_ci_low", f"{key}_ci_high"), (f"{key}_low", f"{key}_high")):
        if isinstance(metrics.get(low), (int, float)) and isinstance(metrics.get(high), (int, float)):
            return float(metrics[low]), float(metrics[high])
    return None


def judge(gates: list[tuple[str, str, float]], metrics: dict) -> list[dict]:
    """Each gate with its value, interval and verdict: met, missed or inconclusive."""
    out = []
    for key, op, threshold in gates:
        value = metrics.get(key)
        rec = {"expect": f"{key}{op}{threshold:g}", "metric": key, "value": value, "interval": None}
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            rec.update(verdict="missed", why=f"{key} is not a number in the metrics ({value!r})")
            out.append(rec)
            continue
        passes = OPS[op](float(value), threshold)
        interval = _interval(metrics, key)
        rec["interval"] = list(interval) if interval else None
        if not passes:
            rec.update(verdict="missed", why=f"{key} = {value:.4g}")
        elif interval and not (OPS[op](interval[0], threshold) and OPS[op](interval[1], threshold)):
            rec.update(verdict="inconclusive", why=f"{key} = {value:.4g} passes, but its 95% interval "
                                                   f"[{interval[0]:.4g}, {interval[1]:.4g}] straddles {threshold:g}")
        else:
            rec.update(verdict="met", why=f"{key} = {value:.4g}" + (
                f", 95% interval [{interval[0]:.4g}, {interval[1]:.4g}]" if interval else ""))
        out.append(rec)
    return out


def render(results: list[dict]) -> None:
    from phases.core import render as r

    r.table("expectations", ["expect", "verdict", "because"], [(g["expect"], g["verdict"], g["why"]) for g in results])

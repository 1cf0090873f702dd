"""`--param NAME=SPEC`: one swept option of the phase, checked against the phase's own config class.

    lr=1e-3,4e-3                      a list (also `|`-separated: strategy=standard|functional|hybrid)
    lr=log:1e-4..1e-2                 a range on a log scale (random and tpe draw from it; grid and taguchi cut it
    prune-rate=0.05..0.15             into --levels points); `lin:` is the default scale

NAME is the phase's option as typed (`prune-rate`, `--prune-rate` or `prune_rate`). Each value must pass the
option's declared rule (`choice`, `in_range`, ...); a range needs a numeric option (a `choice` option is
categorical)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from phases.core.errors import InputError
from phases.core.options import not_one_of, option_name, rule_of

CONTROLLED = ("seed", "out", "name", "resume")  # set by the sweep for every run
SCALES = ("lin", "log")


@dataclass(frozen=True)
class Param:
    name: str  # the config field: prune_rate
    kind: str  # bool, int, float or str
    values: tuple = ()  # a list
    lo: float | None = None  # a range
    hi: float | None = None
    scale: str = "lin"

    @property
    def label(self) -> str:
        """As the user types it, without dashes: prune-rate."""
        return self.name.replace("_", "-")

    @property
    def is_range(self) -> bool:
        return self.lo is not None

    def levels(self, n: int) -> list:
        """The list, or n points spread over the range on its scale (integers rounded, repeats dropped)."""
        if not self.is_range:
            return list(self.values)
        import numpy as np

        points = (np.geomspace if self.scale == "log" else np.linspace)(self.lo, self.hi, n)
        out = [int(round(p)) if self.kind == "int" else float(f"{p:.6g}") for p in points]
        return list(dict.fromkeys(out))

    def sample(self, rng):
        """One random value: uniform over the list, or over the range on its scale."""
        if not self.is_range:
            return self.values[int(rng.integers(len(self.values)))]
        if self.scale == "log":
            x = math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))
        else:
            x = rng.uniform(self.lo, self.hi)
        return int(round(x)) if self.kind == "int" else float(f"{x:.6g}")

    def suggest(self, trial):
        """The value Optuna's trial proposes (its distribution is this parameter's)."""
        if not self.is_range:
            return trial.suggest_categorical(self.label, list(self.values))
        if self.kind == "int":
            return trial.suggest_int(self.label, int(self.lo), int(self.hi), log=self.scale == "log")
        return trial.suggest_float(self.label, self.lo, self.hi, log=self.scale == "log")

    def argv(self, value) -> list[str]:
        """The value as the phase's command line takes it."""
        if self.kind == "bool":
            return [option_name(self.name) if value else "--no-" + self.label]
        return [option_name(self.name), repr(value) if self.kind == "float" else str(value)]

    def parse_value(self, text: str):
        return _parse(self, text, f"--param {self.label}")


def sweepable_options(config_cls) -> dict:
    """The phase's options a sweep may vary: its config fields of a scalar type, less those the sweep sets."""
    return {f.name: f for f in fields(config_cls) if f.name not in CONTROLLED and _kind(f) is not None}


def _kind(f) -> str | None:
    t = str(f.type)
    for kind in ("bool", "float", "int", "str"):  # float before int: `float | None`; bool before int
        if kind in t.replace("|", " ").split():
            return kind
    return None


def _parse(p: Param, text: str, where: str):
    text = text.strip()
    try:
        if p.kind == "bool":
            if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "yes", "1")
        if p.kind == "int":
            return int(text)
        if p.kind == "float":
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        return text
    except ValueError:
        raise InputError(f"{where}: {text!r} is not a valid {p.kind} value",
                         "true or false" if p.kind == "bool" else f"give {p.kind} values, e.g. "
                         f"{p.label}={'1e-3,4e-3' if p.kind == 'float' else '2,4'}") from None


def _check_value(f, p: Param, value, where: str) -> None:
    rule = rule_of(f)
    if rule is None:
        return
    if rule.choices is not None:
        if value not in rule.choices:
            raise not_one_of(where, value, rule.choices, f"use values among: {', '.join(rule.choices)}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and not rule.admits(value):
        raise InputError(f"{where}: {value!r} {rule.describe()}", f"keep {p.label} within its range")


def parse_param(text: str, config_cls, phase: str) -> Param:
    """One `NAME=SPEC` against the phase's config class; InputError (exit 2) naming what is wrong."""
    where = f"--param {text!r}"
    if "=" not in text:
        raise InputError(f"{where}: expected NAME=SPEC", "e.g. --param lr=1e-3,4e-3 or --param lr=log:1e-4..1e-2")
    raw_name, spec = text.split("=", 1)
    name = raw_name.strip().lstrip("-").replace("-", "_")
    options = sweepable_options(config_cls)
    if name not in options:
        valid = ", ".join(n.replace("_", "-") for n in options)
        why = " (the sweep sets it for every run)" if name in CONTROLLED else ""
        raise InputError(f"{where}: {phase} has no option {raw_name.strip()!r} to sweep{why}",
                         f"choose among: {valid}")
    f = options[name]
    p = Param(name, _kind(f))
    if not spec.strip():
        raise InputError(f"{where}: no values", "give a list (a,b), a range (lo..hi, log:lo..hi) or a|b|c")
    if ".." in spec:
        return _parse_range(f, p, spec, where)
    items = [s for s in spec.replace("|", ",").split(",")]
    if any(not s.strip() for s in items):
        raise InputError(f"{where}: an empty value in the list", "separate values by single commas")
    values = tuple(p.parse_value(s) for s in items)
    if len(set(values)) != len(values):
        raise InputError(f"{where}: a value is listed twice", "list each value once")
    for v in values:
        _check_value(f, p, v, f"--param {p.label}")
    return Param(p.name, p.kind, values=values)


def _parse_range(f, p: Param, spec: str, where: str) -> Param:
    rule = rule_of(f)
    if p.kind in ("str", "bool") or (rule is not None and rule.choices is not None):
        choices = f" ({'|'.join(rule.choices)})" if rule is not None and rule.choices else ""
        raise InputError(f"{where}: a range on a categorical option{choices}", "list its values: a|b|c")
    scale, _, body = spec.rpartition(":") if ":" in spec else ("lin", "", spec)
    if scale not in SCALES:
        raise InputError(f"{where}: unknown scale {scale!r}", f"use one of: {', '.join(SCALES)} (e.g. log:1e-4..1e-2)")
    parts = body.split("..")
    if len(parts) != 2 or not all(s.strip() for s in parts):
        raise InputError(f"{where}: a range is LO..HI", "e.g. 0.05..0.15 or log:1e-4..1e-2")
    lo, hi = (p.parse_value(s) for s in parts)
    if not lo < hi:
        raise InputError(f"{where}: the range's low end must be below its high end", "write LO..HI with LO < HI")
    if scale == "log" and lo <= 0:
        raise InputError(f"{where}: a log scale needs a positive low end", "use lin: or a positive range")
    for v in (lo, hi):
        _check_value(f, p, v, f"--param {p.label}")
    return Param(p.name, p.kind, lo=lo, hi=hi, scale=scale)


def parse_params(texts: list[str], config_cls, phase: str) -> list[Param]:
    if not texts:
        raise InputError("no --param given: nothing to sweep", "e.g. --param lr=1e-3,4e-3 --param top-k=1,2")
    params = [parse_param(t, config_cls, phase) for t in texts]
    seen = [p.name for p in params]
    repeated = sorted({n for n in seen if seen.count(n) > 1})
    if repeated:
        raise InputError(f"--param {repeated[0].replace('_', '-')} is given twice", "give each option once")
    return params


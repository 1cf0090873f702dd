"""Option constraints, declared once on the config dataclass's field and checked one way.

A config field says what values it accepts through its metadata:

    strategy: str = choice("none", STRATEGIES)
    prune_rate: float = in_range(0.05, 0, 0.5, lo_open=True)
    batch_size: int = at_least(1, 12)
    lr: float | None = positive(None)  # None: the phase's default, never checked

and `check_options(config)` walks the fields (nested config dataclasses too) and raises InputError (exit 2) for
the first value that breaks its rule, naming the option as the user types it:

    --prune-rate 0.7: must be in (0, 0.5]
    --strategy 'foo' is not one of: none, layer, standard, ...

Every float field, declared or not, must be finite: NaN passes any comparison-based range check and starts runs
that diverge, and config.json could not record either (JSON has no NaN or inf: they would be written as null).
Light to import: configs use it."""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from phases.core.errors import InputError

_KEY = "nlab_option"


@dataclass(frozen=True)
class Rule:
    """What a field accepts: one of `choices`, or a number between `lo` and `hi` (either side open or absent)."""

    choices: tuple[str, ...] | None = None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    hint: str | None = None

    def describe(self) -> str:
        """The rule in words: 'must be in (0, 0.5]', 'must be at least 1', 'must be above 0'."""
        if self.lo is not None and self.hi is not None:
            return f"must be in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"must be {'above' if self.lo_open else 'at least'} {self.lo:g}"
        return f"must be {'below' if self.hi_open else 'at most'} {self.hi:g}"

    def admits(self, value: float) -> bool:
        return ((self.lo is None or (value > self.lo if self.lo_open else value >= self.lo))
                and (self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)))


def _declare(default: Any, rule: Rule) -> Any:
    return field(default=default, metadata={_KEY: rule})


def choice(default: str, choices: tuple[str, ...], hint: str | None = None) -> Any:
    """A field whose value is one of `choices` (the CLI shows and enforces the same tuple)."""
    return _declare(default, Rule(choices=tuple(choices), hint=hint))


def in_range(default: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
             hi_open: bool = False, hint: str | None = None) -> Any:
    """A numeric field within [lo, hi] (`lo_open`/`hi_open` exclude an end; None: no bound on that side)."""
    return _declare(default, Rule(lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open, hint=hint))


def at_least(lo: float, default: Any, hint: str | None = None) -> Any:
    """A numeric field >= lo (counts, sizes, coefficients that may be 0)."""
    return in_range(default, lo, hint=hint)


def positive(default: Any, hint: str | None = None) -> Any:
    """A numeric field > 0 (learning rates, widths, timeouts)."""
    return in_range(default, 0, lo_open=True, hint=hint)


def rule_of(f: Field) -> Rule | None:
    """The rule a config field declares, if any."""
    return f.metadata.get(_KEY)


def option_name(name: str) -> str:
    """A config field as the user types it: prune_rate -> --prune-rate."""
    return "--" + name.replace("_", "-")


def not_one_of(option: str, value: Any, choices: tuple[str, ...], hint: str) -> InputError:
    """The error for a value outside its choices (also used by the parsers of comma-separated lists)."""
    return InputError(f"{option} {value!r} is not one of: {', '.join(choices)}", hint)


def _example(option: str, default: Any) -> str:
    if default is MISSING:
        return f"give {option} a valid value"
    return f"leave {option} out for its default" if default is None else f"e.g. {option} {default}"


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_run_name(name: str | None) -> None:
    if name is not None and not _NAME_RE.match(name):
        raise InputError(f"--name {name!r} is not a usable folder name",
                         "use letters, digits, '.', '_' or '-' (at most 64 characters)")


def check_out(out: str | Path | None) -> None:
    """--out must be a folder nlab can create (or an empty one), checked before any work: its nearest existing
    ancestor must be a folder in which a folder can be made (probed with a temporary one, so that permissions,
    read-only mounts and /proc all answer as they would for the run)."""
    if out is None:
        return
    path = Path(out).expanduser().absolute()
    if path.exists():
        if not path.is_dir() or any(path.iterdir()):
            raise InputError(f"--out {out} already exists and is not an empty folder",
                             "choose a new folder (phases with --resume can continue that run instead)")
        parent = path
    else:
        parent = next(p for p in path.parents if p.exists())
        if not parent.is_dir():
            raise InputError(f"--out {out}: {parent} is a file, not a folder", "choose a path under a folder")
    try:
        tempfile.TemporaryDirectory(dir=parent, prefix=".nlab-probe-").cleanup()
    except OSError as e:
        raise InputError(f"--out {out}: a folder cannot be created in {parent} ({e.strerror})",
                         "choose a writable location") from None


def check_run_options(config: Any) -> None:
    """The options every run shares: a usable --name, a usable --out, and --resume (a run in its own folder)
    without --out/--name."""
    check_run_name(getattr(config, "name", None))
    if getattr(config, "resume", None) is not None and (config.out is not None or config.name is not None):
        raise InputError("--resume continues a run in its own folder: --out and --name do not apply",
                         "leave out --out and --name")
    check_out(getattr(config, "out", None))
    if hasattr(config, "tracker"):  # --tracker/NLAB_TRACKER: known names, libraries installed
        from phases.core.runs import trackers_of

        trackers_of(config)


def available_memory() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _size(n: float) -> str:
    units = ("B", "KB", "MB", "GB", "TB", "PB", "EB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:,.1f} {units[i]}"


def check_memory(config: Any) -> None:
    """Sizes against memory, before anything is allocated: a config may estimate its largest allocations
    (`memory_estimate()`: {what, naming the options it comes from: bytes}); more in all than this machine's
    memory is refused, naming the largest. A training phase calls it after the checks that say more (a
    --block-size longer than the text), before it builds its model."""
    estimate = getattr(config, "memory_estimate", None)
    if estimate is None:
        return
    terms = estimate()
    available = available_memory()
    if sum(terms.values()) > available:
        what = max(terms, key=terms.get)
        raise InputError(f"{what} needs about {_size(terms[what])}, more than this machine's memory "
                         f"({_size(available)})", f"use a smaller {what.split()[0]} (or smaller options it is "
                         "multiplied by)")


def check_options(config: Any) -> None:
    """Check every field of a config dataclass against its declared rule, then the options every run shares;
    raise InputError at the first that breaks it. None is never checked (it means the field's default); bools
    are not numbers here."""
    _check_fields(config)
    check_run_options(config)


def _check_fields(config: Any) -> None:
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            _check_fields(value)
            continue
        if value is None or isinstance(value, bool):
            continue
        rule = rule_of(f)
        option = option_name(f.name)
        if rule is not None and rule.choices is not None:
            if value not in rule.choices:
                raise not_one_of(option, value, rule.choices, rule.hint or _example(option, f.default))
            continue
        if not isinstance(value, (int, float)):
            continue
        hint = (rule.hint if rule else None) or _example(option, f.default)
        if not math.isfinite(value):
            raise InputError(f"{option} {value}: must be a finite number", hint)
        if rule is not None and not rule.admits(value):
            raise InputError(f"{option} {value}: {rule.describe()}", hint)


@dataclass
class TrainingRunOptions:
    """The options every training phase shares (device, seed, determinism, where data is read and the run written,
    --resume), declared once; a phase's config subclasses it and may give one another default (apoptosis's seed
    is nanoGPT's 1337)."""

    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    data_dir: str | None = None
    out: str | None = None
    name: str | None = None
    resume: str | None = None  # a run folder to continue (with its own options)
    tracker: list[str] | None = None  # experiment trackers fed as the run goes (default: $NLAB_TRACKER)
    tracker_uri: str | None = None  # MLflow's store (default: sqlite under logs/)

"""Which configurations a sweep runs: every combination (grid), random draws (random), or the rows of a standard
orthogonal array (taguchi: L4, L8, L9, L16, L18, L27, the smallest that holds the factors). TPE proposes its
configurations one at a time (phases/search/tpe.py).

The arrays are built, not typed in (except L18): over GF(q), the rows are every q-tuple of k digits and each column
is the value of one linear form of them; any two of the forms chosen (none a multiple of another) take every pair
of levels equally often, so every pair of columns is balanced (tests/test_sweep_designs.py checks all six). The
first k columns are the digits themselves, so that up to k factors form a full factorial."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from phases.core.errors import InputError
from phases.search.params import Param

# L18 (2^1 x 3^7), Taguchi's table with levels from 0
_L18 = """
00000000 00111111 00222222 01001122 01112200 01220011 02010212 02121020 02202101
10022110 10100221 10211002 11012021 11120102 11201210 12021201 12102012 12210120
"""


@dataclass(frozen=True)
class Array:
    name: str
    rows: np.ndarray  # runs x columns, levels from 0
    levels: tuple[int, ...]  # per column: 2 or 3


def _gf_array(name: str, q: int, k: int) -> Array:
    digits = np.array(list(itertools.product(range(q), repeat=k)))
    # one form per line through the origin (first non-zero coefficient 1): the digits first, then the others
    forms = [v for v in itertools.product(range(q), repeat=k) if any(v) and next(x for x in v if x) == 1]
    forms.sort(key=lambda v: (sum(x != 0 for x in v), [-x for x in v]))
    cols = np.stack([digits @ np.array(v) % q for v in forms], axis=1)
    return Array(name, cols, (q,) * len(forms))


def _l18() -> Array:
    rows = np.array([[int(c) for c in word] for word in _L18.split()])
    return Array("L18", rows, (2,) + (3,) * 7)


ARRAYS: tuple[Array, ...] = (_gf_array("L4", 2, 2), _gf_array("L8", 2, 3), _gf_array("L9", 3, 2),
                             _gf_array("L16", 2, 4), _l18(), _gf_array("L27", 3, 3))


@dataclass(frozen=True)
class Layout:
    """Factors placed on an array's columns: factor i on column `columns[i]`; a 2-level factor on a 3-level column
    takes its first level again for the third (Taguchi's dummy level)."""

    array: Array
    columns: tuple[int, ...]

    def level_index(self, run: int, factor: int, n_levels: int) -> int:
        level = int(self.array.rows[run, self.columns[factor]])
        return level if level < n_levels else 0  # the dummy level


def _place(array: Array, n_levels: list[int]) -> Layout | None:
    free = {2: [c for c, q in enumerate(array.levels) if q == 2], 3: [c for c, q in enumerate(array.levels) if q == 3]}
    columns: list[int | None] = [None] * len(n_levels)
    for want in (3, 2):  # three-level factors first: they can only go on three-level columns
        for i, n in enumerate(n_levels):
            if n != want:
                continue
            pool = free[2] or free[3] if n == 2 else free[3]
            if not pool:
                return None
            columns[i] = pool.pop(0)
    return Layout(array, tuple(columns))


def choose_array(factor_levels: list[int]) -> Layout:
    """The smallest standard array that holds factors with these numbers of levels (each 2 or 3)."""
    bad = [n for n in factor_levels if n not in (2, 3)]
    if bad:
        raise InputError(f"taguchi: a factor with {bad[0]} level(s); the arrays hold factors of 2 or 3 levels",
                         "give each --param 2 or 3 values (a range is cut into --levels points: use 2 or 3)")
    for array in ARRAYS:
        layout = _place(array, factor_levels)
        if layout is not None:
            return layout
    n2, n3 = factor_levels.count(2), factor_levels.count(3)
    raise InputError(f"taguchi: {len(factor_levels)} factors ({n2} of 2 levels, {n3} of 3) are more than the largest "
                     "array holds (L16: 15 of 2 levels; L27: 13 in all)",
                     "sweep fewer factors, fix some after --, or use --design random or tpe")


def grid(params: list[Param], levels: int) -> list[dict]:
    names = [p.name for p in params]
    return [dict(zip(names, combo)) for combo in itertools.product(*(p.levels(levels) for p in params))]


def random(params: list[Param], trials: int, seed: int) -> list[dict]:
    """`trials` distinct draws (a configuration drawn again is drawn anew: each runs once)."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict] = {}
    for _ in range(100 * trials):
        draw = {p.name: p.sample(rng) for p in params}
        out.setdefault(repr(draw), draw)
        if len(out) == trials:
            return list(out.values())
    raise InputError(f"--trials {trials}: the --param values hold only about {len(out)} distinct configurations",
                     "ask for fewer trials, or use --design grid to run them all")


def taguchi(params: list[Param], levels: int) -> tuple[Layout, list[dict]]:
    values = [p.levels(levels) for p in params]
    layout = choose_array([len(v) for v in values])
    configs = [{p.name: v[layout.level_index(r, i, len(v))] for i, (p, v) in enumerate(zip(params, values))}
               for r in range(len(layout.array.rows))]
    return layout, configs

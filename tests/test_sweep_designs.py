"""nlab sweep's designs: the six orthogonal arrays are balanced and orthogonal, the smallest fitting one is chosen,
Taguchi's analysis recovers known main effects, and --param SPECs parse against the phase's own options."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from phases.core.errors import InputError
from phases.moe.config import TrainMoEConfig
from phases.search import designs, taguchi
from phases.search.params import parse_param, parse_params


@pytest.mark.parametrize("array", designs.ARRAYS, ids=lambda a: a.name)
def test_array_is_balanced_and_orthogonal(array):
    runs, cols = array.rows.shape
    assert runs == int(array.name[1:]) and cols == len(array.levels)
    expected_cols = {"L4": 3, "L8": 7, "L9": 4, "L16": 15, "L18": 8, "L27": 13}[array.name]
    assert cols == expected_cols
    for c in range(cols):  # balanced: each level equally often
        counts = Counter(array.rows[:, c].tolist())
        assert sorted(counts) == list(range(array.levels[c])) and len(set(counts.values())) == 1
    for i, j in itertools.combinations(range(cols), 2):  # orthogonal: each level pair equally often
        pairs = Counter(zip(array.rows[:, i].tolist(), array.rows[:, j].tolist()))
        assert len(pairs) == array.levels[i] * array.levels[j], (array.name, i, j)
        assert len(set(pairs.values())) == 1, (array.name, i, j, pairs)


@pytest.mark.parametrize("levels, name", [([2, 2, 2], "L4"), ([2] * 4, "L8"), ([3] * 4, "L9"), ([2] * 8, "L16"),
                                          ([2] + [3] * 7, "L18"), ([3] * 5, "L18"), ([3] * 13, "L27"),
                                          ([2, 3, 3], "L9")])
def test_smallest_array_that_holds_the_factors(levels, name):
    layout = designs.choose_array(levels)
    assert layout.array.name == name
    assert len(set(layout.columns)) == len(levels)  # one column per factor
    for f, n in enumerate(levels):
        used = {layout.level_index(r, f, n) for r in range(len(layout.array.rows))}
        assert used == set(range(n))


@pytest.mark.parametrize("levels", [[3] * 14, [2] * 16, [2, 2, 4]])
def test_too_many_factors_or_levels_is_refused(levels):
    with pytest.raises(InputError):
        designs.choose_array(levels)


def test_main_effects_recover_an_additive_model():
    """Four 3-level factors on L9 with known additive effects and seed noise: the best level of each factor and the
    predicted mean at the best combination come out as built."""
    effects = {"a": [0.0, 0.3, 0.1], "b": [0.2, 0.0, 0.05], "c": [0.0, 0.1, 0.25], "d": [0.05, 0.0, 0.02]}
    factors = [(k, [0, 1, 2]) for k in effects]
    layout = designs.choose_array([3] * 4)
    rng = np.random.default_rng(0)
    runs = []
    for r in range(9):
        levels = {k: layout.level_index(r, i, 3) for i, k in enumerate(effects)}
        mean = 1.0 + sum(effects[k][v] for k, v in levels.items())
        runs.append({"levels": levels, "values": (mean + rng.normal(0, 0.002, 3)).tolist()})
    m = taguchi.main_effects(runs, factors, lower_is_better=False)
    assert m["predicted_best"] == {"a": 1, "b": 0, "c": 2, "d": 0}
    assert m["predicted_mean"] == pytest.approx(1.0 + 0.3 + 0.2 + 0.25 + 0.05, abs=0.01)
    assert [f["rank"] for f in m["factors"]] == [1, 3, 2, 4]  # ranked by the range of their level means
    low = taguchi.main_effects(runs, factors, lower_is_better=True)  # a loss: the opposite levels win
    assert low["predicted_best"] == {"a": 0, "b": 1, "c": 0, "d": 1}
    assert taguchi.sn_ratio([0.5, 0.5], False) == pytest.approx(-10 * np.log10(4))
    assert taguchi.sn_ratio([2.0, 2.0], True) == pytest.approx(-10 * np.log10(4))


def test_param_specs():
    lr = parse_param("lr=log:1e-4..1e-2", TrainMoEConfig, "train-moe")
    assert (lr.lo, lr.hi, lr.scale, lr.kind) == (1e-4, 1e-2, "log", "float")
    assert lr.levels(3) == [1e-4, 1e-3, 1e-2]
    k = parse_param("--top-k=1,2", TrainMoEConfig, "train-moe")
    assert k.values == (1, 2) and k.argv(2) == ["--top-k", "2"]
    s = parse_param("strategy=joint|mixed", TrainMoEConfig, "train-moe")
    assert s.values == ("joint", "mixed")
    assert parse_param("nesterov=true,false", TrainMoEConfig, "train-moe").argv(False) == ["--no-nesterov"]
    assert parse_param("expert_hidden=32..128", TrainMoEConfig, "train-moe").levels(3) == [32, 80, 128]
    assert len(designs.grid(parse_params(["lr=1e-3,4e-3", "top-k=1,2,3"], TrainMoEConfig, "x"), 3)) == 6
    draws = designs.random([lr, k], 5, seed=0)
    assert len({repr(d) for d in draws}) == 5 and all(1e-4 <= d["lr"] <= 1e-2 for d in draws)
    assert draws == designs.random([lr, k], 5, seed=0)  # the design seed fixes the draws


@pytest.mark.parametrize("spec, says", [
    ("lr", "expected NAME=SPEC"), ("lrr=1,2", "no option 'lrr'"), ("seed=1,2", "sets it for every run"),
    ("lr=1e-3..", "LO..HI"), ("lr=abc", "not a valid float"), ("lr=1e-2..1e-3", "low end must be below"),
    ("lr=log:0..1", "positive low end"), ("lr=sq:1..2", "unknown scale"), ("strategy=joint..mixed", "categorical"),
    ("strategy=joint|nope", "'nope' is not one of"), ("top-k=0,1", "must be at least 1"), ("lr=1e-3,,2e-3", "empty"),
    ("top-k=1,1", "listed twice"), ("dropout=0..1.5", "must be in"),
])
def test_bad_specs(spec, says):
    with pytest.raises(InputError) as e:
        parse_param(spec, TrainMoEConfig, "train-moe")
    assert says in e.value.message

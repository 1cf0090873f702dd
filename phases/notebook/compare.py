"""`nlab runs compare A B`: the paired test that fits the phase, through phases/core/compare.py (the one
implementation every phase uses): McNemar and a paired bootstrap over the items both runs predicted
(`predictions.jsonl`, per-item `correct`: classifiers, eval-gsm8k, ensembles), or a paired bootstrap over
apoptosis's per-block validation losses (`val_block_losses.json`)."""

from __future__ import annotations

from pathlib import Path

from phases.core import render
from phases.core.errors import InputError
from phases.core.jsonio import iter_jsonl, read_json
from phases.core.runs import Run, load_run_dir
from phases.notebook import index
from phases.notebook.config import PairConfig

VAL_BLOCKS = "val_block_losses.json"  # written by apoptosis (phases/apoptosis/train.py)
_SAME_BLOCKS = ("dataset", "block_size")  # apoptosis options that decide which text each block is


def _need(run_dir: Path, name: str, phase: str) -> Path:
    path = run_dir / name
    if not path.is_file():
        raise InputError(f"{run_dir}: no {name}, so nothing to pair item by item",
                         f"compare {phase} runs that completed their evaluation (runs compare pairs "
                         f"predictions.jsonl, or apoptosis's {VAL_BLOCKS})")
    return path


def correctness(run_dir: Path, phase: str) -> dict:
    """Per-item correctness keyed by item id (by task and id where ids repeat across a multi-task run's tasks)."""
    path = _need(run_dir, Run.PREDICTIONS, phase)
    records = list(iter_jsonl(path))
    if any("correct" not in r or "id" not in r for r in records):
        raise InputError(f"{path}: a record has no 'id' or 'correct'",
                         "runs compare pairs per-item correctness; this run's predictions do not carry it")
    ids = [r["id"] for r in records]
    unique = len(set(map(repr, ids))) == len(ids)
    return {(r["id"] if unique else f"{r.get('task')}:{r['id']}"): bool(r["correct"]) for r in records}


def _losses(a: dict, b: dict) -> tuple[list, list]:
    differ = [k for k in _SAME_BLOCKS if a["config"].get(k) != b["config"].get(k)]
    if differ:
        raise InputError(f"the two apoptosis runs held out different text ({', '.join(differ)} differ), so their "
                         "blocks are not the same items", "compare runs on the same --dataset and --block-size")
    la, lb = (read_json(_need(r["dir"], VAL_BLOCKS, "apoptosis"), "validation block losses") for r in (a, b))
    if len(la) != len(lb):
        raise InputError(f"{a['dir']} has {len(la)} validation blocks and {b['dir']} {len(lb)}",
                         "compare runs that held out the same text")
    return la, lb


def pair(config: PairConfig) -> dict:
    """The paired test of run A against run B: the runs, the phase, the test's name and its result (with its
    verdict sentence). `runs compare` prints it; `runs report` writes it."""
    from phases.core.compare import paired_correctness, paired_losses

    a_dir, b_dir = index.resolve_run(config.run_a, "A"), index.resolve_run(config.run_b, "B")
    a, b = load_run_dir(a_dir), load_run_dir(b_dir)
    phase, other = a["manifest"].get("phase"), b["manifest"].get("phase")
    if phase != other:
        raise InputError(f"A is a {phase} run and B a {other} run: no paired test applies across phases",
                         "compare two runs of the same phase (nlab runs list --phase PHASE lists them)")
    la, lb = f"A ({a_dir.name})", f"B ({b_dir.name})"
    if phase == "apoptosis":
        test, result = "paired bootstrap on validation block losses", paired_losses(*_losses(a, b), la, lb)
    else:
        ca, cb = correctness(a_dir, phase), correctness(b_dir, phase)
        if not any(k in cb for k in ca):
            raise InputError(f"{a_dir} and {b_dir} share no predicted item",
                             "compare runs evaluated on the same items (same dataset and split)")
        test, result = "McNemar exact + paired bootstrap on per-item correctness", paired_correctness(ca, cb, la, lb)
    return {"run_a": str(a_dir), "run_b": str(b_dir), "phase": phase, "test": test, **result}


RUNS_KEYS = ("run_a", "run_b", "phase", "test", "verdict")  # what a table of the result leaves out


def result_rows(result: dict) -> list[tuple]:
    """The scalar numbers of a pair's result, as (name, value) rows."""
    return [(k, v) for k, v in result.items() if k not in RUNS_KEYS and not isinstance(v, (list, dict))]


def compare(config: PairConfig) -> dict:
    result = pair(config)
    render.table(f"{result['phase']}: {result['test']}", ["", "value"], result_rows(result))
    render.say(result["verdict"], markup=False)
    return result

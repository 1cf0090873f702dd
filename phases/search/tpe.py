"""`--design tpe`: Optuna's TPE sampler proposes each configuration from the finished ones; a median or
successive-halving pruner stops a trial whose validation curve (the mean over its seeds, step by step, from the
seeds' history.jsonl) falls behind. The study lives in `study.db` (SQLite) in the sweep folder, so it resumes and
opens with Optuna's own tools (`optuna.load_study(study_name="sweep", storage="sqlite:///.../study.db")`).

A resumed study keeps every finished trial (complete, pruned, or failed with all its seeds run). A trial a kill
left `RUNNING` is marked failed (`interrupted`) and its configuration tried again first, reusing its finished
seeds; only finished trials count towards --trials."""

from __future__ import annotations

from pathlib import Path

from phases.core import render
from phases.search.config import SearchConfig
from phases.search.params import Param
from phases.search.trials import Trials

STUDY = "sweep"
DB = "study.db"


def storage_url(sweep_dir: Path) -> str:
    return f"sqlite:///{sweep_dir / DB}"


def _sampler(c: SearchConfig, done: int):
    import optuna

    # a resumed study continues the sampler's random stream elsewhere, so that it draws no startup configuration twice
    return optuna.samplers.TPESampler(seed=c.design_seed + done, n_startup_trials=max(2, min(10, c.trials // 3)))


def _pruner(c: SearchConfig):
    import optuna

    if c.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(2, min(5, c.trials // 4)))
    if c.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def _interrupted(study) -> set[int]:
    """Trials a kill left unfinished: each has a retry naming it."""
    return {t.user_attrs["retry_of"] for t in study.get_trials(deepcopy=False) if "retry_of" in t.user_attrs}


def _finished(study) -> list:
    skip = _interrupted(study)
    return [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.number not in skip]


def optimise(c: SearchConfig, trials: Trials, params: list[Param], first: dict | None) -> dict:
    """Run TPE trials until --trials have finished; `first`: a configuration to try first (the baseline)."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=STUDY, storage=storage_url(trials.dir), load_if_exists=True,
                                direction="minimize" if c.mode == "min" else "maximize", pruner=_pruner(c))
    if not study.trials and first is not None:
        study.enqueue_trial({p.label: first[p.name] for p in params})
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # left by a killed sweep
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        render.warn(f"tpe: trial {t.number} was interrupted; its configuration runs again")
    _backfill(study, trials, params)
    study.sampler = _sampler(c, len(study.trials))
    while len(_finished(study)) < c.trials:
        trial = study.ask()
        values = {p.name: p.suggest(trial) for p in params}
        reported: set[int] = set()

        def watch(curves: dict[int, list], trial=trial) -> bool:
            steps = set.intersection(*(set(s for s, _ in pts) for pts in curves.values())) if curves else set()
            for step in sorted(steps - reported):
                trial.report(sum(dict(pts)[step] for pts in curves.values()) / len(curves), step)
                reported.add(step)
            return len(reported) >= 2 and trial.should_prune()  # never on a trial's first point

        pruned = trials.run_watched(trial.number, values, watch)
        rows = trials.seed_rows(values)
        done = [r["select"] for r in rows if r["status"] == "completed"]
        if pruned and len(done) < len(rows):  # (seeds that ended before the stop make a complete trial)
            study.tell(trial, state=TrialState.PRUNED)
        elif done:
            study.tell(trial, sum(done) / len(done))
        else:
            study.tell(trial, state=TrialState.FAIL)
        _record(trials, study.trials[trial.number], params)
        render.say(f"tpe: trial {trial.number} {_state(study.trials[trial.number])} "
                   f"({len(_finished(study))} of {c.trials} finished)")
    finished = _finished(study)
    return {"study": str(trials.dir / DB), "study_name": STUDY, "n_interrupted": len(_interrupted(study)),
            **{f"n_{s}": sum(_state(t) == s for t in finished) for s in ("complete", "pruned", "failed")}}


def _state(t) -> str:
    return {"COMPLETE": "complete", "PRUNED": "pruned"}.get(t.state.name, "failed")


def _values(t, params: list[Param]) -> dict:
    return {p.name: t.params[p.label] for p in params}


def _record(trials: Trials, t, params: list[Param]) -> None:
    state = _state(t)
    trials.record(t.number, _values(t, params), state=None if state == "complete" else state,
                  **({"value": t.value} if t.value is not None else {}),
                  **({"retry_of": t.user_attrs["retry_of"]} if "retry_of" in t.user_attrs else {}))


def _backfill(study, trials: Trials, params: list[Param]) -> None:
    """A trial the study finished whose record a kill prevented: recorded now (neither lost nor written twice)."""
    for t in _finished(study):
        if t.number not in trials.records:
            _record(trials, t, params)

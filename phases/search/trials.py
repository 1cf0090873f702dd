"""Running configurations, each under the sweep's seeds, through seed-sweep's launchers; and `trials.jsonl`.

A configuration's runs live in `configs/<key>/seed-S/` (ordinary run folders; their stderr in `seed-S.log`
beside them), `<key>` spelling its values, so the same configuration met again (a TPE trial retried after a
kill) finds its finished seeds. A trial is finished when each of its seeds has run to an end (completed or
failed); then one record is appended to `trials.jsonl`. A resumed sweep runs only the trials without a record,
and of those only the seeds without a completed run folder (an unfinished one is set aside as `.attemptN`)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from pathlib import Path
from typing import Callable

from phases.core.errors import InputError
from phases.core.jsonio import JsonlWriter, read_json, read_jsonl
from phases.search.config import SearchConfig
from phases.search.params import Param
from phases.sweep import launch

TRIALS = "trials.jsonl"


def config_key(values: dict) -> str:
    """A folder name spelling the configuration (`lr=0.001_top-k=2`), with a hash when it is too long."""
    slug = "_".join(f"{k.replace('_', '-')}={v!r}" for k, v in values.items())
    slug = re.sub(r"[^A-Za-z0-9._=+-]", "", slug.replace("'", ""))
    if len(slug) <= 80:
        return slug
    return slug[:72] + "-" + hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:7]


class Trials:
    def __init__(self, sweep_dir: Path, c: SearchConfig, params: list[Param], history_key: str | None = None):
        self.dir, self.c, self.params = sweep_dir, c, params
        self.history_key = history_key  # what a pruner watches in the seeds' validation history
        self.threads = launch.threads_per_job(c)
        self._writer = JsonlWriter(sweep_dir / TRIALS)  # first: it cuts a record a kill left half-written
        self.records = {r["trial"]: r for r in read_jsonl(sweep_dir / TRIALS)}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._writer.close()

    # --- folders ---------------------------------------------------------------------------------------------
    def seed_dir(self, values: dict, seed: int) -> Path:
        return self.dir / "configs" / config_key(values) / f"seed-{seed}"

    def _job(self, values: dict, seed: int) -> launch.SeedJob:
        d = self.seed_dir(values, seed)
        args = [*self.c.phase_args, *(a for p in self.params for a in p.argv(values[p.name]))]
        return launch.SeedJob(seed, launch.seed_argv(self.c.phase, args, seed, d), str(d),
                              str(d.with_name(f"{d.name}.log")), self.threads, str(d.with_name(f".stop-{d.name}")))

    def _pending(self, values: dict) -> list[launch.SeedJob]:
        jobs = []
        for s in self.c.seed_values():
            d = self.seed_dir(values, s)
            if launch.finished(d):
                continue
            if d.exists():
                launch.set_aside(d)
            Path(d.with_name(f".stop-{d.name}")).unlink(missing_ok=True)
            jobs.append(self._job(values, s))
        return jobs

    # --- running ---------------------------------------------------------------------------------------------
    def run_batch(self, trials: dict[int, dict]) -> None:
        """Run the unrecorded ones of these trials (number -> values) together, so that every worker is busy;
        each trial is recorded as soon as its last seed ends."""
        todo = {n: v for n, v in trials.items() if n not in self.records}
        jobs = {n: self._pending(v) for n, v in todo.items()}
        owner = {id(j): n for n, js in jobs.items() for j in js}
        left = {n: len(js) for n, js in jobs.items()}
        for n in [n for n, k in left.items() if k == 0]:  # every seed finished before a kill: record it now
            self.record(n, todo[n])

        def done(job: launch.SeedJob, _result: dict) -> None:
            n = owner[id(job)]
            with self._lock:
                left[n] -= 1
                if left[n] == 0:
                    self.record(n, todo[n])

        launch.run_jobs(self.c, [j for js in jobs.values() for j in js], self.dir, on_done=done)

    def run_watched(self, number: int, values: dict, watch: Callable[[dict[int, list]], bool]) -> bool:
        """Run one trial's seeds while `watch` is shown their validation curves every second ({seed: [(step,
        value), ...]}); when it answers True the seeds are stopped (pruned). Returns whether they were."""
        jobs = self._pending(values)
        worker = threading.Thread(target=launch.run_jobs, args=(self.c, jobs, self.dir), daemon=True)
        worker.start()
        pruned = False
        while worker.is_alive():
            worker.join(1.0)
            if not pruned and self.history_key and watch(self.curves(values)):
                pruned = True
                for j in jobs:
                    Path(j.stop_file).touch()
        return pruned

    def curves(self, values: dict) -> dict[int, list]:
        """Each seed's validation history so far: complete lines only (a run may be writing the last one)."""
        out = {}
        for s in self.c.seed_values():
            path = self.seed_dir(values, s) / "history.jsonl"
            try:
                lines = path.read_text(errors="replace").split("\n")[:-1]
            except OSError:
                lines = []
            points = []
            for line in lines:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("split") == "val" and isinstance(rec.get(self.history_key), (int, float)):
                    points.append((int(rec["step"]), float(rec[self.history_key])))
            out[s] = points
        return out

    # --- results -------------------------------------------------------------------------------------------
    def seed_rows(self, values: dict) -> list[dict]:
        rows = []
        for s in self.c.seed_values():
            d = self.seed_dir(values, s)
            row = {"seed": s, "run_dir": str(d.relative_to(self.dir)), "status": "completed" if launch.finished(d)
                   else "failed"}
            if row["status"] == "failed":
                row["error"] = launch.log_tail(d.with_name(f"{d.name}.log"))
            else:
                m = read_json(d / "metrics.json")
                for key in (self.c.select, self.c.report):
                    if not isinstance(m.get(key), (int, float)):
                        raise InputError(f"{d}: metric {key!r} is not in its metrics.json",
                                         "choose --select/--report among: " + ", ".join(
                                             k for k, v in m.items() if isinstance(v, (int, float))))
                row["select"], row["report"] = float(m[self.c.select]), float(m[self.c.report])
            rows.append(row)
        return rows

    def record(self, number: int, values: dict, state: str | None = None, **extra) -> dict:
        """Append the finished trial's record (once: a trial already recorded keeps its record)."""
        if number in self.records:
            return self.records[number]
        rows = self.seed_rows(values)
        done = sum(r["status"] == "completed" for r in rows)
        state = state or ("complete" if done == len(rows) else "partial" if done else "failed")
        rec = {"trial": number, "config": config_key(values),
               "params": {k.replace("_", "-"): v for k, v in values.items()}, "state": state, "seeds": rows, **extra}
        self._writer.write(rec)
        self.records[number] = rec
        return rec

"""Experiment trackers: the points of a run's history, its config and its final metrics, sent to TensorBoard,
MLflow or Weights & Biases as the run goes (`--tracker NAME`, repeatable, or `NLAB_TRACKER=a,b`), or after the
fact (`nlab runs export`).

One class per tracker, each importing its library only when asked for; a tracker whose library is not installed
is an InputError naming the extra that installs it (`pip install 'nlab[mlflow]'`), raised before a run folder
is created. `phases/core/runs.py` is the only caller during a run: `Run.open` resolves the names, `with run:`
starts them (`Trackers.start`), every history record goes through `Trackers.log`, `Run.write_metrics` through
`Trackers.final`, and leaving the run closes them with its status. What a tracker needs to continue after a
`--resume` (MLflow's run id, W&B's id) is kept in the manifest under `trackers`.

A history point `{"step": 3, "split": "val", "acc": 0.9}` becomes the scalar `val/acc` at step 3 (a point of
`methods/ewc/history.jsonl` becomes `ewc/val/acc`); strings and the reserved keys (step, split, stage, ...) are
not metrics. The final metrics are sent under their own names (`test_acc`)."""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable

from phases.core import paths
from phases.core.errors import InputError, NlabError
from phases.history.load import RESERVED  # keys of a history point that are not metrics (one definition)

ENV = "NLAB_TRACKER"
# the library each tracker imports (checked before a run starts) and the extra that installs it
LIBRARIES = {"tensorboard": ("torch.utils.tensorboard", "tensorboard"),
             "mlflow": ("mlflow.tracking", "mlflow"),
             "wandb": ("wandb", "wandb")}
NAMES = tuple(LIBRARIES)


def requested(given: Iterable[str] | None) -> list[str]:
    """The trackers asked for: `--tracker` (repeatable, commas allowed), else $NLAB_TRACKER; each checked for name
    and installed library."""
    raw = list(given or []) or [os.environ.get(ENV, "")]
    names = [n.strip().lower() for item in raw for n in str(item).split(",") if n.strip()]
    source = "--tracker" if given else ENV
    for n in names:
        if n not in LIBRARIES:
            raise InputError(f"{source} {n}: unknown tracker", f"use one of: {', '.join(NAMES)} (repeatable)")
    names = list(dict.fromkeys(names))
    for n in names:
        require(n)
    return names


def require(name: str, option: str = "--tracker") -> None:
    """Import the tracker's library, or an InputError naming the extra that installs it."""
    module, extra = LIBRARIES[name]
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise InputError(f"{option} {name}: its library is not installed ({e})",
                         f"pip install 'nlab[{extra}]'" + (f" (or leave out --tracker {name})"
                                                            if option == "--tracker" else "")) from None


def default_mlflow_uri() -> str:
    return f"sqlite:///{paths.logs_dir() / 'mlflow.db'}"


def points_of(record: dict, prefix: str = "") -> dict[str, float]:
    """The scalars of one history record, named `[prefix/]split/metric`."""
    split = record.get("split")
    head = "/".join(p for p in (prefix, str(split) if split is not None else "") if p)
    return {f"{head}/{k}" if head else k: float(v) for k, v in record.items()
            if k not in RESERVED and isinstance(v, (int, float)) and not isinstance(v, bool)}


def finals_of(metrics: dict) -> dict[str, float]:
    """The scalar final metrics (metrics.json's numbers; paths, lists and flags left out)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """A config as flat `a.b` keys with scalar values (lists as JSON), for trackers' parameter tables."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


class RunInfo:
    """What a tracker is told about the run it follows."""

    def __init__(self, phase: str, run_id: str, run_dir: Path, config: dict, state: dict | None = None,
                 resumed: bool = False):
        self.phase, self.run_id, self.dir, self.config = phase, run_id, Path(run_dir), config
        self.state = state or {}  # what this tracker recorded in the manifest last time (resume)
        self.resumed = resumed


class TensorBoard:
    """Event files in the run folder's `tb/` (or `logdir`): scalars `split/metric` at their step, the config as
    text and, with the final metrics, as hparams. Flushed after every record. A resumed run's writer purges the points from its first step on
    (TensorBoard then shows the re-run steps once)."""

    name = "tensorboard"

    def __init__(self, info: RunInfo, uri: str | None = None, logdir: Path | None = None):
        self.info = info
        self.logdir = Path(logdir) if logdir else info.dir / "tb"
        self._writer = None
        self._last_step = 0

    def _open(self, step: int | None):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            purge = step if self.info.resumed and step is not None else None
            self._writer = SummaryWriter(log_dir=str(self.logdir), purge_step=purge, flush_secs=5)
            self._writer.add_text("config", "```json\n" + json.dumps(self.info.config, indent=1, default=str)
                                  + "\n```", global_step=step or 0)
        return self._writer

    def start(self) -> dict:
        if not self.info.resumed:
            self._open(None)
        return {"logdir": os.path.relpath(self.logdir, self.info.dir)}

    def log(self, scalars: dict[str, float], step: int) -> None:
        w = self._open(step)
        for k, v in scalars.items():
            w.add_scalar(k, v, global_step=step)
        w.flush()  # on disk with the history record: a killed run's event file holds what its history holds
        self._last_step = max(self._last_step, step)

    def final(self, metrics: dict[str, float]) -> None:
        from torch.utils.tensorboard.summary import hparams

        w = self._open(self._last_step)
        hp = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
              for k, v in flatten(self.info.config).items()}
        for summary in hparams(hp, metrics):
            w.file_writer.add_summary(summary)
        for k, v in metrics.items():
            w.add_scalar(k, v, global_step=self._last_step)

    def close(self, status: str) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MLflow:
    """An MLflow run in the experiment `nlab/<phase>` of the store at `uri` (default: `logs/mlflow.db`, SQLite),
    named by the nlab run id: params = the flattened config, metrics per step, the final metrics, tags for the
    run folder. Each history record is sent as it is written (one batch per record, like history.jsonl's flush,
    so a killed run's store holds what its history holds); a resumed run continues the same MLflow run (its id is
    in the manifest)."""

    name = "mlflow"
    BATCH = 900  # MLflow takes at most 1,000 metrics per batch

    def __init__(self, info: RunInfo, uri: str | None = None, logdir: Path | None = None):
        self.info = info
        self.uri = uri or info.state.get("uri") or default_mlflow_uri()
        self._last_step = 0

    def start(self) -> dict:
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        if self.uri.startswith("sqlite:///"):
            Path(self.uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            run_id = self.info.state.get("run_id") if self.info.state.get("uri", self.uri) == self.uri else None
            if run_id is not None:
                self.run_id = run_id
                self.client.update_run(run_id, status="RUNNING")
                return {"uri": self.uri, "run_id": run_id}
            name = f"nlab/{self.info.phase}"
            exp = self.client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(name)
            run = self.client.create_run(exp_id, run_name=self.info.run_id,
                                         tags={"nlab.run_id": self.info.run_id, "nlab.phase": self.info.phase,
                                               "nlab.run_dir": str(self.info.dir)})
        except Exception as e:  # a store that cannot be opened is the user's option at fault
            raise InputError(f"--tracker-uri {self.uri}: MLflow could not open the store ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})",
                             "give a tracking URI MLflow accepts (sqlite:///PATH.db, a folder, http://HOST:PORT)")
        self.run_id = run.info.run_id
        params = [Param(k[:250], str(v)[:6000]) for k, v in flatten(self.info.config).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        self.client.log_batch(self.run_id, tags=[RunTag("mlflow.note.content",
                                                        f"nlab {self.info.phase} run {self.info.run_id}")])
        return {"uri": self.uri, "run_id": self.run_id}

    def log(self, scalars: dict[str, float], step: int, now_ms: int | None = None) -> None:
        from mlflow.entities import Metric

        ts = now_ms if now_ms is not None else int(time.time() * 1000)
        batch = [Metric(k, v, ts, step) for k, v in scalars.items()]
        for i in range(0, len(batch), self.BATCH):
            self.client.log_batch(self.run_id, metrics=batch[i:i + self.BATCH])
        self._last_step = max(self._last_step, step)

    def final(self, metrics: dict[str, float]) -> None:
        self.log(metrics, self._last_step)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if status == "completed" else "FAILED")


class Wandb:
    """A W&B run (project `$WANDB_PROJECT`, default `nlab`; group = the phase; name = the nlab run id) written under
    the run folder's `wandb/`: offline unless the user is logged in (or `WANDB_MODE` says otherwise; `wandb sync`
    uploads an offline run later). Points are logged against a `step` metric, so histories whose steps start again
    (one per EWC method) keep every point."""

    name = "wandb"

    def __init__(self, info: RunInfo, uri: str | None = None, logdir: Path | None = None):
        self.info = info

    @staticmethod
    def _mode() -> str:
        """$WANDB_MODE, else online when the user has logged in (`wandb login` keeps the key in ~/.netrc, or
        $WANDB_API_KEY), else offline."""
        if os.environ.get("WANDB_MODE"):
            return os.environ["WANDB_MODE"]
        if os.environ.get("WANDB_API_KEY"):
            return "online"
        import netrc
        from urllib.parse import urlparse

        host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
        try:
            return "online" if netrc.netrc(os.environ.get("NETRC")).authenticators(host) else "offline"
        except (OSError, netrc.NetrcParseError):
            return "offline"

    def start(self) -> dict:
        import uuid

        import wandb

        run_id = self.info.state.get("id") or uuid.uuid4().hex[:12]
        self.mode = self.info.state.get("mode") if self.info.resumed and not os.environ.get("WANDB_MODE") \
            else self._mode()
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "nlab"), name=self.info.run_id, id=run_id,
                              group=self.info.phase, job_type=self.info.phase, dir=str(self.info.dir),
                              mode=self.mode or "offline", config=flatten(self.info.config), resume="allow",
                              reinit="create_new", settings=wandb.Settings(silent=True, console="off"))
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")
        return {"id": run_id, "mode": self.mode, "dir": "wandb"}

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.run.log({**scalars, "step": step})

    def final(self, metrics: dict[str, float]) -> None:
        self.run.summary.update(metrics)

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "completed" else 1)


CLASSES = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": Wandb}


class Trackers:
    """The trackers of one run, fed together. A tracker that fails while the run goes is warned about once and
    dropped: a tracker never stops an experiment (failing to start one does, before any work)."""

    def __init__(self, trackers: list):
        self.trackers = trackers

    @classmethod
    def start(cls, names: list[str], info: RunInfo, uri: str | None = None, logdir: Path | None = None,
              states: dict | None = None) -> tuple["Trackers", dict]:
        started, recorded = cls([]), {}
        for n in names:
            own = RunInfo(info.phase, info.run_id, info.dir, info.config, (states or {}).get(n), info.resumed)
            tracker = CLASSES[n](own, uri=uri if n == "mlflow" else None, logdir=logdir)
            try:
                recorded[n] = tracker.start()
            except Exception as e:
                started.close("failed")  # those already started say the run failed
                if isinstance(e, NlabError):
                    raise
                raise NlabError(f"tracker {n} could not start: {type(e).__name__}: {e}",
                                f"leave out --tracker {n} (and unset NLAB_TRACKER), or fix its setup") from e
            started.trackers.append(tracker)
        return started, recorded

    def _each(self, method: str, *args) -> None:
        for t in list(self.trackers):
            try:
                getattr(t, method)(*args)
            except Exception as e:  # noqa: BLE001 - a tracker's failure must not end the run
                from phases.core import render

                render.warn(f"tracker {t.name}: {type(e).__name__}: {e}; no more points are sent to it")
                self.trackers.remove(t)

    def log(self, record: dict, prefix: str = "") -> None:
        scalars = points_of(record, prefix)
        step = record.get("step")
        if scalars and isinstance(step, (int, float)) and math.isfinite(step):
            self._each("log", scalars, int(step))

    def final(self, metrics: dict) -> None:
        self._each("final", finals_of(metrics))

    def close(self, status: str) -> None:
        self._each("close", status)
        self.trackers = []

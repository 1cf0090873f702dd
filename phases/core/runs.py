"""Run folders: `logs/<phase>/<run_id>/` with config, manifest, metrics, history and predictions.

A phase validates its input first (raising InputError, so nothing is written for a rejected run), then opens a
run with `Run.create(...)` or `Run.resume(...)` and does its work inside `with run:`. The manifest's status is
kept true whatever happens: `running` while inside, `completed` on a normal exit, `failed` with the exit reason
on any exception, Ctrl-C or SIGTERM (a `kill -9` cannot be caught: its manifest stays `running`, and the run
can be resumed)."""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
from importlib import metadata
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable

from phases.core import paths, provenance
from phases.core.errors import InputError, NlabError
from phases.core.options import check_out, check_run_name, option_name
from phases.core.jsonio import JsonlWriter, atomic_write_json, read_json

# A resumed run lives in its own folder, and trackers only watch it: these never take part in the comparison with
# the saved config.
RESUME_ALWAYS_DIFFER = ("resume", "out", "name", "tracker", "tracker_uri")


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> dict | None:
    """The project's commit (and whether the tree had local changes), when nlab runs from a git checkout."""
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def _unique_run_dir(root: Path, name: str | None) -> Path:
    """A new folder `root/<timestamp>[-name]`; never reuses an existing one (mkdir is the lock)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        run_id = stamp + (f"-{i}" if i > 1 else "") + (f"-{name}" if name else "")
        try:
            (root / run_id).mkdir()
            return root / run_id
        except FileExistsError:
            continue
    raise NlabError(f"could not create a new run folder under {root}")


class Interrupted(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that the manifest records the interruption."""


class Run:
    """One run folder. Use `Run.create` or `Run.resume`, then `with run: ...`."""

    CONFIG, MANIFEST, METRICS = "config.json", "manifest.json", "metrics.json"
    HISTORY, PREDICTIONS = "history.jsonl", "predictions.jsonl"

    def __init__(self, phase: str, run_dir: Path, manifest: dict, config: dict):
        self.phase = phase
        self.dir = run_dir
        self.manifest = manifest
        self.config = config
        self._writers: dict[str, JsonlWriter] = {}
        self._old_sigterm: Any = None
        self._tracking: tuple[list[str], str | None] = ([], None)  # trackers to start on entry, and their URI
        self._trackers: Any = None  # phases.core.trackers.Trackers while inside `with run:`

    # --- opening -------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, phase: str, config: dict, out: Path | str | None = None, name: str | None = None,
               argv: list[str] | None = None) -> "Run":
        check_run_name(name)
        check_out(out)
        if out is not None:
            run_dir = Path(out).resolve()
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            run_dir = _unique_run_dir(paths.logs_dir() / phase, name)
        manifest = {
            "phase": phase,
            "run_id": run_dir.name,
            # relative to the run folder, or None for a default run (found again through phase and run id)
            "checkpoint_dir": "checkpoints" if out is not None else None,
            "argv": list(sys.argv if argv is None else argv),
            "start_time": _now(),
            "end_time": None,
            "status": "running",
            "exit_reason": None,
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "versions": {p: _version(p) for p in ("nlab", "torch", "transformers", "peft", "numpy")},
            "environment": provenance.environment(),
            "device": config.get("device"),
            "git": _git_commit(),
            "resumes": [],
        }
        run = cls(phase, run_dir, manifest, dict(config))
        run._lock()
        atomic_write_json(run_dir / cls.CONFIG, run.config)
        run._save_manifest()
        return run

    @classmethod
    def resume(cls, run_dir: Path | str, phase: str, argv: list[str] | None = None) -> "Run":
        """Reopen a run folder of `phase` (after a crash or kill). The caller compares `run.config` with its
        own resolved config (see `check_same_config`) before doing any work."""
        run_dir = Path(run_dir).resolve()
        manifest = read_manifest_of(run_dir, phase)
        config = read_json(run_dir / cls.CONFIG, "config")
        run = cls(phase, run_dir, manifest, config)
        run._lock()
        manifest.setdefault("resumes", []).append(
            {"time": _now(), "argv": list(sys.argv if argv is None else argv), "previous_status": manifest["status"],
             "host": socket.gethostname(), "environment": provenance.environment()})
        return run

    @classmethod
    def open(cls, phase: str, config, record: dict, later: Iterable[str] = (), completed_ok: bool = False) -> "Run":
        """The one way a phase opens its run folder: a new one (`config.out`, `config.name`), or with
        `config.resume` the unfinished run of the same options, locked for this process. `record` is what
        config.json holds (the options and what was derived from them); on resume it must equal the saved one
        except for the fields the config class declares in `resume_may_differ` (and `later`, checked by the
        phase once known). A completed run is refused unless `completed_ok` (a sweep's resume summarises again)."""
        given = getattr(config, "tracker", None)
        tracking = trackers_of(config)  # checked (names, libraries installed) before any folder is made
        if config.resume is None:
            run = cls.create(phase, record, out=config.out, name=config.name)
        else:
            run = cls.resume(config.resume, phase)
            run.check_same_config(record, getattr(config, "resume_may_differ", ()), later)
            if not completed_ok:
                run.check_unfinished()
            if not tracking[0] and not given and not os.environ.get("NLAB_TRACKER"):  # the run's own trackers
                from phases.core.trackers import requested

                try:
                    tracking = (requested(list(run.manifest.get("trackers") or {})), tracking[1])
                except InputError:
                    run._unlock()
                    raise
        run._tracking = tracking
        return run

    LOCK = "run.lock"

    def _lock(self) -> None:
        """One writer per run folder: an OS lock on `run.lock`, released by the OS when the process dies (so a
        `kill -9` leaves nothing stale). The holder's PID is written into the file for the refusal message."""
        fd = os.open(self.dir / self.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise InputError(f"{self.dir}: another nlab process (PID {holder}) is writing this run folder",
                             "wait for it to finish (or stop it), then --resume the run") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if getattr(self, "_lock_fd", None) is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def __del__(self):
        self._unlock()

    def remove_temporaries(self) -> None:
        """Temporary files of atomic writes that a killed process left behind (`.NAME.*.tmp`)."""
        for folder in (self.dir, self.checkpoint_dir):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)

    def check_unfinished(self) -> None:
        """A completed run has nothing to resume."""
        if self.manifest["status"] == "completed":
            self._unlock()  # refused before any work: let the next attempt in
            raise InputError(f"--resume {self.dir}: that run has already completed; its results are in "
                             f"{self.path(self.METRICS)}", "nothing to resume: read them there, or start a new run")

    def check_same_config(self, new: dict, may_differ: Iterable[str] = (), later: Iterable[str] = ()) -> None:
        """Resume only what was started: every recorded key outside `may_differ` (and `later`, keys checked once
        they are known) must equal the saved config. Options are named as typed (`--lr`); derived records (the
        data files, the resolved model) by their key."""
        skip = {*RESUME_ALWAYS_DIFFER, *may_differ, *later}
        keys = [*new, *(k for k in self.config if k not in new)]  # in the order of the options
        diffs = [k for k in keys if k not in skip and self.config.get(k) != new.get(k)]
        if diffs:
            shown = ", ".join(f"{_as_option(k, self.config)} {new.get(k)!r} (the run's: {self.config.get(k)!r})"
                              for k in diffs[:6])
            self._unlock()  # refused before any work: let the next attempt in
            raise InputError(f"--resume {self.dir}: a resumed run keeps its own options; these differ: {shown}",
                             "leave them out (options not given are taken from the run), or start a new run")

    def load_checkpoint(self, name: str, before: str = "its first checkpoint") -> dict:
        """The run's checkpoint `name` for a resume; a clear exit 2 when it is missing or damaged."""
        from phases.core.checkpoint import load_checkpoint

        path = self.checkpoint_dir / name
        if not path.is_file():
            self._unlock()
            raise InputError(f"--resume {self.dir}: no checkpoint ({path}); the run stopped before {before}",
                             "nothing to continue from: start a new run with the same options")
        try:
            return load_checkpoint(path)
        except InputError as e:
            self._unlock()
            raise InputError(f"--resume {self.dir}: {e.message}",
                             "the checkpoint is damaged: start a new run with the same options") from None

    # --- files -----------------------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.dir.name

    @property
    def checkpoint_dir(self) -> Path:
        recorded = self.manifest.get("checkpoint_dir")
        if recorded is None or Path(recorded).is_absolute():
            # a default run's weights live under checkpoints/<phase>/<run_id>; an absolute path (folders written
            # before paths were relative) is not trusted, so a copied folder never touches the original's files
            return (self.dir / "checkpoints" if recorded is not None and Path(recorded).name == "checkpoints"
                    else paths.checkpoints_dir() / self.phase / self.run_id)
        return self.dir / recorded

    def path(self, name: str) -> Path:
        return self.dir / name

    def _writer(self, name: str) -> JsonlWriter:
        if name not in self._writers:
            track = None
            if Path(name).name == self.HISTORY:  # history.jsonl, or a part's (`methods/ewc/history.jsonl`)
                prefix = Path(name).parent.name if Path(name).parent != Path(".") else ""
                track = lambda record: self._trackers and self._trackers.log(record, prefix)  # noqa: E731
            self._writers[name] = JsonlWriter(self.dir / name, on_write=track)
        return self._writers[name]

    def log(self, record: dict) -> None:
        """Append one point to history.jsonl: {"step": int, "split": str, "stage": optional, metrics...}."""
        self._writer(self.HISTORY).write(record)

    def predict(self, record: dict) -> None:
        """Append one evaluated item to predictions.jsonl: {"id", "target", "prediction", "correct", ...}."""
        self._writer(self.PREDICTIONS).write(record)

    def jsonl(self, name: str) -> JsonlWriter:
        """Any other append-only record file of the run (events, lineage, ...)."""
        return self._writer(name)

    def write_json(self, name: str, obj: Any) -> Path:
        atomic_write_json(self.dir / name, obj)
        return self.dir / name

    def write_metrics(self, metrics: dict, primary: str) -> dict:
        if primary not in metrics:
            raise NlabError(f"internal: primary metric {primary!r} missing from metrics")
        out = {"primary": primary, **metrics, "run_dir": str(self.dir), "phase": self.phase}
        atomic_write_json(self.dir / self.METRICS, out)
        if self._trackers:
            self._trackers.final(out)
        return out

    def set_device(self, device: str, device_name: str | None = None) -> None:
        self.manifest["device"] = device
        self.manifest["device_name"] = device_name
        # torch is loaded by now: the instruction set its CPU kernels dispatch to completes the record
        env = provenance.environment()
        if self.manifest.get("resumes"):
            self.manifest["resumes"][-1]["environment"] = env
        else:
            self.manifest["environment"] = env
        self._save_manifest()

    def _save_manifest(self) -> None:
        atomic_write_json(self.dir / self.MANIFEST, self.manifest)

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()

    # --- status ------------------------------------------------------------------------------------------------
    def _on_sigterm(self, signum, frame):  # pragma: no cover - exercised through a subprocess test
        raise Interrupted(f"terminated by signal {signum}")

    def __enter__(self) -> "Run":
        self.remove_temporaries()
        self.manifest.update(status="running", exit_reason=None, end_time=None)
        names, uri = self._tracking
        if names:
            from phases.core.trackers import RunInfo, Trackers

            recorded = self.manifest.get("trackers") or {}
            info = RunInfo(self.phase, self.run_id, self.dir, self.config, resumed=bool(self.manifest.get("resumes")))
            try:
                self._trackers, started = Trackers.start(names, info, uri, states=recorded)
            except BaseException as e:
                self.__exit__(type(e), e, None)  # recorded as failed, unlocked
                raise
            self.manifest["trackers"] = {**recorded, **started}
        self._save_manifest()
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
        self.close()
        if exc is None:
            status, reason = "completed", "completed"
        elif isinstance(exc, Interrupted):
            status, reason = "failed", f"interrupted ({exc})"
        elif isinstance(exc, KeyboardInterrupt):
            status, reason = "failed", "interrupted (Ctrl-C)"
        elif isinstance(exc, NlabError):
            status, reason = "failed", exc.message
        else:
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
        self.manifest.update(status=status, exit_reason=reason, end_time=_now())
        self._save_manifest()
        if self._trackers is not None:
            self._trackers.close(status)
            self._trackers = None
        self.remove_temporaries()
        self._unlock()
        return False


def trackers_of(config) -> tuple[list[str], str | None]:
    """The trackers a run's options ask for (`--tracker`, else $NLAB_TRACKER), each installed, with
    `--tracker-uri`; ([], None) for a config without trackers."""
    if not hasattr(config, "tracker"):
        return [], None
    from phases.core.trackers import requested

    return requested(config.tracker), getattr(config, "tracker_uri", None)


def read_manifest_of(run_dir: Path | str, phase: str) -> dict:
    """The manifest of a run folder given to `--resume`, which must be a run of `phase` with its config.json;
    otherwise an InputError naming the folder's real phase."""
    run_dir = Path(run_dir)
    manifest = (read_json(run_dir / Run.MANIFEST, "manifest")
                if (run_dir / Run.MANIFEST).is_file() and (run_dir / Run.CONFIG).is_file() else None)
    real = manifest.get("phase") if isinstance(manifest, dict) else None
    if real is None:
        raise InputError(f"--resume {run_dir}: not an nlab run folder (no manifest.json/config.json naming a phase)",
                         "pass the folder a previous run printed as its run_dir")
    if real != phase:
        raise InputError(f"--resume {run_dir}: that folder is a {real!r} run, not {phase!r}",
                         f"resume it with `nlab {real} --resume {run_dir}`, or start a new {phase} run")
    return manifest


def load_run_dir(path: Path | str) -> dict:
    """The manifest, config and metrics of a finished run folder, for phases that read other runs."""
    path = Path(path)
    if not (path / Run.MANIFEST).is_file():
        raise InputError(f"{path}: not an nlab run folder (no manifest.json)",
                         "pass a folder printed as run_dir by an nlab command")
    out = {"dir": path, "manifest": read_json(path / Run.MANIFEST, "manifest")}
    out["config"] = read_json(path / Run.CONFIG, "config") if (path / Run.CONFIG).is_file() else {}
    out["metrics"] = read_json(path / Run.METRICS, "metrics") if (path / Run.METRICS).is_file() else None
    return out


def _as_option(key: str, config: dict) -> str:
    """A config key as the user typed it: `lr` -> `--lr`; a derived record (not a scalar option) by its key."""
    derived = isinstance(config.get(key), (dict, list))
    return f"{key} (derived)" if derived else option_name(key)


def config_from_run(run_dir: str, config_cls, given: dict):
    """`--resume RUN_DIR` without restating the run: its saved options (config.json) as `config_cls`, with the
    options given on the command line on top; the phase then refuses any given one that differs from the saved
    value. `out` and `name` are the run's own. A folder of another phase is refused first, naming its phase (its
    options would not fit this one)."""
    from phases import registry

    phase = registry.of_config(config_cls)
    if phase is not None:
        read_manifest_of(run_dir, phase)
    saved = read_json(Path(run_dir) / Run.CONFIG, "config")
    if not isinstance(saved, dict):
        raise InputError(f"{Path(run_dir) / Run.CONFIG}: not a JSON object of options", "the run folder is damaged")
    names = {f.name for f in fields(config_cls)} - set(RESUME_ALWAYS_DIFFER)
    return config_cls(**{**{k: v for k, v in saved.items() if k in names}, **given, "resume": run_dir})

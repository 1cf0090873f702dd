"""Shared test setup: real data from ../shared (NLAB_DATA_DIR), nothing written outside temporary folders, no hub.

Every test runs with NLAB_HOME set to its own temporary folder, so run folders, checkpoints and downloads land
there; caches of Hugging Face, matplotlib and nlab's GGUF conversions go to a session temporary folder."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SHARED = ROOT.parent / "shared"

_cache = Path(tempfile.mkdtemp(prefix="nlab-test-cache-"))
os.environ.setdefault("HF_HOME", str(_cache / "hf"))
os.environ.setdefault("MPLCONFIGDIR", str(_cache / "mpl"))
# the shared GGUF is converted once per session (phases/gsm8k/gguf_cache.py), never into the user's cache
os.environ["NLAB_CACHE_DIR"] = str(_cache / "nlab")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["NLAB_NO_PROGRESS"] = "1"
# Under pytest-xdist (`make test` runs one worker per core, files kept whole per worker) the cores are divided
# between the workers, as seed-sweep divides them between its seeds: torch threads that outnumber the cores
# spin against each other. Every nlab process a test starts inherits the share through NLAB_NUM_THREADS.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ.setdefault("NLAB_NUM_THREADS", str(_share))
    from phases.core.device import set_threads

    set_threads()  # this worker's own torch too, as every nlab command sets it
if not os.environ.get("NLAB_DATA_DIR") and (_SHARED / "data").is_dir():
    os.environ["NLAB_DATA_DIR"] = str(_SHARED / "data")


def _data_root() -> Path:
    root = os.environ.get("NLAB_DATA_DIR")
    if not root or not Path(root).is_dir():
        pytest.fail("the tests need the real datasets: set NLAB_DATA_DIR to the shared data folder "
                    "(../shared/data beside the project)")
    return Path(root)


@pytest.fixture(scope="session")
def data_root() -> Path:
    return _data_root()


@pytest.fixture(scope="session")
def shared_models() -> Path:
    models = Path(os.environ.get("NLAB_MODELS_DIR") or _SHARED / "models")
    if not models.is_dir():
        pytest.fail("the tests need the real small LLM: ../shared/models beside the project (or NLAB_MODELS_DIR)")
    return models


GGUF = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"  # the shared small LLM


@pytest.fixture(scope="session")
def gguf(shared_models) -> Path:
    path = shared_models / GGUF
    if not path.is_file():
        pytest.fail(f"the real small LLM is missing: {path}")
    return path


@contextmanager
def serving_copies(loaded, gguf: Path, dtype: str):
    """While open, runs in this process that load the shared model in `dtype` on the CPU get a copy of `loaded`
    instead of reading the GGUF again (a copy, because an adapter is injected into the model it is put on); any
    other model loads as usual."""
    from phases.gsm8k import models

    real = models.load_model

    def load_model(spec, dtype_, device):
        if Path(spec).resolve() != gguf.resolve() or dtype_ != dtype or device.type != "cpu":
            return real(spec, dtype_, device)
        return models.LoadedModel(copy.deepcopy(loaded.model), loaded.tokenizer, loaded.dtype,
                                  dict(loaded.identity))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "load_model", load_model)
        yield


@pytest.fixture(autouse=True)
def nlab_home(tmp_path, monkeypatch) -> Path:
    """Each test gets its own nlab home (logs/, checkpoints/, data/), and no network downloads."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("NLAB_HOME", str(home))
    monkeypatch.setenv("NLAB_NO_DOWNLOAD", "1")
    return home


@pytest.fixture
def cli():
    """Invoke the Typer app in-process; returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from nlab_cli.main import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        result = runner.invoke(app, list(args), input=input, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return invoke


def nlab_executable() -> str:
    """The installed console script, next to the running python (the project's .venv under make test)."""
    exe = Path(sys.executable).parent / "nlab"
    if exe.exists():
        return str(exe)
    found = shutil.which("nlab")
    if not found:
        pytest.fail("the `nlab` console script is not installed: run `make test` (it installs the project)")
    return found


def kill_when(argv: list[str], ready, timeout: float = 300, env: dict | None = None) -> None:
    """Start the installed `nlab` with `argv` and SIGKILL it as soon as `ready()` is true (e.g. its first checkpoint
    exists); fails if the run ended on its own first."""
    import time

    proc = subprocess.Popen([nlab_executable(), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.monotonic() + timeout  # a loaded machine is slow
    while time.monotonic() < deadline and proc.poll() is None and not ready():
        time.sleep(0.01)
    proc.kill()
    _, err = proc.communicate()
    assert proc.returncode == -9, err  # killed, not finished


@pytest.fixture
def nlab():
    """Run the installed `nlab` command as a subprocess: returns CompletedProcess (text)."""
    exe = nlab_executable()

    def run(*args: str, input: str | None = None, timeout: float = 600, env: dict | None = None, cwd=None):
        full_env = {**os.environ, **(env or {})}
        return subprocess.run([exe, *args], input=input, capture_output=True, text=True, timeout=timeout,
                              env=full_env, cwd=cwd)

    return run


def kill_after_first_checkpoint(home: Path, *options: str, name: str = "killed") -> Path:
    """A quick train-moe run (`--train-limit 200`, `options` on top) started in a subprocess and killed with kill -9
    once its first epoch checkpoint is on disk: its run folder, left `running` with its lock released."""
    import time

    proc = subprocess.Popen([nlab_executable(), "train-moe", "--train-limit", "200", *options, "--name", name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NLAB_HOME": str(home)})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and \
            not list((home / "checkpoints" / "train-moe").glob(f"*-{name}/last.pt")):
        time.sleep(0.01)
    proc.kill()
    _, err = proc.communicate()
    assert proc.returncode == -9, err
    [run_dir] = list((home / "logs" / "train-moe").glob(f"*-{name}"))
    return run_dir

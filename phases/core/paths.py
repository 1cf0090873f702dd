"""Where nlab keeps things: `logs/`, `checkpoints/` and `data/` under the nlab home.

The home is `$NLAB_HOME` when set, else the current working directory, so running `nlab` inside the project
uses the project's own `logs/`, `checkpoints/` and `data/` folders."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("NLAB_HOME") or os.getcwd()).resolve()


def logs_dir() -> Path:
    return home() / "logs"


def checkpoints_dir() -> Path:
    return home() / "checkpoints"


def project_data_dir() -> Path:
    return home() / "data"

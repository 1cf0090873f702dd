"""Checkpoints: written atomically, read back with `weights_only=True` (no pickled code is ever executed)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from phases.core.errors import InputError


def save_checkpoint(path: Path | str, state: dict) -> Path:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path | str, map_location="cpu") -> dict:
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}", "check the run folder; was the run started?")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise InputError(f"{path}: not a readable nlab checkpoint ({type(e).__name__}: {e})",
                         "delete it to start over, or pass another run") from None

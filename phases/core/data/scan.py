"""SCAN: navigation commands to action sequences (`IN: <command> OUT: <actions>` per line)."""

from __future__ import annotations

import re
from pathlib import Path

from phases.core.errors import InputError
from phases.core.jsonio import read_lines

SCAN_FILES = {
    "simple_train": "tasks_train_simple.txt",
    "simple_test": "tasks_test_simple.txt",
    "addprim_jump_train": "tasks_train_addprim_jump.txt",
    "addprim_jump_test": "tasks_test_addprim_jump.txt",
}
_LINE = re.compile(r"^IN: (.+?) OUT: (.+)$")


def read_scan(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for i, line in enumerate(read_lines(path), start=1):
        line = line.strip()
        if not line:
            continue
        m = _LINE.match(line)
        if not m:
            raise InputError(f"{path}:{i}: expected 'IN: <command> OUT: <actions>', got {line[:60]!r}",
                             "restore the file from the SCAN repository")
        pairs.append((m.group(1), m.group(2)))
    if not pairs:
        raise InputError(f"{path}: no examples", "restore the file from the SCAN repository")
    return pairs


def load_scan(folder: Path) -> dict[str, list[tuple[str, str]]]:
    """{split: [(command, actions), ...]} for the simple and add-primitive 'jump' splits."""
    return {split: read_scan(folder / name) for split, name in SCAN_FILES.items()}


SCAN_URL = "https://raw.githubusercontent.com/brendenlake/SCAN/master/{}/{}"


def download_scan(folder: Path) -> None:
    from phases.core.data.download import download_url

    for split, name in SCAN_FILES.items():
        sub = "simple_split" if split.startswith("simple") else "add_prim_split"
        download_url(SCAN_URL.format(sub, name), folder / name)

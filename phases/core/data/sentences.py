"""Sentence classification data: GLUE SST-2 (TSV with a `sentence<TAB>label` header)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from phases.core.data.images import ClassificationData
from phases.core.errors import InputError
from phases.core.jsonio import read_text


def read_labelled_tsv(path: Path) -> tuple[list[str], np.ndarray]:
    lines = read_text(path).splitlines()
    if not lines or lines[0].split("\t")[:2] != ["sentence", "label"]:
        raise InputError(f"{path}:1: expected the header 'sentence<TAB>label'", "use GLUE's SST-2 TSV files")
    sentences, labels = [], []
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.rsplit("\t", 1)
        if len(parts) != 2 or parts[1].strip() not in ("0", "1"):
            raise InputError(f"{path}:{i}: expected 'sentence<TAB>0|1', got {line[:60]!r}",
                             "fix that line or restore the file from GLUE's SST-2")
        sentences.append(parts[0].strip())
        labels.append(int(parts[1]))
    if not sentences:
        raise InputError(f"{path}: no sentences", "restore the file from GLUE's SST-2")
    return sentences, np.asarray(labels, dtype=np.int64)


def load_sst2(folder: Path) -> ClassificationData:
    """GLUE's test labels are not public: the 872 dev sentences are the held-out set (`test_split='dev'`)."""
    tr_x, tr_y = read_labelled_tsv(folder / "train.tsv")
    dev_x, dev_y = read_labelled_tsv(folder / "dev.tsv")
    return ClassificationData("sst2", "text", tr_x, tr_y, dev_x, dev_y, ["negative", "positive"], test_split="dev")


SST2_URL = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"


def download_sst2(folder: Path) -> None:
    from phases.core.data.download import download_url

    archive = download_url(SST2_URL, folder / "SST-2.zip")
    with zipfile.ZipFile(archive) as z:
        for name in ("train.tsv", "dev.tsv"):
            (folder / name).write_bytes(z.read(f"SST-2/{name}"))
    archive.unlink()

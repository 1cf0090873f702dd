"""The data registry: every named dataset, where its files are looked for, and how it is loaded.

Lookup order (conventions): `--data-dir` (when given it is the only place looked, so a typo is an error rather
than a silent fallback), then `$NLAB_DATA_DIR`, then the project's `data/` folder, then a download into
`data/` where the dataset has a public source. When everything fails the error lists the files expected and
every place that was looked at. Loaders are named as "module:function" and imported only when used."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phases.core import paths
from phases.core.errors import InputError


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    loader: str  # "module:function", called as function(folder, **kwargs)
    folder: str = ""  # subfolder of a data root
    files: tuple[str, ...] = ()  # required files, relative to the folder
    source: str = ""  # the public source a download uses
    download: str | None = None  # "module:function", called as function(folder) to fetch the files
    embedded: bool = False  # shipped with an installed package: no files to look for


_D = "phases.core.data"
# datasets that share files (sst2 and sst2-qa, scan and scan-qa) share these
_SST2 = dict(folder="sst2", files=("train.tsv", "dev.tsv"), source="dl.fbaipublicfiles.com/glue/data/SST-2.zip",
             download=f"{_D}.sentences:download_sst2")
_SCAN = dict(folder="scan", files=("tasks_train_simple.txt", "tasks_test_simple.txt", "tasks_train_addprim_jump.txt",
                                   "tasks_test_addprim_jump.txt"),
             source="raw.githubusercontent.com/brendenlake/SCAN", download=f"{_D}.scan:download_scan")
REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec("digits", "scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)",
                f"{_D}.images:load_digits", embedded=True, source="bundled with scikit-learn"),
    DatasetSpec("cifar10", "CIFAR-10, the original python pickle batches (50,000 train / 10,000 test)",
                f"{_D}.images:load_cifar10", "cifar10",
                tuple(f"cifar-10-batches-py/{f}" for f in
                      ["batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]),
                "torchvision.datasets.CIFAR10 where torchvision is installed, else www.cs.toronto.edu/~kriz",
                f"{_D}.images:download_cifar10"),
    DatasetSpec("cifar100", "CIFAR-100, the original python pickle files (fine and coarse labels)",
                f"{_D}.images:load_cifar100", "cifar100",
                ("cifar-100-python/meta", "cifar-100-python/train", "cifar-100-python/test"),
                "torchvision.datasets.CIFAR100 where torchvision is installed, else www.cs.toronto.edu/~kriz",
                f"{_D}.images:download_cifar100"),
    DatasetSpec("tinyshakespeare", "tiny Shakespeare, char-level (nanoGPT's 90/10 split, vocab 65)",
                f"{_D}.text:load_tinyshakespeare", "tinyshakespeare", ("input.txt",),
                "raw.githubusercontent.com/karpathy/char-rnn", f"{_D}.text:download_tinyshakespeare"),
    DatasetSpec("wikitext2", "WikiText-2 (tokenized v1 files), char-level; valid/test (train when present)",
                f"{_D}.text:load_wikitext2", "wikitext2", ("valid.txt", "test.txt"),
                "raw.githubusercontent.com/pytorch/examples (word_language_model/data/wikitext-2)",
                f"{_D}.text:download_wikitext2"),
    DatasetSpec("sst2", "GLUE SST-2 binary sentiment, TSV (67,349 train / 872 dev sentences)",
                f"{_D}.sentences:load_sst2", **_SST2),
    DatasetSpec("gsm8k", "GSM8K grade-school math, JSONL (7,473 train / 1,319 test problems)",
                f"{_D}.gsm8k:load_gsm8k", "gsm8k", ("train.jsonl", "test.jsonl"),
                "raw.githubusercontent.com/openai/grade-school-math", f"{_D}.gsm8k:download_gsm8k"),
    DatasetSpec("sst2-qa", "SST-2 as question/answer text ('The sentiment is positive.\\n#### positive'); "
                "test = the dev split", f"{_D}.qa:load_sst2_qa", **_SST2),
    DatasetSpec("scan-qa", "SCAN's simple split as question/answer text ('#### I_TURN_LEFT I_JUMP')",
                f"{_D}.qa:load_scan_qa", **_SCAN),
    DatasetSpec("scan", "SCAN commands to actions: simple and add-primitive 'jump' splits",
                f"{_D}.scan:load_scan", **_SCAN),
]}


def names() -> list[str]:
    return sorted(REGISTRY)


def spec(name: str, option: str = "--dataset") -> DatasetSpec:
    if name not in REGISTRY:
        raise InputError(f"{option} {name!r}: unknown dataset", f"choose one of: {', '.join(names())}")
    return REGISTRY[name]


def _resolve(ref: str):
    module, func = ref.split(":")
    return getattr(importlib.import_module(module), func)


def _has_files(folder: Path, s: DatasetSpec) -> bool:
    return all((folder / f).is_file() for f in s.files)


def _expected(s: DatasetSpec) -> str:
    return ", ".join(f"{s.folder}/{f}" for f in s.files)


def locate(name: str, data_dir: Path | str | None = None, download: bool = True,
           option: str = "--dataset") -> Path | None:
    """The folder holding dataset `name`'s files (None for embedded datasets)."""
    s = spec(name, option)
    if s.embedded:
        return None
    if data_dir is not None:
        folder = Path(data_dir).expanduser() / s.folder
        if _has_files(folder, s):
            return folder
        missing = [f for f in s.files if not (folder / f).is_file()]
        raise InputError(f"--data-dir {data_dir}: dataset {name!r} not found there "
                         f"(missing {', '.join(f'{s.folder}/{m}' for m in missing)})",
                         f"point --data-dir at a folder holding {_expected(s)}, or leave it out to use "
                         "NLAB_DATA_DIR, the project's data/ folder or a download")
    tried = []
    env = os.environ.get("NLAB_DATA_DIR")
    for label, root in ([("NLAB_DATA_DIR", Path(env).expanduser())] if env else []) + [
            ("project data/", paths.project_data_dir())]:
        folder = root / s.folder
        if _has_files(folder, s):
            return folder
        tried.append(f"{label}: {folder}")
    target = paths.project_data_dir() / s.folder
    if s.download and download and not os.environ.get("NLAB_NO_DOWNLOAD"):
        try:
            _resolve(s.download)(target)
            if _has_files(target, s):
                return target
            tried.append(f"download from {s.source}: finished without the expected files")
        except Exception as e:  # no network, server error, bad archive: all end in the same advice
            tried.append(f"download from {s.source}: {type(e).__name__}: {e}")
    elif s.download:
        tried.append("download: disabled (NLAB_NO_DOWNLOAD is set)")
    raise InputError(f"dataset {name!r} not found. Expected files: {_expected(s)}. Looked in: " + "; ".join(tried),
                     f"put the files under a data folder and pass --data-dir or set NLAB_DATA_DIR "
                     f"(source: {s.source})")


def load(name: str, data_dir: Path | str | None = None, option: str = "--dataset", **kwargs) -> Any:
    """Locate and load a named dataset; kwargs go to its loader. `option` names the CLI option in errors."""
    s = spec(name, option)
    return _resolve(s.loader)(locate(name, data_dir, option=option), **kwargs)

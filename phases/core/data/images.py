"""Image classification data: scikit-learn's digits (the embedded default) and CIFAR-10/100 pickle batches."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phases.core.errors import InputError


@dataclass
class ClassificationData:
    """A labelled train split and a labelled held-out split. Images are uint8 arrays (N, C, H, W) with values in
    [0, pixel_max]; sentences are lists of strings. The held-out split is the official test split where it has
    labels (SST-2's is not public, so its dev split plays that part: `test_split` says which)."""

    name: str
    modality: str  # "image" or "text"
    train_x: Any
    train_y: np.ndarray
    test_x: Any
    test_y: np.ndarray
    classes: list[str]
    test_split: str = "test"
    pixel_max: float = 255.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED = 0.2, 0


def load_digits(folder: Path | None = None) -> ClassificationData:
    """The 1,797 digits with a fixed stratified 80/20 train/test split (seed 0, independent of any run's
    seed: test data never moves). Pixel values are 0..16."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    x = d.images.astype(np.uint8)[:, None, :, :]
    y = d.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(y)), test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED,
                              stratify=y)
    return ClassificationData("digits", "image", x[tr], y[tr], x[te], y[te], [str(i) for i in range(10)],
                              pixel_max=16.0)


class _SafeUnpickler(pickle.Unpickler):
    """CIFAR's batches hold only dicts, lists, bytes and numpy arrays: refuse anything else (a pickle can run
    arbitrary code)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
        if not isinstance(obj, dict):
            raise ValueError("not a dict")
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    except Exception as e:
        raise InputError(f"{path}: not a CIFAR python pickle batch ({type(e).__name__}: {e})",
                         "re-extract the original cifar-*-python.tar.gz into that folder") from None


def _images(batch: dict, path: Path) -> np.ndarray:
    data = np.asarray(batch.get("data"), dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise InputError(f"{path}: 'data' has shape {data.shape}, expected (N, 3072)",
                         "re-extract the original archive")
    return data.reshape(-1, 3, 32, 32)


def _names(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def load_cifar10(folder: Path) -> ClassificationData:
    root = folder / "cifar-10-batches-py"
    xs, ys = [], []
    for i in range(1, 6):
        b = _unpickle(root / f"data_batch_{i}")
        xs.append(_images(b, root / f"data_batch_{i}"))
        ys.append(np.asarray(b["labels"], dtype=np.int64))
    t = _unpickle(root / "test_batch")
    classes = _names(_unpickle(root / "batches.meta")["label_names"])
    return ClassificationData("cifar10", "image", np.concatenate(xs), np.concatenate(ys),
                              _images(t, root / "test_batch"), np.asarray(t["labels"], dtype=np.int64), classes)


def load_cifar100(folder: Path) -> ClassificationData:
    """Fine labels as the classes; the 20 coarse superclasses ride along in `extra` (a natural class->expert
    assignment for routing)."""
    root = folder / "cifar-100-python"
    tr, te, meta = _unpickle(root / "train"), _unpickle(root / "test"), _unpickle(root / "meta")
    return ClassificationData(
        "cifar100", "image", _images(tr, root / "train"), np.asarray(tr["fine_labels"], dtype=np.int64),
        _images(te, root / "test"), np.asarray(te["fine_labels"], dtype=np.int64), _names(meta["fine_label_names"]),
        extra={"train_coarse": np.asarray(tr["coarse_labels"], dtype=np.int64),
               "test_coarse": np.asarray(te["coarse_labels"], dtype=np.int64),
               "coarse_names": _names(meta["coarse_label_names"])})


_CIFAR_ARCHIVES = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
}


def _download_cifar(name: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    try:  # torchvision's own downloader where it is installed (optional extra `vision`)
        import torchvision.datasets as tvd

        (tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100)(root=str(folder), download=True)
        return
    except ImportError:
        pass
    from phases.core.data.download import download_url

    url, md5 = _CIFAR_ARCHIVES[name]
    archive = download_url(url, folder / url.rsplit("/", 1)[1])
    if hashlib.md5(archive.read_bytes()).hexdigest() != md5:
        archive.unlink()
        raise ValueError(f"md5 mismatch for {url}")
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    archive.unlink()


def download_cifar10(folder: Path) -> None:
    _download_cifar("cifar10", folder)


def download_cifar100(folder: Path) -> None:
    _download_cifar("cifar100", folder)

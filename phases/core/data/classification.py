"""Classification tasks ready for a model: a registry dataset split into train, validation (held out from the
training data, fixed by the seed) and test (the dataset's own held-out split, used only for reporting). Images stay
uint8 tensors with the training part's normalisation statistics; sentences become word ids over a vocabulary built
from the training part alone, so nothing about the held-out data leaks into the model."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from phases.core.data.images import ClassificationData
from phases.core.data.registry import load, locate
from phases.core.data.splits import holdout_split
from phases.core.errors import InputError
from phases.core.options import not_one_of

CLASSIFICATION_DATASETS = ("digits", "sst2", "cifar10", "cifar100")


class WordVocab:
    """Word-level vocabulary (lower-cased whitespace tokens; SST-2 is already tokenized). Id 0 pads, id 1 stands
    for words outside the vocabulary."""

    PAD, UNK = 0, 1

    def __init__(self, words: list[str]):
        self.words = ["<pad>", "<unk>", *words]
        self.index = {w: i for i, w in enumerate(self.words)}

    @staticmethod
    def tokenize(sentence: str) -> list[str]:
        return sentence.lower().split()

    @classmethod
    def build(cls, sentences: list[str], max_size: int = 50_000) -> "WordVocab":
        counts = Counter(w for s in sentences for w in cls.tokenize(s))
        return cls([w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_size]])

    @property
    def size(self) -> int:
        return len(self.words)

    def encode(self, sentences: list[str], max_len: int = 64) -> torch.Tensor:
        """(N, L) int64 ids, padded with 0; L is the longest sentence, capped at `max_len` words."""
        rows = [[self.index.get(w, self.UNK) for w in self.tokenize(s)][:max_len] for s in sentences]
        out = torch.zeros(len(rows), max(1, max(map(len, rows), default=1)), dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        return out


@dataclass
class Split:
    x: torch.Tensor  # uint8 images (N, C, H, W) or int64 word ids (N, L)
    y: torch.Tensor  # int64 labels
    ids: list[int]  # each item's index in the dataset's own split file (train for train/val, test/dev for test)

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device) -> "Split":
        return Split(self.x.to(device), self.y.to(device), self.ids)


@dataclass
class TaskData:
    name: str
    modality: str  # "image" or "text"
    classes: list[str]
    train: Split
    val: Split
    test: Split
    test_split: str  # what the test split is in the dataset ("test"; "dev" for SST-2)
    data_path: str | None  # the folder the files came from (None: embedded)
    in_channels: int = 0
    pixel_max: float = 255.0
    mean: list[float] = field(default_factory=list)  # per channel, of x / pixel_max on the training part
    std: list[float] = field(default_factory=list)
    vocab: WordVocab | None = None
    class_groups: list[int] | None = None  # class -> superclass (CIFAR-100's 20 coarse labels)
    augment: bool = False  # random crops and flips while training (CIFAR)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device) -> "TaskData":
        self.train, self.val, self.test = self.train.to(device), self.val.to(device), self.test.to(device)
        return self


def _stratified_subset(labels: np.ndarray, size: int, seed: int, what: str) -> np.ndarray:
    try:
        return holdout_split(labels, size, seed)[1]
    except ValueError as e:  # too few items of some class for a stratified split
        raise InputError(f"{what}: cannot split {len(labels)} items stratified by class ({e})",
                         "use more training data, a larger --val-fraction or --train-limit") from None


def _channel_stats(images: np.ndarray, pixel_max: float) -> tuple[list[float], list[float]]:
    """Exact per-channel mean and std of uint8 images / pixel_max, from a histogram of pixel values (no float
    copy of the whole training set)."""
    mean, std = [], []
    for c in range(images.shape[1]):
        hist = np.bincount(images[:, c].ravel(), minlength=256).astype(np.float64)
        v = np.arange(len(hist)) / pixel_max
        m = float((hist * v).sum() / hist.sum())
        mean.append(m)
        std.append(max(1e-3, float(np.sqrt((hist * (v - m) ** 2).sum() / hist.sum()))))
    return mean, std


def prepare_task(name: str, data_dir: Path | str | None = None, val_fraction: float = 0.1, seed: int = 0,
                 train_limit: int | None = None, max_len: int = 64, option: str = "--dataset") -> TaskData:
    """Load dataset `name` from the registry and split it. `val_fraction` of the training data is held out for
    validation (stratified, fixed by `seed`; 0: no validation split); `train_limit` keeps a stratified subset of
    what remains (quick runs).
    The test split is the dataset's own and is never subsampled."""
    if name not in CLASSIFICATION_DATASETS:  # e.g. ewc --moe-tasks digits,tinyshakespeare
        raise not_one_of(option, name, CLASSIFICATION_DATASETS, "these are the classification datasets")
    folder = locate(name, data_dir, option=option)
    data: ClassificationData = load(name, data_dir, option=option)
    n_train = len(data.train_y)
    val_idx = (np.sort(_stratified_subset(data.train_y, max(data.num_classes, round(val_fraction * n_train)), seed,
                                          "--val-fraction")) if val_fraction > 0 else np.zeros(0, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(n_train), val_idx)
    if train_limit is not None and train_limit < len(train_idx):
        keep = _stratified_subset(data.train_y[train_idx], train_limit, seed, "--train-limit")
        train_idx = np.sort(train_idx[keep])
    y = torch.from_numpy(data.train_y)
    extra: dict = {}
    if data.modality == "image":
        x = torch.from_numpy(np.ascontiguousarray(data.train_x))
        test_x = torch.from_numpy(np.ascontiguousarray(data.test_x))
        mean, std = _channel_stats(data.train_x[train_idx], data.pixel_max)
        extra = dict(in_channels=int(x.shape[1]), pixel_max=float(data.pixel_max), mean=mean, std=std,
                     augment=name.startswith("cifar"))
    else:
        vocab = WordVocab.build([data.train_x[i] for i in train_idx])
        x, test_x = vocab.encode(data.train_x, max_len), vocab.encode(data.test_x, max_len)
        extra = dict(vocab=vocab)
    if "train_coarse" in data.extra:
        groups = np.zeros(data.num_classes, dtype=np.int64)
        groups[data.train_y] = data.extra["train_coarse"]
        extra["class_groups"] = groups.tolist()
    return TaskData(name, data.modality, data.classes,
                    train=Split(x[train_idx], y[train_idx], train_idx.tolist()),
                    val=Split(x[val_idx], y[val_idx], val_idx.tolist()),
                    test=Split(test_x, torch.from_numpy(data.test_y), list(range(len(data.test_y)))),
                    test_split=data.test_split, data_path=str(folder) if folder else None, **extra)


def random_crop_flip(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation on a batch (B, C, H, W): a random crop of the zero-padded image and a
    horizontal flip with probability 1/2, drawn from torch's global generator (so seeded and resumable)."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dev = x.device
    top = torch.randint(0, 2 * pad + 1, (b,), device=dev)
    left = torch.randint(0, 2 * pad + 1, (b,), device=dev)
    rows = (top[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = (left[:, None] + torch.arange(w, device=dev))[:, None, None, :]
    out = padded[torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                 rows, cols]
    flip = torch.rand(b, device=dev) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)

"""Character-level corpora: tiny Shakespeare and WikiText-2."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phases.core.data.download import download_url
from phases.core.errors import InputError
from phases.core.jsonio import read_text


@dataclass
class CharVocab:
    """A sorted character vocabulary, as nanoGPT's shakespeare_char builds it."""

    chars: list[str]
    stoi: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_texts(cls, *texts: str) -> "CharVocab":
        return cls(sorted(set().union(*map(set, texts))))

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str, unknown: int | None = None) -> np.ndarray:
        """uint16 ids; a character outside the vocabulary maps to `unknown`, or raises when it is None."""
        try:
            return np.fromiter((self.stoi[c] for c in text), dtype=np.uint16, count=len(text))
        except KeyError:
            if unknown is None:
                bad = sorted(set(text) - set(self.stoi))[:10]
                raise InputError(f"text has characters outside the vocabulary: {bad!r}",
                                 "build the vocabulary from every text the model will see") from None
            return np.fromiter((self.stoi.get(c, unknown) for c in text), dtype=np.uint16, count=len(text))

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


@dataclass
class CharCorpus:
    """A training text and a held-out text, with a vocabulary covering both."""

    name: str
    train_text: str
    val_text: str
    vocab: CharVocab
    splits: tuple[str, str]  # where train/val come from, for the record
    extra: dict[str, str] = field(default_factory=dict)  # other held-out texts (wikitext2's test when train exists)

    def train_ids(self) -> np.ndarray:
        return self.vocab.encode(self.train_text)

    def val_ids(self) -> np.ndarray:
        return self.vocab.encode(self.val_text)


def _read(path: Path) -> str:
    text = read_text(path)
    if not text.strip():
        raise InputError(f"{path} is empty", "restore the file from its source")
    return text


SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def load_tinyshakespeare(folder: Path) -> CharCorpus:
    text = _read(folder / "input.txt")
    n = int(len(text) * 0.9)  # nanoGPT's data/shakespeare_char/prepare.py split
    return CharCorpus("tinyshakespeare", text[:n], text[n:], CharVocab.from_texts(text),
                      ("first 90% of input.txt", "last 10% of input.txt"))


def download_tinyshakespeare(folder: Path) -> None:
    download_url(SHAKESPEARE_URL, folder / "input.txt", SHAKESPEARE_SHA256)


WIKITEXT_URL = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/{}.txt"
WIKITEXT_SHA256 = {"valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
                   "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"}


def load_wikitext2(folder: Path) -> CharCorpus:
    """Train on train.txt and hold out valid.txt when train.txt is present; without it (as on the machines
    here) train on valid.txt and hold out test.txt, which keeps the held-out text unseen either way."""
    valid, test = _read(folder / "valid.txt"), _read(folder / "test.txt")
    if (folder / "train.txt").is_file():
        train = _read(folder / "train.txt")
        return CharCorpus("wikitext2", train, valid, CharVocab.from_texts(train, valid, test),
                          ("train.txt", "valid.txt"), {"test": test})
    return CharCorpus("wikitext2", valid, test, CharVocab.from_texts(valid, test), ("valid.txt", "test.txt"))


def download_wikitext2(folder: Path) -> None:
    for split in ("train", "valid", "test"):
        download_url(WIKITEXT_URL.format(split), folder / f"{split}.txt", WIKITEXT_SHA256.get(split))

"""Held-out splits fixed by a seed, so that selection (validation) data is never the reporting (test) data."""

from __future__ import annotations

import numpy as np


def holdout_split(labels: np.ndarray, fraction: float, seed: int, stratify: bool = True):
    """(train_indices, val_indices): a `fraction` of the items held out, stratified by label, fixed by `seed`."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    tr, va = train_test_split(idx, test_size=fraction, random_state=seed, stratify=labels if stratify else None)
    return np.sort(tr), np.sort(va)

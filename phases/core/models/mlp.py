"""A small fully connected classifier with one head per task: the model of the classic EWC benchmarks (permuted
and split MNIST), here on flattened digits. `forward(x, task)` picks the head, so a single-head model (domain- or
class-incremental) and a multi-head one (task-incremental) share one code path."""

from __future__ import annotations

import torch
import torch.nn as nn


class MLPClassifier(nn.Module):
    def __init__(self, in_features: int, heads: list[int], hidden: int = 256, depth: int = 2):
        super().__init__()
        layers, width = [], in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.heads = nn.ModuleList([nn.Linear(hidden, n) for n in heads])

    def forward(self, x: torch.Tensor, task: int = 0) -> torch.Tensor:
        """Logits of head `task` (a single-head model ignores it) for inputs (B, in_features)."""
        return self.heads[task if len(self.heads) > 1 else 0](self.body(x.flatten(1)))

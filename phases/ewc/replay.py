"""Replay: a reservoir buffer (Vitter's algorithm R) over the stream of training examples of the stages seen so
far, so that it always holds a uniform sample of everything seen; its examples are mixed into each batch."""

from __future__ import annotations

import torch


class Reservoir:
    def __init__(self, capacity: int, generator: torch.Generator):
        self.capacity = capacity
        self.gen = generator
        self.items: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (task, x, y)
        self.seen = 0

    def __len__(self) -> int:
        return len(self.items)

    def add(self, task: int, x: torch.Tensor, y: torch.Tensor) -> None:
        for i in range(len(x)):
            self.seen += 1
            if len(self.items) < self.capacity:
                self.items.append((task, x[i], y[i]))
            else:
                j = int(torch.randint(self.seen, (1,), generator=self.gen))
                if j < self.capacity:
                    self.items[j] = (task, x[i], y[i])

    def sample(self, n: int) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """n examples drawn without replacement, grouped by task: [(task, x, y), ...]."""
        if not self.items:
            return []
        idx = torch.randperm(len(self.items), generator=self.gen)[:n].tolist()
        by_task: dict[int, list[int]] = {}
        for i in idx:
            by_task.setdefault(self.items[i][0], []).append(i)
        return [(t, torch.stack([self.items[i][1] for i in ids]), torch.stack([self.items[i][2] for i in ids]))
                for t, ids in sorted(by_task.items())]

    def counts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for t, _, _ in self.items:
            out[t] = out.get(t, 0) + 1
        return out

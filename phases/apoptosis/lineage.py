"""Who is who: every hidden neuron that ever lived, with its id, layer, parents, generation, birth and death step,
and which id sits at each position of each MLP now (for ages and the lineage JSON)."""

from __future__ import annotations

import torch


class Lineage:
    def __init__(self, widths: list[int], step: int = 0):
        self.records: list[dict] = []
        self.alive: list[list[int]] = []  # per layer: neuron id at each position
        for layer, width in enumerate(widths):
            self.alive.append([self._new(layer, [], step) for _ in range(width)])

    def _new(self, layer: int, parents: list[int], step: int) -> int:
        generation = 1 + max(self.records[p]["generation"] for p in parents) if parents else 0
        self.records.append({"id": len(self.records), "layer": layer, "parents": parents,
                             "generation": generation, "born": step, "died": None})
        return len(self.records) - 1

    def ids(self, layer: int, positions) -> list[int]:
        return [self.alive[layer][int(i)] for i in positions]

    def replace(self, layer: int, positions, parents: list[list[int]], step: int) -> list[int]:
        """The neurons at `positions` die; newborns with the given parent ids take their places."""
        born = []
        for pos, par in zip(positions, parents):
            self.records[self.alive[layer][int(pos)]]["died"] = step
            self.alive[layer][int(pos)] = self._new(layer, par, step)
            born.append(self.alive[layer][int(pos)])
        return born

    def append(self, layer: int, parents: list[list[int]], step: int) -> list[int]:
        """Newborns added after the last position (growth)."""
        born = [self._new(layer, par, step) for par in parents]
        self.alive[layer].extend(born)
        return born

    def move_deeper(self, step: int) -> tuple[list[int], list[int]]:
        """Layer-level depth schedule: the deepest layer's neurons die, every other layer's move one layer deeper
        (keeping their ids and ages) and newborns fill the first. Returns (killed ids, born ids)."""
        killed = list(self.alive[-1])
        for i in killed:
            self.records[i]["died"] = step
        born = [self._new(0, [], step) for _ in self.alive[0]]
        self.alive = [born] + self.alive[:-1]
        return killed, born

    def ages(self, layer: int, step: int) -> torch.Tensor:
        return torch.tensor([step - self.records[i]["born"] for i in self.alive[layer]], dtype=torch.long)

    def summary(self, step: int, bins: int = 10) -> dict:
        """The age distribution of the living neurons (the age diversity the lab tracked) and generations."""
        ages = torch.cat([self.ages(layer, step) for layer in range(len(self.alive))]).float()
        top = max(step, 1)
        counts = torch.histc(ages, bins=bins, min=0, max=top)
        gens = [self.records[i]["generation"] for layer in self.alive for i in layer]
        return {
            "age_histogram": {"edges": [round(top * k / bins, 1) for k in range(bins + 1)],
                              "counts": [int(c) for c in counts]},
            "age_mean": ages.mean().item(),
            "age_std": ages.std().item() if len(ages) > 1 else 0.0,
            "age_min": int(ages.min().item()),
            "neurons_alive": len(gens),
            "neurons_ever": len(self.records),
            "max_generation": max(gens),
            "mean_generation": sum(gens) / len(gens),
        }

    def to_json(self) -> dict:
        return {"neurons": self.records, "alive": self.alive}

    def load_json(self, state: dict) -> None:
        """Continue from `to_json()`'s record (a resumed run), in place: the turnover holds this object."""
        self.records = [dict(r) for r in state["neurons"]]
        self.alive = [list(layer) for layer in state["alive"]]

"""The strategies: what happens to the MLPs' hidden neurons at an event.

- standard: the `prune_rate` least fit mature neurons die; each is reborn in place as a mutated copy of a fit
  parent (incoming weights = parent's + noise of `mutation_strength` x the weights' std, outgoing = parent's).
- functional: as standard, but the newborn's outgoing weights start at zero and the dying neuron's mean
  contribution moves into c_proj's bias (continual backprop's function-preserving replacement); optionally
  `preservation_steps` fit the newborns to the rest of the dying neurons' output on the latest batch.
- crossover: as standard, but the newborn mixes two fit parents: `uniform` takes each weight from either parent,
  `weighted` averages them weighted by fitness (incoming and outgoing alike), `random` averages them with a random
  weight drawn per newborn (the fitness-blind control of `weighted`), then mutates.
- hybrid: `turnover_rate` births and as many deaths. Births split a fit parent (Net2Net): the child gets the
  parent's incoming weights + noise and half its outgoing weights, the parent keeps the other half. Deaths move
  their mean contribution into the bias. Width is constant: each child takes a dead neuron's place.
- growth: `turnover_rate` x the initial width is added per event, up to `max_width`: mutated copies of fit parents
  with zero outgoing weights; the next layer's input columns and the optimizer's state grow with them.
- layer: the lab's layer-level variant. Each block's MLP branch is scaled by a vitality, `initial_vitality` at the
  start and for a newborn MLP. Schedule `fitness`: at an event every vitality becomes the layer's mean neuron fitness
  relative to the fittest layer's, and the least vital mature layer dies and is reborn in place with fresh weights.
  Schedule `depth` (the lab's description: deep layers decay, shallow layers are born): at an event the vitality of
  the MLP in block l (of L) is multiplied by 1 - l/L, the deepest MLP dies, every other MLP moves one block deeper
  with its weights, optimizer state, fitness and vitality, and a fresh MLP is born in block 0.

Parents are the fittest mature neurons (`select` fittest), or (`select` orthogonal) among the 2k fittest mature
survivors the k whose incoming weight vectors are the most nearly orthogonal: the fittest first, then each time the
candidate whose mean angle to those chosen is largest; a crossover's second parent is then the candidate at the
largest angle to the first. Angles are between lines (arccos |cos|, 0 to 90 degrees); every event records its
parents' mean angle. Neurons younger than `maturity` steps are never killed. Every reborn or added row and column
starts with zero Adam moments."""

from __future__ import annotations

import time

import torch

from phases.apoptosis import surgery
from phases.apoptosis.fitness import FitnessTracker
from phases.apoptosis.lineage import Lineage

PRESERVING = ("functional", "hybrid")  # strategies that move dying neurons' mean contribution into the bias


def line_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) angles in degrees between the rows of a and of b taken as lines: arccos |cos|, 0 to 90."""
    cos = torch.nn.functional.normalize(a.float(), dim=1) @ torch.nn.functional.normalize(b.float(), dim=1).T
    return torch.rad2deg(torch.arccos(cos.abs().clamp(max=1.0)))


def orthogonal_subset(w: torch.Tensor, pool: torch.Tensor, k: int) -> torch.Tensor:
    """k of `pool` (neuron indices, fittest first) whose rows of `w` are the most nearly orthogonal: the fittest,
    then each time the candidate whose mean angle to those chosen is largest (the fitter one on a tie), a greedy
    ascent of the chosen set's mean pairwise angle."""
    angles = line_angles(w[pool], w[pool])
    chosen = [0]
    while len(chosen) < min(k, len(pool)):
        total = angles[:, chosen].sum(dim=1)
        total[chosen] = -1.0
        chosen.append(int(total.argmax()))
    return pool[chosen]


def orthogonal_partners(w: torch.Tensor, first: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """For each neuron of `first`, the neuron of `pool` (not itself) whose row of `w` makes the largest angle with
    its own."""
    angles = line_angles(w[first], w[pool])
    angles[first[:, None] == pool[None, :]] = -1.0
    return pool[angles.argmax(dim=1)]


def mean_angle(w: torch.Tensor, first: torch.Tensor, second: torch.Tensor | None = None) -> float | None:
    """Mean angle (degrees) between the pairs (first[i], second[i]), or over all pairs within `first`."""
    if second is not None:
        return line_angles(w[first], w[second]).diagonal().mean().item() if len(first) else None
    if len(first) < 2:
        return None
    angles = line_angles(w[first], w[first])
    return angles[~torch.eye(len(first), dtype=torch.bool)].mean().item()


class Turnover:
    def __init__(self, model, optimizer, config, tracker: FitnessTracker, lineage: Lineage, generator):
        self.model, self.optimizer, self.c = model, optimizer, config
        self.tracker, self.lineage, self.gen = tracker, lineage, generator
        self.mlps = model.mlps
        self.initial_width = model.config.mlp_width
        self.max_width = config.growth_limit
        self.vitality = [config.initial_vitality] * len(self.mlps)
        if config.strategy == "layer":
            for layer, mlp in enumerate(self.mlps):  # scale each MLP's residual branch by its layer's vitality
                mlp.register_forward_hook(lambda m, args, out, layer=layer: out * self.vitality[layer])

    def state_dict(self) -> dict:
        return {"vitality": list(self.vitality), "generator": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.vitality = list(state["vitality"])
        self.gen.set_state(state["generator"])

    # --- helpers ---------------------------------------------------------------------------------------------
    def _noise(self, shape, scale: float, like: torch.Tensor) -> torch.Tensor:
        return (torch.randn(shape, generator=self.gen) * scale).to(like.device, like.dtype)

    def _mutate(self, mlp, w_in: torch.Tensor) -> torch.Tensor:
        std = mlp.c_fc.weight.float().std().item()
        return w_in + self._noise(w_in.shape, self.c.mutation_strength * std, w_in)

    def _fitness(self, layer: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        ages = self.lineage.ages(layer, step)
        return self.tracker.scores(layer, ages), ages >= self.c.maturity

    @staticmethod
    def _orthogonal(mlp, ranked: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(parents, pool): of candidates `ranked` fittest first, the k most nearly orthogonal of the 2k fittest
        (select orthogonal), and those 2k."""
        pool = ranked[:2 * k]
        return orthogonal_subset(mlp.c_fc.weight.detach().cpu(), pool, k), pool

    def _choose(self, mlp, fitness: torch.Tensor, mature: torch.Tensor,
                k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dying, parents, pool): the k least fit mature neurons, k parents among the fit mature others (shuffled),
        and the candidates they were chosen from."""
        candidates = mature.nonzero().flatten()
        k = min(k, len(candidates) // 2)
        if k == 0:
            empty = torch.empty(0, dtype=torch.long)
            return empty, empty, empty
        order = candidates[fitness[candidates].argsort()]
        if self.c.select == "orthogonal":
            parents, pool = self._orthogonal(mlp, order[k:].flip(0), k)
        else:
            parents = pool = order[-k:]  # the k fittest
        return order[:k], parents[torch.randperm(k, generator=self.gen)], pool

    @staticmethod
    def _in_weights(mlp, idx: torch.Tensor):
        return mlp.c_fc.weight[idx].clone(), (mlp.c_fc.bias[idx].clone() if mlp.c_fc.bias is not None else None)

    # --- events --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def event(self, step: int) -> list[dict]:
        """Apply the strategy to every MLP; one record per layer that changed."""
        if self.c.strategy == "layer":
            return self._layer_event(step)
        act = self._growth if self.c.strategy == "growth" else self._swap
        records = []
        for layer in range(len(self.mlps)):
            t0 = time.perf_counter()
            rec = act(layer, step)
            if rec is not None:
                rec["time_ms"] = 1000 * (time.perf_counter() - t0)
                records.append(rec)
        return records

    def _swap(self, layer: int, step: int) -> dict | None:
        """standard, functional, crossover and hybrid: k neurons die and k newborns take their places."""
        c, mlp = self.c, self.mlps[layer]
        fitness, mature = self._fitness(layer, step)
        rate = c.turnover_rate if c.strategy == "hybrid" else c.prune_rate
        dying, parents, pool = self._choose(mlp, fitness, mature, round(rate * mlp.width))
        if len(dying) == 0:
            return None
        dev = mlp.c_fc.weight.device
        dying_d, parents_d = dying.to(dev), parents.to(dev)
        threshold = fitness[dying].max().item()
        killed_ids = self.lineage.ids(layer, dying)
        parent_ids = [[p] for p in self.lineage.ids(layer, parents)]
        w_in, b_in = self._in_weights(mlp, parents_d)
        w_out = mlp.c_proj.weight[:, parents_d].clone()
        weights = mlp.c_fc.weight.detach().cpu()
        residual, rec = None, {"select": c.select, "parent_angle_deg": mean_angle(weights, parents)}
        if c.strategy in PRESERVING:
            residual = surgery.fold_mean_into_bias(mlp, self.tracker.inputs[layer], dying_d)
        if c.strategy == "crossover":
            # each newborn's second parent: the candidate most nearly orthogonal to the first, or another parent
            second = (orthogonal_partners(weights, parents, pool) if c.select == "orthogonal" else parents.roll(1))
            rec["parent_angle_deg"] = mean_angle(weights, parents, second)
            w_in, b_in, w_out = self._cross(mlp, fitness, parents, second, w_in, b_in, w_out)
            parent_ids = [[a, b] for a, b in zip(self.lineage.ids(layer, parents), self.lineage.ids(layer, second))]
            rec["crossover"] = c.crossover
        elif c.strategy == "functional":
            w_out = torch.zeros_like(w_out)
        elif c.strategy == "hybrid":  # split: the parent keeps half of its outgoing weights, the child the rest
            w_out = w_out / 2
            mlp.c_proj.weight[:, parents_d] = w_out
        surgery.write_neurons(mlp, self.optimizer, dying_d, self._mutate(mlp, w_in), b_in, w_out)
        if c.strategy == "functional" and c.preservation_steps > 0:
            before, after = surgery.fit_newborns(mlp, self.tracker.inputs[layer], dying_d, residual,
                                                 c.preservation_steps)
            rec.update(preservation_mse_before=before, preservation_mse_after=after)
        self.tracker.reset(layer, dying)
        born_ids = self.lineage.replace(layer, dying, parent_ids, step)
        return {"layer": layer, "n_killed": len(dying), "n_born": len(dying), "fitness_threshold": threshold,
                "width": mlp.width, "killed": killed_ids, "born": born_ids, "parents": parent_ids, **rec}

    def _cross(self, mlp, fitness, first, second, w_in, b_in, w_out):
        """Mix the first parents' weights (given) with the second parents' (incoming rows and outgoing columns)."""
        dev = w_in.device
        w_in2, b_in2 = self._in_weights(mlp, second.to(dev))
        w_out2 = mlp.c_proj.weight[:, second.to(dev)]
        if self.c.crossover == "uniform":
            def pick(a, b):  # each weight from either parent, with equal chance
                return torch.where((torch.rand(a.shape, generator=self.gen) < 0.5).to(dev), a, b)

            return pick(w_in, w_in2), (pick(b_in, b_in2) if b_in is not None else None), pick(w_out, w_out2)
        if self.c.crossover == "random":  # a blend weight per newborn, by chance
            a = torch.rand(len(first), generator=self.gen).to(dev, w_in.dtype)
        else:  # weighted: by the parents' fitness
            f1, f2 = fitness[first].clamp(min=0), fitness[second].clamp(min=0)
            a = (f1 / (f1 + f2).clamp(min=1e-12)).to(dev, w_in.dtype)
        w_in = a[:, None] * w_in + (1 - a[:, None]) * w_in2
        w_out = a[None, :] * w_out + (1 - a[None, :]) * w_out2
        if b_in is not None:
            b_in = a * b_in + (1 - a) * b_in2
        return w_in, b_in, w_out

    def _growth(self, layer: int, step: int) -> dict | None:
        mlp = self.mlps[layer]
        k = min(round(self.c.turnover_rate * self.initial_width), self.max_width - mlp.width)
        if k <= 0:
            return None
        fitness, mature = self._fitness(layer, step)
        pool = mature.nonzero().flatten() if mature.any() else torch.arange(mlp.width)
        ranked = pool[fitness[pool].argsort(descending=True)]  # each parent has one newborn
        parents = self._orthogonal(mlp, ranked, k)[0] if self.c.select == "orthogonal" else ranked[:k]
        angle = mean_angle(mlp.c_fc.weight.detach().cpu(), parents)
        parent_ids = [[p] for p in self.lineage.ids(layer, parents)]
        dev = mlp.c_fc.weight.device
        w_in, b_in = self._in_weights(mlp, parents.to(dev))
        w_out = mlp.c_proj.weight.new_zeros(mlp.c_proj.weight.shape[0], len(parents))
        width_before = mlp.width
        surgery.grow(mlp, self.optimizer, self._mutate(mlp, w_in), b_in, w_out)
        self.tracker.grow(layer, len(parents))
        born = self.lineage.append(layer, parent_ids, step)
        return {"layer": layer, "n_killed": 0, "n_born": len(born), "fitness_threshold": None,
                "width_before": width_before, "width": mlp.width, "killed": [], "born": born, "parents": parent_ids,
                "select": self.c.select, "parent_angle_deg": angle}

    def _fresh_mlp(self, layer: int) -> None:
        """Layer `layer`'s MLP gets fresh weights (the model's initialisation) and zero Adam moments."""
        mlp = self.mlps[layer]
        w = mlp.width
        dev = mlp.c_fc.weight.device
        w_in = torch.randn(mlp.c_fc.weight.shape, generator=self.gen).to(dev) * 0.02
        w_out = torch.randn(mlp.c_proj.weight.shape, generator=self.gen).to(dev) * self.model.residual_init_std
        b_in = torch.zeros(w, device=dev) if mlp.c_fc.bias is not None else None
        surgery.write_neurons(mlp, self.optimizer, torch.arange(w, device=dev), w_in, b_in, w_out)
        if mlp.c_proj.bias is not None:
            mlp.c_proj.bias.zero_()
            surgery.reset_moments(self.optimizer, mlp.c_proj.bias, torch.arange(len(mlp.c_proj.bias), device=dev), 0)
        self.tracker.reset(layer, torch.arange(w))

    def _layer_event(self, step: int) -> list[dict]:
        if self.c.layer_schedule == "depth":
            return self._depth_event(step)
        t0 = time.perf_counter()
        fits = [self._fitness(layer, step) for layer in range(len(self.mlps))]
        layer_fit = torch.stack([f.mean() for f, _ in fits])
        top = layer_fit.max().clamp(min=1e-12)
        self.vitality = [(f / top).item() for f in layer_fit]
        mature = [bool(m.all()) for _, m in fits]
        if not any(mature):
            return []
        layer = min((i for i in range(len(self.mlps)) if mature[i]), key=lambda i: layer_fit[i].item())
        w = self.mlps[layer].width
        killed = self.lineage.ids(layer, range(w))
        self._fresh_mlp(layer)
        born = self.lineage.replace(layer, range(w), [[] for _ in range(w)], step)
        vitality = list(self.vitality)
        self.vitality[layer] = self.c.initial_vitality
        return [{"layer": layer, "n_killed": w, "n_born": w, "fitness_threshold": layer_fit[layer].item(),
                 "width": w, "killed": killed, "born": born, "parents": [], "vitality": vitality,
                 "time_ms": 1000 * (time.perf_counter() - t0)}]

    def _depth_event(self, step: int) -> list[dict]:
        """Deep layers decay, the deepest dies, the others move one block deeper, a newborn fills block 0."""
        t0 = time.perf_counter()
        deepest = len(self.mlps) - 1
        if not bool(self._fitness(deepest, step)[1].all()):  # the deepest MLP is not mature yet
            return []
        n = len(self.mlps)
        vitality = list(self.vitality)
        decayed = [v * (1 - layer / n) for layer, v in enumerate(vitality)]
        for layer in range(deepest, 0, -1):
            surgery.copy_mlp(self.mlps[layer - 1], self.mlps[layer], self.optimizer)
        self.tracker.ema = [torch.zeros_like(self.tracker.ema[0])] + self.tracker.ema[:-1]
        self._fresh_mlp(0)
        killed, born = self.lineage.move_deeper(step)
        self.vitality = [self.c.initial_vitality] + decayed[:-1]
        w = self.mlps[0].width
        return [{"layer": deepest, "born_layer": 0, "n_killed": w, "n_born": w, "fitness_threshold": None,
                 "width": w, "killed": killed, "born": born, "parents": [], "vitality": vitality,
                 "vitality_after": list(self.vitality), "time_ms": 1000 * (time.perf_counter() - t0)}]

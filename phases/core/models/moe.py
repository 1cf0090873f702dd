"""A mixture-of-experts layer: a router, top-k softmax gating, MLP experts with sort-based dispatch, the Switch
load-balancing loss, the router z-loss and an optional capacity factor.

Dispatch groups the (token, expert) assignments of a batch once (argsort + bincount). Small batches (train-moe's)
copy each expert's tokens into a padded (experts, capacity, d) buffer and run every expert in one batched matmul:
no per-token or per-expert Python work, one host sync. Large batches, where matmuls dominate and padding costs,
run one matmul per expert on its contiguous slice of the sorted tokens (no masks, unlike the naive loop). With a
capacity factor, assignments beyond an expert's capacity are dropped, first choices before second choices (GShard's
priority), and the dropped share is reported. The naive alternative, HF Mixtral's per-expert `torch.where` loop, is the baseline in
benchmarks/moe_dispatch.py."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

@dataclass
class Routing:
    """What one forward pass routed: everything the auxiliary losses and the diagnostics need."""

    logits: torch.Tensor  # (T, N) float32 router logits; -inf for experts the task may not use
    probs: torch.Tensor  # (T, N) softmax of the logits
    experts: torch.Tensor  # (T, k) chosen experts (by the router, or forced)
    gates: torch.Tensor  # (T, k) their weights (top-k probabilities renormalised to sum to 1)
    kept: torch.Tensor  # (T, k) bool: False where capacity dropped the assignment
    n_allowed: int  # experts the task may use (N without task masks)


class Router(nn.Module):
    """Token features -> expert logits. `linear`: one layer. `deep`: an MLP (the lab's deep router). With several
    tasks a learned task embedding is added to the input, so that gating is conditioned on the task."""

    def __init__(self, d_model: int, n_experts: int, kind: str = "linear", hidden: int = 128, n_tasks: int = 1):
        super().__init__()
        if kind not in ("linear", "deep"):
            raise ValueError(f"unknown router {kind!r}; use linear or deep")
        self.task_emb = nn.Embedding(n_tasks, d_model) if n_tasks > 1 else None
        if kind == "linear":
            self.net = nn.Linear(d_model, n_experts)
        else:
            self.net = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, n_experts))

    @property
    def out(self) -> nn.Linear:
        """The layer that gives one logit per expert (grown with the experts)."""
        return self.net if isinstance(self.net, nn.Linear) else self.net[-1]

    def forward(self, x: torch.Tensor, task: int = 0) -> torch.Tensor:
        if self.task_emb is not None:
            x = x + self.task_emb.weight[task]
        return self.net(x).float()  # softmax, top-k and z-loss in float32 even under autocast


# Above this many assignments per expert on average, the padded batched matmul loses to a loop of per-expert
# matmuls over sorted slices (benchmarks/moe_dispatch.py on 2 CPU cores: the crossover lies between 512 and 1024).
GROUPED_MIN_TOKENS_PER_EXPERT = 768


def dispatch(x: torch.Tensor, experts: torch.Tensor, gates: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,
             w2: torch.Tensor, b2: torch.Tensor, capacity: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """y[t] = sum_j gates[t, j] * expert_{experts[t, j]}(x[t]) for (T, d) tokens, experts with weights w1 (N, d, h),
    b1 (N, h), w2 (N, h, d_out), b2 (N, d_out). Returns (y, kept) where kept (T, k) marks the assignments that fit
    within `capacity` tokens per expert (None: dropless, every assignment kept)."""
    T, k = experts.shape
    n = w1.shape[0]
    choice_major = experts.t().reshape(-1)  # index j*T + t: all first choices before all second choices
    order = torch.argsort(choice_major, stable=True)  # grouped by expert, by priority within an expert
    counts = torch.bincount(choice_major, minlength=n)
    sorted_expert = choice_major[order]
    position = torch.arange(T * k, device=x.device) - (torch.cumsum(counts, 0) - counts)[sorted_expert]
    cap = int(counts.max()) if capacity is None else capacity  # the one host sync
    keep = position < cap
    kept = torch.zeros(T * k, dtype=torch.bool, device=x.device).index_fill_(0, order[keep], True)
    if capacity is not None:
        order, sorted_expert, position = order[keep], sorted_expert[keep], position[keep]
    token = order % T
    if T * k >= GROUPED_MIN_TOKENS_PER_EXPERT * n:  # large batches: one matmul per expert's contiguous slice
        sizes = counts.clamp(max=cap).tolist()
        slices = x.index_select(0, token).split(sizes)
        out = torch.cat([torch.addmm(b2[e], F.gelu(torch.addmm(b1[e], xs, w1[e])), w2[e])
                         for e, xs in enumerate(slices)])
    else:  # small batches: every expert in one padded batched matmul (kernel launches dominate here)
        slot = sorted_expert * cap + position
        buf = x.new_zeros(n * cap, x.shape[1]).index_copy_(0, slot, x[token]).view(n, cap, x.shape[1])
        hidden = F.gelu(torch.baddbmm(b1.unsqueeze(1), buf, w1))
        out = torch.baddbmm(b2.unsqueeze(1), hidden, w2).reshape(n * cap, -1).index_select(0, slot)
    weighted = out * gates.t().reshape(-1)[order].unsqueeze(1).to(out.dtype)
    y = weighted.new_zeros(T, out.shape[1]).index_add_(0, token, weighted)
    return y, kept.view(k, T).t()


class MoELayer(nn.Module):
    """`n_experts` MLP experts (d -> hidden -> d_out, GELU) behind a router with top-k gating.

    `allowed` (tasks, N) bool restricts each task to a subset of experts (task masks): the router's logits of the
    other experts are -inf, so they get no probability, are never chosen and receive none of that task's tokens.
    `capacity_factor` > 0 caps each expert at ceil(factor * T * k / N) assignments per batch; 0 is dropless."""

    def __init__(self, d_model: int, n_experts: int = 12, top_k: int = 2, hidden: int = 256, d_out: int | None = None,
                 router: str = "linear", router_hidden: int = 128, n_tasks: int = 1,
                 allowed: torch.Tensor | None = None, capacity_factor: float = 0.0):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be in 1..{n_experts}, got {top_k}")
        d_out = d_out or d_model
        self.n_experts, self.top_k, self.capacity_factor = n_experts, top_k, capacity_factor
        self.router = Router(d_model, n_experts, router, router_hidden, n_tasks)
        self.w1 = nn.Parameter(torch.randn(n_experts, d_model, hidden) / math.sqrt(d_model))
        self.b1 = nn.Parameter(torch.zeros(n_experts, hidden))
        self.w2 = nn.Parameter(torch.randn(n_experts, hidden, d_out) / math.sqrt(hidden))
        self.b2 = nn.Parameter(torch.zeros(n_experts, d_out))
        if allowed is None:
            allowed = torch.ones(n_tasks, n_experts, dtype=torch.bool)
        if allowed.shape != (n_tasks, n_experts) or not bool(allowed.any(1).all()):
            raise ValueError("allowed must be (tasks, experts) with at least one expert per task")
        if int(allowed.sum(1).min()) < top_k:
            raise ValueError(f"every task needs at least top_k={top_k} allowed experts")
        self.register_buffer("allowed", allowed.clone(), persistent=True)

    # --- a changing number of experts ------------------------------------------------------------------------------
    def _expert_tensors(self) -> list[tuple[nn.Module, str, int]]:
        """(module, parameter name, expert dim) of every tensor with one slice per expert."""
        out = self.router.out
        return [(self, "w1", 0), (self, "b1", 0), (self, "w2", 0), (self, "b2", 0), (out, "weight", 0),
                (out, "bias", 0)]

    @torch.no_grad()
    def add_expert(self, source: int, noise: float, optimizer=None) -> int:
        """Append an expert copied from expert `source` (its MLP and its router logit's weights) plus Gaussian noise
        of `noise` x each tensor's std (torch's global generator), usable by the tasks that may use `source`. The
        optimizer's state grows with the tensors (the new slices start with zero moments). Returns its index."""
        from phases.core.training import replace_param

        for module, name, dim in self._expert_tensors():
            old = getattr(module, name)
            piece = old.select(dim, source).unsqueeze(dim).clone()
            if noise and old.numel() > 1:
                piece += torch.randn(piece.shape, device=piece.device, dtype=piece.dtype) * noise * old.std()
            new = nn.Parameter(torch.cat([old, piece], dim), requires_grad=old.requires_grad)
            if optimizer is not None:
                replace_param(optimizer, old, new, dim)
            setattr(module, name, new)
        self.router.out.out_features += 1
        self.allowed = torch.cat([self.allowed, self.allowed[:, source:source + 1]], 1)
        self.n_experts += 1
        return self.n_experts - 1

    @torch.no_grad()
    def resize(self, n: int) -> None:
        """Give the layer `n` experts' worth of tensors (values to be loaded next: a checkpoint of a run whose
        experts grew). Call before an optimizer is built on it."""
        for module, name, dim in self._expert_tensors():
            old = getattr(module, name)
            shape = list(old.shape)
            shape[dim] = n
            setattr(module, name, nn.Parameter(old.new_zeros(shape), requires_grad=old.requires_grad))
        self.router.out.out_features = n
        self.allowed = torch.ones(self.allowed.shape[0], n, dtype=torch.bool, device=self.allowed.device)
        self.n_experts = n

    def capacity(self, n_tokens: int) -> int | None:
        if self.capacity_factor <= 0:
            return None
        return max(1, math.ceil(self.capacity_factor * n_tokens * self.top_k / self.n_experts))

    def forward(self, x: torch.Tensor, task: int = 0, force: torch.Tensor | None = None,
                detach_gates: bool = False) -> tuple[torch.Tensor, Routing]:
        """x (T, d) -> (y (T, d_out), Routing). `force` (T,) sends each token to one given expert with weight 1
        (an expert evaluated alone; experts trained on assigned classes); the router still runs, so its losses
        can be computed. `detach_gates` keeps the task loss out of the router (it then learns only from its own
        losses)."""
        allowed = self.allowed[task]
        logits = self.router(x, task).masked_fill(~allowed, float("-inf"))
        probs = logits.softmax(-1)
        if force is not None:
            experts = force.view(-1, 1)
            gates = torch.ones_like(experts, dtype=probs.dtype)
            capacity = None
        else:
            top, experts = probs.topk(self.top_k, dim=-1)
            gates = top / top.sum(-1, keepdim=True)
            capacity = self.capacity(x.shape[0])
        if detach_gates:
            gates = gates.detach()
        y, kept = dispatch(x, experts, gates, self.w1, self.b1, self.w2, self.b2, capacity)
        return y, Routing(logits, probs, experts, gates, kept, int(allowed.sum()))


def balance_loss(probs: torch.Tensor, experts: torch.Tensor, n_allowed: int | None = None) -> torch.Tensor:
    """Switch Transformer's load-balancing loss N * sum_i f_i P_i, with f_i the fraction of the T*k assignments
    sent to expert i and P_i the mean router probability of expert i; N counts the experts the tokens may use.
    1.0 when routing is uniform, up to N when it collapses onto one expert."""
    n = probs.shape[-1]
    f = torch.bincount(experts.reshape(-1), minlength=n).to(probs.dtype) / experts.numel()
    return (n_allowed or n) * (f * probs.mean(0)).sum()


def z_loss(logits: torch.Tensor) -> torch.Tensor:
    """Router z-loss (ST-MoE): mean over tokens of logsumexp(logits)^2; keeps router logits small."""
    return torch.logsumexp(logits, dim=-1).pow(2).mean()

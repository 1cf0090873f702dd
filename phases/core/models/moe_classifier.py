"""The lab's classifier: a backbone per task (CNN for images, text encoder for sentences) feeding one shared MoE
layer, then a linear head per task. Used by `train-moe` and by `ewc`'s moe-multitask scenario through three calls:

    model = build_model(tasks, MoEModelConfig(...))                  # tasks: phases.core.data.classification.TaskData
    loss, stats = training_loss(model, x, y, task_index, LossWeights(...))
    result = evaluate(model, split.x, split.y, task_index)           # accuracy, predictions, routing diagnostics

Every task has a fixed class -> expert assignment (class mod the task's experts, or CIFAR-100's superclass): the
target of supervised routing and the reference of the routing accuracy. The experts' outputs are mixed before the
head, and the head is linear, so "an expert alone" (every token forced to that expert) is a complete classifier:
the oracle accuracy counts an item correct when at least one expert the task may use classifies it correctly."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from phases.core.data.classification import TaskData
from phases.core.models.backbones import ImageCNN, TextEncoder
from phases.core.models.moe import MoELayer, Routing, balance_loss, z_loss

@dataclass
class MoEModelConfig:
    experts: int = 12
    top_k: int = 2
    d_model: int = 128
    expert_hidden: int = 256
    router: str = "linear"  # linear | deep
    router_hidden: int = 128
    width: float = 1.0  # backbone width multiplier
    dropout: float = 0.1
    capacity_factor: float = 0.0  # 0: dropless
    task_masks: list[list[int]] | None = None  # per task, the experts it may use (None: all)
    assignment: str = "auto"  # class -> expert: "mod" (class mod experts), "coarse" (superclass mod experts), or
    # "auto" (coarse for tasks with superclasses, mod for the others)


@dataclass
class LossWeights:
    balance: float = 0.01  # Switch load-balancing loss
    z: float = 0.001  # router z-loss
    route: float = 0.0  # cross-entropy of the router toward the class -> expert assignment
    label_smoothing: float = 0.0
    entropy: float = 0.0  # mean router entropy (nats): positive sharpens the routing, negative spreads it
    synthetic: float = 0.0  # share of each batch's targets replaced by the router's own top expert (mod classes)


def synthetic_targets(y: torch.Tensor, probs: torch.Tensor, n_classes: int, fraction: float):
    """The lab's synthetic label injection (Phase 7b1): round(fraction x batch) items, drawn at random (torch's
    generator), get the router's argmax expert as their training target, folded into the classes (expert mod
    classes). Returns (targets, the replaced items' indices, their injected labels)."""
    chosen = torch.randperm(len(y), device=y.device)[:round(fraction * len(y))]
    injected = probs.detach().argmax(-1)[chosen] % n_classes
    return y.index_put((chosen,), injected), chosen, injected


def class_assignment(tasks: list[TaskData], allowed: torch.Tensor, scheme: str) -> torch.Tensor:
    """(tasks, max classes) expert of each class, -1 past a task's classes. Classes (or their superclasses) go
    round-robin over the experts the task may use; without task masks the tasks continue one another's count,
    so that two tasks do not start on the same experts."""
    table = torch.full((len(tasks), max(t.num_classes for t in tasks)), -1, dtype=torch.long)
    masked = not bool(allowed.all())
    offset = 0
    for i, task in enumerate(tasks):
        experts = allowed[i].nonzero().flatten()
        if scheme == "coarse" and task.class_groups is None:
            raise ValueError(f"task {task.name!r} has no superclasses for the 'coarse' assignment")
        by_group = task.class_groups is not None and scheme in ("auto", "coarse")
        groups = torch.tensor(task.class_groups) if by_group else torch.arange(task.num_classes)
        base = 0 if masked else offset
        table[i, :task.num_classes] = experts[(base + groups) % len(experts)]
        offset += int(groups.max()) + 1
    return table


class MoEClassifier(nn.Module):
    def __init__(self, tasks: list[TaskData], cfg: MoEModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.backbones = nn.ModuleList([
            ImageCNN(t.in_channels, d, cfg.width, t.pixel_max, t.mean, t.std) if t.modality == "image"
            else TextEncoder(t.vocab.size, d, cfg.width, cfg.dropout) for t in tasks])
        allowed = torch.zeros(len(tasks), cfg.experts, dtype=torch.bool)
        for i in range(len(tasks)):
            allowed[i, cfg.task_masks[i] if cfg.task_masks else slice(None)] = True
        self.norm = nn.LayerNorm(d)
        self.moe = MoELayer(d, cfg.experts, cfg.top_k, cfg.expert_hidden, router=cfg.router,
                            router_hidden=cfg.router_hidden, n_tasks=len(tasks), allowed=allowed,
                            capacity_factor=cfg.capacity_factor)
        self.drop = nn.Dropout(cfg.dropout)
        self.heads = nn.ModuleList([nn.Linear(d, t.num_classes) for t in tasks])
        self.register_buffer("assignment", class_assignment(tasks, allowed, cfg.assignment))

    def features(self, x: torch.Tensor, task: int) -> torch.Tensor:
        return self.norm(self.backbones[task](x))

    def classify(self, h: torch.Tensor, task: int, force: torch.Tensor | None = None,
                 detach_gates: bool = False) -> tuple[torch.Tensor, Routing]:
        y, routing = self.moe(h, task, force=force, detach_gates=detach_gates)
        return self.heads[task](self.drop(y)), routing

    def forward(self, x: torch.Tensor, task: int = 0) -> tuple[torch.Tensor, Routing]:
        return self.classify(self.features(x, task), task)


def build_model(tasks: list[TaskData], cfg: MoEModelConfig) -> MoEClassifier:
    return MoEClassifier(tasks, cfg)


def training_loss(model: MoEClassifier, x: torch.Tensor, y: torch.Tensor, task: int, weights: LossWeights,
                  route_by_assignment: bool = False, router_learns_task: bool = True) -> tuple[torch.Tensor, dict]:
    """Loss of one batch of task `task`: cross-entropy + balance * Switch loss + z * router z-loss + route *
    routing cross-entropy toward the assignment + entropy * mean router entropy. `route_by_assignment` sends each
    item to its assigned expert (experts trained on their classes); `router_learns_task=False` keeps the task loss
    out of the router (it learns from its own losses only); `weights.synthetic` trains a share of the items on the
    router's own choice instead of their label (`synthetic_targets`). Returns (loss, stats): detached per-batch
    numbers for logging, among them `abs_loss`, the sum of the terms' magnitudes that `entropy_term` is a share
    of."""
    target_expert = model.assignment[task][y]
    logits, r = model.classify(model.features(x, task), task, force=target_expert if route_by_assignment else None,
                               detach_gates=not router_learns_task)
    stats: dict = {}
    target = y
    if weights.synthetic:
        target, chosen, injected = synthetic_targets(y, r.probs, logits.shape[-1], weights.synthetic)
        stats.update(synthetic_n=len(chosen), synthetic_agree=(injected == y[chosen]).sum())
    task_loss = F.cross_entropy(logits.float(), target, label_smoothing=weights.label_smoothing)
    bal = balance_loss(r.probs, r.experts, r.n_allowed)
    zl = z_loss(r.logits)
    entropy = torch.special.entr(r.probs).sum(-1).mean()  # 0 log 0 = 0 for the experts a task may not use
    stats.update({"task_loss": task_loss.detach(), "balance_loss": bal.detach(), "z_loss": zl.detach(),
                  "router_entropy": entropy.detach(), "correct": (logits.argmax(-1) == y).sum(), "n": y.numel(),
                  "expert_counts": torch.bincount(r.experts.reshape(-1), minlength=model.moe.n_experts)})
    terms = [(weights.balance, bal), (weights.z, zl), (weights.entropy, entropy)]
    if weights.route:
        route = F.cross_entropy(r.logits, target_expert)
        terms.append((weights.route, route))
        stats["route_loss"] = route.detach()
    loss, magnitude = task_loss, task_loss.detach()
    for weight, term in terms:
        if weight:  # a zero weight leaves the term out of the graph (no zero gradients for weight decay to act on)
            loss = loss + weight * term
            magnitude = magnitude + (weight * term.detach()).abs()
    if weights.entropy:
        stats["entropy_term"] = weights.entropy * entropy.detach()
    stats.update(loss=loss.detach(), abs_loss=magnitude)
    return loss, stats


@dataclass
class EvalResult:
    """One task's evaluation on one split: per-item outputs and the routing diagnostics."""

    n: int
    correct: int
    acc: float
    loss: float
    targets: torch.Tensor  # (n,)
    predictions: torch.Tensor  # (n,)
    probs: torch.Tensor  # (n, classes)
    experts: torch.Tensor  # (n, k) chosen experts
    gates: torch.Tensor  # (n, k)
    expert_predictions: torch.Tensor  # (n, N) each expert alone; -1 for experts the task may not use
    diagnostics: dict = field(default_factory=dict)


def routing_diagnostics(targets: torch.Tensor, predictions: torch.Tensor, expert_predictions: torch.Tensor,
                        experts: torch.Tensor, kept: torch.Tensor, entropy_sum: float,
                        assigned: torch.Tensor | None, allowed: torch.Tensor) -> dict:
    """Routing accuracy (top-1 expert == assigned expert), oracle accuracy (some allowed expert alone is right)
    and gap to the routed accuracy, utilisation (share of the n*k assignments per expert; sums to 1), coefficient
    of variation of the utilisation over the allowed experts, mean router entropy (nats), each expert's accuracy
    alone on all items and on the items routed to it first, and the share of assignments dropped by capacity."""
    n, n_experts = expert_predictions.shape
    util = torch.bincount(experts.reshape(-1), minlength=n_experts).double() / max(1, experts.numel())
    used = util[allowed]
    alone_right = (expert_predictions == targets[:, None]) & allowed[None, :]
    acc = (predictions == targets).double().mean().item() if n else math.nan
    oracle = alone_right.any(1).double().mean().item() if n else math.nan
    first = experts[:, 0]
    routed_acc = [alone_right[first == e, e].double().mean().item() if bool(allowed[e]) and bool((first == e).any())
                  else None for e in range(n_experts)]
    return {
        "routing_acc": (first == assigned).double().mean().item() if assigned is not None and n else None,
        "oracle_acc": oracle,
        "oracle_gap": oracle - acc,
        "utilisation": util.tolist(),
        "load_cv": (used.std(unbiased=False) / used.mean()).item() if used.sum() > 0 else None,
        "router_entropy": entropy_sum / n if n else None,
        "expert_acc": [alone_right[:, e].double().mean().item() if bool(allowed[e]) and n else None
                       for e in range(n_experts)],
        "expert_routed_acc": routed_acc,
        "dropped_frac": 1.0 - kept.double().mean().item() if kept.numel() else 0.0,
    }


@torch.no_grad()
def evaluate(model: MoEClassifier, x: torch.Tensor, y: torch.Tensor, task: int, batch_size: int = 512,
             with_assignment: bool = True, autocast_dtype: torch.dtype | None = None) -> EvalResult:
    """Evaluate task `task` on (x, y): the routed model, and every allowed expert alone (for the oracle and the
    per-expert accuracies). `with_assignment=False` leaves the routing accuracy out (routing not supervised)."""
    was_training = model.training
    model.eval()
    allowed = model.moe.allowed[task]
    n_experts = model.moe.n_experts
    amp = (torch.autocast(x.device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext())
    parts: dict[str, list] = {k: [] for k in ("probs", "experts", "gates", "kept", "expert_preds")}
    loss_sum, entropy_sum = 0.0, 0.0
    with amp:
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            h = model.features(xb, task)
            logits, r = model.classify(h, task)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
            p = r.probs
            entropy_sum += -(p * p.clamp_min(1e-12).log()).sum().item()
            alone = torch.full((len(yb), n_experts), -1, dtype=torch.long, device=y.device)
            for e in allowed.nonzero().flatten().tolist():
                alone[:, e] = model.classify(h, task, force=torch.full_like(yb, e))[0].argmax(-1)
            for k, v in (("probs", logits.softmax(-1)), ("experts", r.experts), ("gates", r.gates),
                         ("kept", r.kept), ("expert_preds", alone)):
                parts[k].append(v.float().cpu() if k in ("probs", "gates") else v.cpu())
    model.train(was_training)
    cat = {k: torch.cat(v) if v else torch.empty(0) for k, v in parts.items()}
    targets = y.cpu()
    preds = cat["probs"].argmax(-1)
    correct = int((preds == targets).sum())
    n = len(targets)
    assigned = model.assignment[task].cpu()[targets] if with_assignment else None
    diag = routing_diagnostics(targets, preds, cat["expert_preds"], cat["experts"], cat["kept"], entropy_sum,
                               assigned, allowed.cpu())
    return EvalResult(n, correct, correct / n if n else math.nan, loss_sum / n if n else math.nan, targets, preds,
                      cat["probs"], cat["experts"], cat["gates"], cat["expert_preds"], diag)

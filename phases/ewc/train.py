"""One method through a scenario's stages: train each stage, evaluate every task's held-out data after it (a row
of R), then consolidate (EWC/L2 importance, replay buffer). Every method starts from the same seed, so the initial
weights and the sequence of training batches are identical across the methods of one invocation."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from phases.core import render
from phases.core.training import check_finite
from phases.core.seeding import seed_everything
from phases.ewc.config import EwcConfig
from phases.ewc.evaluate import held_out, quick
from phases.ewc.fisher import compute_fisher
from phases.ewc.penalties import QuadraticPenalty
from phases.ewc.replay import Reservoir
from phases.ewc.scenarios import Scenario, Stage


@dataclass
class MethodResult:
    method: str
    stages: list[Stage]
    R: list[list[float]] = field(default_factory=list)  # metric per (stage, task)
    loss_R: list[list[float]] = field(default_factory=list)  # held-out loss per (stage, task)
    n: list[int] = field(default_factory=list)  # held-out items per task
    history: list[dict] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)  # final per-item predictions
    extra: dict = field(default_factory=dict)
    seconds: float = 0.0


def _batch_counts(mix: list[tuple[int, float]], batch_size: int) -> list[tuple[int, int]]:
    counts = [(t, int(round(share * batch_size))) for t, share in mix]
    counts[-1] = (counts[-1][0], batch_size - sum(n for _, n in counts[:-1]))
    return [(t, n) for t, n in counts if n > 0]


def _gate_means(gated, scn: Scenario, model: nn.Module, device) -> dict:
    """Mean gate per wrapped layer on each task's validation data (how far each input is routed through the
    modification)."""
    out = {}
    with torch.no_grad():
        model.eval()
        for t in scn.tasks:
            x, y = (v.to(device) for v in t.val)
            model(x, t.model_task)
            mask = (y >= 0).float().unsqueeze(-1) if scn.kind != "cls" else None
            out[t.name] = [float((g.last_gate * mask).sum() / mask.sum()) if mask is not None
                           else float(g.last_gate.mean()) for g in gated]
        model.train()
    return out


def train_method(scn: Scenario, method: str, c: EwcConfig, device, log=None) -> MethodResult:
    seed_everything(c.seed, c.deterministic)
    model = scn.build_model().to(device)
    batch_gen = torch.Generator().manual_seed(c.seed)  # the stages' batches: the same for every method
    aux_gen = torch.Generator().manual_seed(c.seed + 1)  # Fisher samples and the replay buffer
    steps = c.steps or scn.steps
    lr = c.lr or scn.lr
    eval_every = c.eval_interval or max(1, steps // 4)
    penalty = (QuadraticPenalty(c.ewc_lambda, c.ewc_mode, c.gamma, uniform=method == "l2")
               if method in ("ewc", "l2") else None)
    buffer = Reservoir(c.buffer_size, aux_gen) if method == "replay" else None
    gated: list = []
    result = MethodResult(method, scn.stages(method))
    t0 = time.perf_counter()
    step = 0

    def record(rec: dict) -> None:
        result.history.append(rec)
        if log is not None:
            log(rec)

    for s, stage in enumerate(result.stages):
        if method == "gated" and s == 1:
            from phases.core.models.gated import wrap_linears

            gated = wrap_linears(model, scn.gated_layers, c.gate_bias)
            model.to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=lr)  # a fresh optimizer per stage, as in the EWC papers
        counts = _batch_counts(stage.mix, c.batch_size)
        model.train()
        for it in range(steps):
            groups = [(t, *scn.tasks[t].sample(n, batch_gen)) for t, n in counts]
            if buffer is not None and len(buffer):
                groups += buffer.sample(c.replay_batch or c.batch_size)
            total_n = sum(len(g[2]) for g in groups)
            loss = torch.zeros((), device=device)
            task_loss = 0.0
            for t, x, y in groups:
                g_loss, g_task = scn.group_loss(model, x.to(device), y.to(device), scn.tasks[t].model_task)
                w = len(y) / total_n
                loss = loss + w * g_loss
                task_loss += w * float(g_task)
            rec_extra = {}
            if penalty is not None and penalty.anchors:
                pen = penalty(model)
                loss = loss + pen
                rec_extra["penalty"] = float(pen.detach())
            if gated and c.gate_penalty:
                gate_mean = torch.stack([g.last_gate.mean() for g in gated]).mean()
                loss = loss + c.gate_penalty * gate_mean
                rec_extra["gate_mean"] = float(gate_mean.detach())
            check_finite(task_loss, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            if step % c.log_interval == 0 or it == 0:
                record({"step": step, "split": "train", "stage": stage.name, "loss": task_loss, **rec_extra})
            if (it + 1) % eval_every == 0 and it + 1 < steps:
                for j, t in enumerate(scn.tasks):
                    if j <= max(st.task for st in result.stages[:s + 1]):
                        record({"step": step, "split": "val", "stage": stage.name, "task": t.name,
                                **quick(scn, model, t, device)})
        # end of stage: a row of R on every task's held-out data
        row, loss_row = [], []
        last = s == len(result.stages) - 1
        for j, t in enumerate(scn.tasks):
            ev = held_out(scn, model, t, device)
            row.append(ev[scn.metric])
            loss_row.append(ev["loss"])
            record({"step": step, "split": "test", "stage": stage.name, "task": t.name,
                    **{k: v for k, v in ev.items() if k != "items"}})
            if s == 0:
                result.n.append(ev["n"])
            if last:
                result.items += [{"task": t.name, **item} for item in ev.get("items", [])]
        result.R.append(row)
        result.loss_R.append(loss_row)
        render.say(f"  {method}: after stage {stage.name!r}: " + ", ".join(
            f"{t.name} {render.fmt(v)}" for t, v in zip(scn.tasks, row)))
        if last:
            break
        task = scn.tasks[stage.task]
        if penalty is not None:
            x, y = task.examples(c.fisher_samples, aux_gen)
            fisher, how = compute_fisher(c.fisher, model, x.to(device), y.to(device), task.model_task,
                                         scn.loss_fn, c.fisher_batch)
            penalty.consolidate(fisher, model)
            result.extra["fisher"] = how
            result.extra.setdefault("fisher_mean", []).append(
                float(sum(f.sum() for f in fisher.values()) / sum(f.numel() for f in fisher.values())))
        if buffer is not None:
            for t, share in stage.mix:
                x, y = scn.tasks[t].examples(None if scn.kind != "lm" else steps * c.batch_size, aux_gen)
                buffer.add(t, x, y)
    if gated:
        result.extra["gates"] = {"layers": scn.gated_layers, "mean_gate_by_task": _gate_means(gated, scn, model,
                                                                                                device)}
    if buffer is not None:
        result.extra["buffer"] = {scn.tasks[t].name: n for t, n in sorted(buffer.counts().items())}
    result.seconds = time.perf_counter() - t0
    return result

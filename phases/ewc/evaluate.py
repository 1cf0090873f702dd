"""Evaluation of one task's held-out data: `held_out` (the test set, every R[i][j]; accuracy, exact match by greedy
decoding, or loss, with its n and per-item predictions or losses) and `quick` (the validation subset, for history curves)."""

from __future__ import annotations

import torch
import torch.nn as nn

from phases.ewc.scenarios import Scenario, Task


@torch.no_grad()
def _losses_and_logits(scn: Scenario, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: int,
                       batch_size: int = 256):
    losses, preds, probs = [], [], []
    for s in range(0, len(x), batch_size):
        logits = model(x[s:s + batch_size], task).float()
        losses.append(scn.loss_fn(logits, y[s:s + batch_size]))
        preds.append(logits.argmax(-1))
        if scn.kind == "cls":
            probs.append(logits.softmax(-1))
    return torch.cat(losses), torch.cat(preds), (torch.cat(probs) if probs else None)


def _token_acc(pred: torch.Tensor, y: torch.Tensor) -> float:
    mask = y >= 0
    return float((pred[mask] == y[mask]).float().mean())


@torch.no_grad()
def quick(scn: Scenario, model: nn.Module, t: Task, device) -> dict:
    was = model.training
    model.eval()
    x, y = (v.to(device) for v in t.val)
    losses, pred, _ = _losses_and_logits(scn, model, x, y, t.model_task)
    out = {"loss": float(losses.mean())}
    if scn.kind == "cls":
        out["acc"] = float((pred == y).float().mean())
    elif scn.kind == "lm":  # each held-out window's loss: stages and methods are compared window by window
        out["items"] = [{"id": i, "loss": float(v)} for i, v in enumerate(losses.tolist())]
    if scn.kind == "seq":
        out["token_acc"] = _token_acc(pred, y)
    model.train(was)
    return out


@torch.no_grad()
def greedy_decode(gpt: nn.Module, prompts: list[list[int]], max_new: int, eos: int, device,
                  batch_size: int = 256) -> list[list[int]]:
    """Greedy continuation of each prompt up to <eos> (excluded) or max_new tokens. Prompts of one length are
    decoded together (the GPT's positions are absolute, so no padding on the left)."""
    out: list[list[int] | None] = [None] * len(prompts)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for _, idxs in sorted(by_len.items()):
        for s in range(0, len(idxs), batch_size):
            chunk = idxs[s:s + batch_size]
            idx = torch.tensor([prompts[i] for i in chunk], device=device)
            n_prompt = idx.size(1)
            new = min(max_new, gpt.config.block_size - n_prompt)
            for _ in range(new):
                logits, _ = gpt(idx)
                idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
                if bool((idx[:, n_prompt:] == eos).any(1).all()):
                    break
            for row, i in enumerate(chunk):
                gen = idx[row, n_prompt:].tolist()
                out[i] = gen[:gen.index(eos)] if eos in gen else gen
    return out  # type: ignore[return-value]


@torch.no_grad()
def held_out(scn: Scenario, model: nn.Module, t: Task, device) -> dict:
    """{metric: value, "loss", "n", "items": per-item predictions (classification and scan) or losses (text
    windows)}."""
    was = model.training
    model.eval()
    x, y = (v.to(device) for v in t.test)
    out: dict = {"n": len(y)}
    if scn.family == "moe":
        from phases.core.models.moe_classifier import evaluate

        r = evaluate(model.inner, x, y, t.model_task)
        out.update(acc=r.acc, loss=r.loss)
        preds, targets, probs = r.predictions, r.targets, r.probs
    else:
        losses, preds, probs = _losses_and_logits(scn, model, x, y, t.model_task)
        out["loss"] = float(losses.mean())
        targets = y.cpu()
        preds = preds.cpu()
        if scn.kind == "cls":
            out["acc"] = float((preds == targets).float().mean())
    if scn.kind == "cls":
        out["items"] = [{"id": i, "target": int(tg), "prediction": int(p), "correct": int(tg) == int(p),
                         "probs": [round(float(v), 5) for v in pr]}
                        for i, tg, p, pr in zip(t.test_ids, targets.tolist(), preds.tolist(), probs.cpu())]
    elif scn.kind == "lm":  # each held-out window's loss: stages and methods are compared window by window
        out["items"] = [{"id": i, "loss": float(v)} for i, v in enumerate(losses.tolist())]
    if scn.kind == "seq":
        out["token_acc"] = _token_acc(preds.to(y.device), y)
        eos = scn.info["eos"]
        decoded = greedy_decode(model.gpt, [p for p, _ in t.decode], scn.info["max_actions"] + 1, eos, device)
        vocab = scn.info["vocab"]
        right = [d == a for d, (_, a) in zip(decoded, t.decode)]
        out["exact_match"] = sum(right) / len(right)
        out["items"] = [{"id": i, "target": " ".join(vocab[k] for k in a), "prediction": " ".join(vocab[k] for k in d),
                         "correct": ok} for i, d, (_, a), ok in zip(t.test_ids, decoded, t.decode, right)]
    model.train(was)
    return out

"""What an evaluation of train-lora measures, on the validation problems (or, once, the test problems): the loss and
perplexity of the gold solutions (teacher-forced, answer tokens only), and generation accuracy (strict and
flexible, Wilson intervals) through eval-gsm8k's own engine and answer extraction, so a number here means what
the same number means in `nlab eval-gsm8k`."""

from __future__ import annotations

import math
from contextlib import nullcontext

from phases.gsm8k.items import Item
from phases.gsm8k.metrics import accuracies, record
from phases.gsm8k.prompts import PromptSpec
from phases.lora.data import Example, collate, micro_batches


def autocast(device, dtype: str):
    """bf16 autocast where --dtype resolved to bfloat16 (the base is stored in bf16, the LoRA matrices in fp32),
    else nothing."""
    import torch

    if dtype != "bfloat16":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def token_losses(model, batch: list[Example], pad_id: int, device):
    """Summed cross-entropy over the answer tokens of a micro-batch, and how many tokens that is."""
    import torch.nn.functional as F

    ids, mask, labels = collate(batch, pad_id, device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = labels[:, 1:]
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100,
                           reduction="sum")
    return loss, int((target != -100).sum())


def gold_loss(model, examples: list[Example], pad_id: int, device, dtype: str, batch_size: int) -> dict:
    """Mean NLL per answer token of the gold solutions, and its perplexity."""
    import torch

    total, n = 0.0, 0
    with torch.inference_mode(), autocast(device, dtype):
        for batch in micro_batches(sorted(examples, key=lambda e: len(e.ids)), batch_size):
            loss, k = token_losses(model, batch, pad_id, device)
            total, n = total + float(loss), n + k
    mean = total / max(n, 1)
    return {"loss": mean, "ppl": math.exp(mean), "tokens": n}


def generation_records(loaded, spec: PromptSpec, items: list[Item], batch_size: int, device, dtype: str,
                       split: str) -> list[dict]:
    """One eval-gsm8k prediction record per item (greedy decoding through the eval-gsm8k engine), in item order."""
    import torch

    from phases.gsm8k.hf_backend import TransformersBackend

    backend = TransformersBackend(loaded, spec, batch_size, samples=0, temperature=0.0, seed=0, ppl=False)
    if any(it.prompt_ids is None for it in items):
        backend.prepare(items)
    by_id = {it.id: it for it in items}
    out: dict[int, dict] = {}

    def emit(results) -> None:
        for res in results:
            out[res.id] = record(by_id[res.id], res, spec, split)

    with torch.inference_mode(), autocast(device, dtype):
        backend.run(items, set(), emit)
    return [out[it.id] for it in items]


def evaluate(loaded, spec: PromptSpec, items: list[Item], examples: list[Example], pad_id: int, device, dtype: str,
             batch_size: int, split: str) -> tuple[dict, list[dict]]:
    """A history point's numbers (loss, ppl, accuracies with intervals, n) and the per-problem records."""
    model = loaded.model
    was_training = model.training
    model.eval()
    try:
        scores = gold_loss(model, examples, pad_id, device, dtype, batch_size)
        records = generation_records(loaded, spec, items, batch_size, device, dtype, split)
    finally:
        model.train(was_training)
    acc = accuracies(records)
    primary = spec.primary
    point = {"loss": scores["loss"], "ppl": scores["ppl"], "acc": acc[f"{primary}_acc"],
             "acc_low": acc[f"{primary}_acc_low"], "acc_high": acc[f"{primary}_acc_high"], **acc,
             "finished_by_length": sum(r["finish"] == "length" for r in records)}
    return point, records

"""Training utilities for character-level language models (the GPT of phases/core/models/gpt.py), shared by
`nlab apoptosis` and `nlab ewc`: nanoGPT-style random windows and batches from a token array, loss estimates over
a few batches, the exact loss over a whole held-out split, and sampling text."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from phases.core.device import supports_bf16
from phases.core.errors import InputError


def token_tensor(ids: np.ndarray) -> torch.Tensor:
    """A corpus' uint16 ids as an int64 tensor (kept on the CPU; batches move to the device)."""
    return torch.from_numpy(ids.astype(np.int64))


def check_block_size(block_size: int, splits: dict[str, torch.Tensor], dataset: str) -> None:
    """Every split must hold at least one block plus its shifted target."""
    for name, data in splits.items():
        if len(data) <= block_size:
            raise InputError(f"--block-size {block_size} is larger than {dataset}'s {name} text "
                             f"({len(data)} characters)", f"use a --block-size below {len(data)}")


def random_windows(data: torch.Tensor, block_size: int, n: int, generator: torch.Generator):
    """n random windows of block_size tokens (x) and the same windows shifted by one (y), on the CPU: the one
    sampler of token sequences (training batches, estimate_loss' batches, ewc's text tasks). The draw is one
    torch.randint over the window starts from `generator`, so a given generator state gives the same windows."""
    ix = torch.randint(len(data) - block_size, (n,), generator=generator).tolist()
    x = torch.stack([data[i:i + block_size] for i in ix])
    y = torch.stack([data[i + 1:i + 1 + block_size] for i in ix])
    return x, y


def get_batch(data: torch.Tensor, block_size: int, batch_size: int, device, generator: torch.Generator):
    """batch_size random windows (random_windows) moved to `device`, as nanoGPT's get_batch.
    A generator of its own keeps the batch sequence the same whatever else draws random numbers."""
    x, y = random_windows(data, block_size, batch_size, generator)
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def autocast(device):
    """bf16 autocast on CUDA devices that support it; full precision elsewhere."""
    if supports_bf16(device):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def estimate_loss(model, data: torch.Tensor, block_size: int, batch_size: int, eval_iters: int, device,
                  seed: int = 0) -> float:
    """Mean loss over eval_iters random batches (nanoGPT's estimate_loss). The batches are fixed by `seed`, so
    successive evaluations of a run, and runs compared with each other, see the same text."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    losses = torch.zeros(eval_iters)
    for k in range(eval_iters):
        x, y = get_batch(data, block_size, batch_size, device, gen)
        with autocast(device):
            _, loss = model(x, y)
        losses[k] = loss.item()
    model.train(was_training)
    return losses.mean().item()


@torch.no_grad()
def block_losses(model, data: torch.Tensor, block_size: int, batch_size: int, device) -> torch.Tensor:
    """Mean loss of every non-overlapping block of a split (the whole held-out text, not a sample): one value per
    block, so a researcher gets the exact split loss (the mean) and its standard error."""
    was_training = model.training
    model.eval()
    n = (len(data) - 1) // block_size
    x_all = data[:n * block_size].view(n, block_size)
    y_all = data[1:n * block_size + 1].view(n, block_size)
    out = torch.empty(n)
    for start in range(0, n, batch_size):
        x = x_all[start:start + batch_size].to(device)
        y = y_all[start:start + batch_size].to(device)
        with autocast(device):
            logits, _ = model(x, y)
        loss = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), y, reduction="none")
        out[start:start + len(x)] = loss.mean(dim=1).cpu()
    model.train(was_training)
    return out


@torch.no_grad()
def sample_text(model, vocab, n_chars: int, device, temperature: float = 0.8, top_k: int | None = None,
                prompt: str = "\n", seed: int = 0) -> str:
    """n_chars characters generated after `prompt` (temperature 0: greedy)."""
    was_training = model.training
    model.eval()
    idx = torch.from_numpy(vocab.encode(prompt).astype(np.int64))[None].to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with autocast(device):
        out = model.generate(idx, n_chars, temperature=temperature, top_k=top_k, generator=gen)
    model.train(was_training)
    return vocab.decode(out[0, idx.size(1):].tolist())

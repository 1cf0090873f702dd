"""`--device auto|cpu|cuda|cuda:N|mps`: auto picks cuda, then mps, then cpu."""

from __future__ import annotations

import platform

from phases.core.errors import InputError


def resolve_device(spec: str = "auto"):
    import torch

    spec = (spec or "auto").lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise InputError(f"--device {spec!r} is not a device", "use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: CUDA is not available on this machine", "use --device cpu or --device auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)", "pick another index")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps: MPS is not available on this machine", "use --device cpu or --device auto")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {spec!r} is not supported", "use auto, cpu, cuda, cuda:N or mps")
    return dev


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return platform.processor() or platform.machine() or "cpu"


def supports_bf16(device) -> bool:
    """bf16 autocast is worth it on CUDA devices that support it (Ampere and newer)."""
    import torch

    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def set_threads() -> int:
    """CPU threads for torch: `$NLAB_NUM_THREADS` when set (seed sweeps divide the cores between workers),
    else torch's default. Returns the number in use."""
    import os

    import torch

    n = os.environ.get("NLAB_NUM_THREADS")
    if n:
        torch.set_num_threads(max(1, int(n)))
    return torch.get_num_threads()


def prepare(device: str, seed: int, deterministic: bool = False):
    """What every training phase does first: threads, seeds, device. Returns the torch.device."""
    from phases.core.seeding import seed_everything

    set_threads()
    seed_everything(seed, deterministic)
    return resolve_device(device)

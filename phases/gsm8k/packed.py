"""Few-row matmuls for decode steps, through oneDNN with the weights prepacked.

A decode step multiplies each weight matrix by only as many rows as the batch has live sequences (1 to 16). On a
CPU, MKL's sgemm runs such skinny products far below its peak (on a 2-core Zen 3: 20-30 GFLOP/s at 8 rows,
against 150 at 1,024), while oneDNN, given weights reordered once into its blocked layout, runs them 1.5-2x
faster (benchmarks/gsm8k_profile.py shows the decode forward before and after). Prompts (many rows) keep the
ordinary `F.linear`, which is the faster of the two there.

`packed_linears(model)` does this for the duration of one `engine.generate` call: each float32 `nn.Linear` on the
CPU gets a packed copy of its weight (freed on exit, so memory grows by one copy of the weights only while
decoding) and an instance-level `forward` that picks the kernel by row count. It does nothing on other devices or
dtypes, or where this torch build lacks oneDNN's linear ops. The results differ from `F.linear`'s only in the
rounding of the sums (a few 1e-7 relative); the engine's greedy completions are checked against plain
`model.generate` in tests/test_gsm8k_engine.py."""

from __future__ import annotations

import contextlib

import torch

MAX_PACKED_ROWS = 64  # above this, MKL's sgemm on the plain weight is as fast or faster
_ROWS_HINT = 8  # the row count oneDNN tunes the packed layout for (a typical decode batch)


def available() -> bool:
    """Whether this torch build has oneDNN's packed linear ops (CPU builds with mkldnn do)."""
    ops = torch.ops.mkldnn
    return (torch.backends.mkldnn.is_available() and hasattr(ops, "_reorder_linear_weight")
            and hasattr(ops, "_linear_pointwise"))


def pack(weight: torch.Tensor) -> torch.Tensor:
    """A linear layer's (out x in) weight reordered into oneDNN's blocked layout, for `linear`."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), _ROWS_HINT)


def linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)` with the weight as `pack` returned it."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, bias, "none", [], "")


def _packed_forward(module: torch.nn.Linear, packed: torch.Tensor, plain):
    def forward(x: torch.Tensor) -> torch.Tensor:
        if x.numel() // max(x.shape[-1], 1) > MAX_PACKED_ROWS:
            return plain(x)
        return linear(x, packed, module.bias)
    return forward


@contextlib.contextmanager
def packed_linears(model: torch.nn.Module, enabled: bool = True):
    """Within this block, the model's float32 CPU linear layers compute few-row inputs with prepacked weights."""
    targets = []
    if enabled and available():
        targets = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.weight.device.type == "cpu"
                   and m.weight.dtype == torch.float32]
    saved = []
    try:
        for m in targets:
            packed = pack(m.weight)
            own = m.__dict__.get("forward")  # an instance-level forward (a hook library's) to put back afterwards
            saved.append((m, own))
            m.forward = _packed_forward(m, packed, own or type(m).forward.__get__(m))
        yield
    finally:
        for m, own in saved:
            if own is None:
                del m.forward
            else:
                m.forward = own

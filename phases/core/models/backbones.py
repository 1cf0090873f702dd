"""Backbones that turn one modality into a feature vector for the MoE layer: a small width-scalable CNN for images
and a word-level text encoder for sentences. Each takes raw stored inputs (uint8 pixels, padded word ids) so a
checkpoint is a complete model."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def _channels(base: int, width: float) -> int:
    return max(8, int(round(base * width)))


class ImageCNN(nn.Module):
    """Three stages of two 3x3 conv-BN-ReLU layers, each followed by 2x2 max pooling (32w, 64w, 128w channels),
    global average pooling and a linear projection to `d_out`. `width` scales every stage. Inputs are uint8
    (B, C, H, W) in [0, pixel_max], normalised here with the training split's per-channel mean and std."""

    def __init__(self, in_channels: int, d_out: int, width: float = 1.0, pixel_max: float = 255.0,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        mean = torch.tensor(mean if mean is not None else [0.5] * in_channels).view(1, -1, 1, 1)
        std = torch.tensor(std if std is not None else [0.25] * in_channels).view(1, -1, 1, 1)
        self.register_buffer("scale", torch.tensor(1.0 / pixel_max))
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        layers, c_in = [], in_channels
        for base in (32, 64, 128):
            c = _channels(base, width)
            for _ in range(2):
                layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
                c_in = c
            layers.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil: 8x8 digits go 4, 2, 1
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(c_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() * self.scale - self.mean) / self.std
        x = self.features(x)
        return self.proj(x.mean(dim=(2, 3)))


class TextEncoder(nn.Module):
    """Word embeddings, a residual 1-D convolution (window 3) with GELU, then masked mean and max pooling over the
    words, projected to `d_out`. Inputs are (B, L) word ids with 0 as padding; `width` scales the embedding size."""

    PAD = 0

    def __init__(self, vocab_size: int, d_out: int, width: float = 1.0, dropout: float = 0.1):
        super().__init__()
        e = _channels(128, width)
        self.embed = nn.Embedding(vocab_size, e, padding_idx=self.PAD)
        self.conv = nn.Conv1d(e, e, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(2 * e, d_out)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = (ids != self.PAD).sum(1)
        ids = ids[:, :max(1, int(lengths.max()))]  # padding past the batch's longest sentence changes nothing
        mask = (ids != self.PAD).unsqueeze(-1)  # (B, L, 1)
        h = self.drop(self.embed(ids))
        h = h + F.gelu(self.conv(h.transpose(1, 2)).transpose(1, 2))
        h = h.masked_fill(~mask, 0.0)
        mean = h.sum(1) / mask.sum(1).clamp(min=1)
        mx = h.masked_fill(~mask, float("-inf")).amax(1)
        mx = torch.where(mask.any(1), mx, torch.zeros_like(mx))  # an empty sentence pools to zeros
        return self.proj(self.drop(torch.cat([mean, mx], dim=-1)))

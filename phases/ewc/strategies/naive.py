"""Naive fine-tuning: each stage trains on its own data alone, nothing is kept from the stages before. It is the
base class of every strategy: a method is a `Strategy` whose hooks (Avalanche's plugin points) add to the one
training loop in `phases/ewc/train.py`, which calls them in this order:

    for each stage:  before_stage  ->  steps (extra_batches, extra_loss, after_step)  ->  row of R
                     (item_fields on every task's held-out items)  ->  after_stage
    at the end:      summary

Every hook here does nothing."""

from __future__ import annotations

import torch
import torch.nn as nn

from phases.ewc.config import EwcConfig
from phases.ewc.scenarios import Scenario, Stage

Group = tuple[int, torch.Tensor, torch.Tensor]  # (task index, x, y): one task's share of a batch


class Strategy:
    def __init__(self, scenario: Scenario, config: EwcConfig, generator: torch.Generator, device):
        """`generator` is the method's own random generator (Fisher samples, the replay buffer), apart from the
        batches' generator, so the batches are the same for every method."""
        self.scenario, self.config, self.generator, self.device = scenario, config, generator, device

    def before_stage(self, index: int, stage: Stage, model: nn.Module) -> None:
        """Before a stage's fresh optimizer is built: may change the model in place (freeze it, wrap layers)."""

    def extra_batches(self) -> list[Group]:
        """Examples added to each training batch, beside those of the stage's own mix."""
        return []

    def extra_loss(self, model: nn.Module) -> tuple[torch.Tensor | None, dict]:
        """A term added to the batch's task loss (None: none), and the fields it adds to the logged train record."""
        return None, {}

    def after_step(self, model: nn.Module, optimizer, step: int, stage_step: int) -> None:
        """After each optimizer step (`step` counted over the whole run, `stage_step` within the stage, both from
        1): may change the model and the optimizer's state (neuron turnover); what it did goes in `summary`."""

    def item_fields(self, model: nn.Module, task) -> list[dict] | None:
        """Fields added to each of `task`'s held-out items (in the order of its test set), or None."""
        return None

    def after_stage(self, index: int, stage: Stage, model: nn.Module) -> None:
        """After a stage's row of R, before the next stage (not after the last: what is kept serves later stages)."""

    def summary(self, model: nn.Module) -> dict:
        """What the method reports in metrics (`MethodResult.extra`), read after the last stage."""
        return {}

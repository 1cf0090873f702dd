"""Experience replay: a reservoir buffer (algorithm R) holding a uniform sample of every training example of the
stages so far; `--replay-batch` of its examples join each training batch (Rolnick et al. 2019, "Experience replay
for continual learning"; Chaudhry et al. 2019, "On tiny episodic memories in continual learning")."""

from __future__ import annotations

import torch.nn as nn

from phases.ewc.replay import Reservoir
from phases.ewc.scenarios import Stage
from phases.ewc.strategies.naive import Group, Strategy


class Replay(Strategy):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffer = Reservoir(self.config.buffer_size, self.generator)

    def extra_batches(self) -> list[Group]:
        return self.buffer.sample(self.config.replay_batch or self.config.batch_size)

    def after_stage(self, index: int, stage: Stage, model: nn.Module) -> None:
        """The stage's training examples stream through the buffer (a language model's: the windows its steps
        could have drawn)."""
        scn, c = self.scenario, self.config
        n = None if scn.kind != "lm" else (c.steps or scn.steps) * c.batch_size
        for t, _ in stage.mix:
            x, y = scn.tasks[t].examples(n, self.generator)
            self.buffer.add(t, x, y)

    def summary(self, model: nn.Module) -> dict:
        names = self.scenario.tasks
        return {"buffer": {names[t].name: n for t, n in sorted(self.buffer.counts().items())}}

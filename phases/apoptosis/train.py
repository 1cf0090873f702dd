"""The training loop of `nlab apoptosis`: nanoGPT's (AdamW, warmup + cosine decay, gradient clipping, periodic
evaluation) with turnover events every `interval` steps, their loss spikes measured around them, and a checkpoint
at every evaluation that holds all the run's state, so that a killed run resumes exactly where it stood."""

from __future__ import annotations

import statistics
import time

import torch

from phases.apoptosis.config import ApoptosisConfig
from phases.apoptosis.fitness import FitnessTracker
from phases.apoptosis.lineage import Lineage
from phases.apoptosis.surgery import ensure_output_bias
from phases.apoptosis.turnover import PRESERVING, Turnover
from phases.core import charlm, render, spikes
from phases.core.jsonio import truncate_jsonl
from phases.core.models.gpt import GPT, MLP, GPTConfig
from phases.core.training import (Schedule, build_optimizer, check_finite, cut_records_after, evaluation_due,
                                  keep_last_good, optimizer_step, restore_state, save_state, set_lr)

EVENTS, LINEAGE, CHECKPOINT = "events.jsonl", "lineage.json", "ckpt.pt"
VAL_BLOCKS = "val_block_losses.json"  # per-block held-out losses, for paired comparisons between runs


def spike_stats(losses: list[float], step: int, window: int) -> dict:
    """The spike factor of an event at `step` (phases/core/spikes.py): mean loss of the `window` updates before
    it, peak of the `window` updates from it (`losses[i]` is the loss of update i), and their ratio; and the
    variance (n - 1) of the training loss over those `window` updates after it, the lab's stability criterion."""
    out = spikes.spike_stats(losses, step, window)
    del out["peak_index"]  # an event record keeps loss_before, peak_after, window_after and spike_factor
    after = losses[step:step + window]
    out["loss_variance"] = statistics.variance(after) if len(after) > 1 else None
    return out


def build_model(c: ApoptosisConfig, vocab_size: int, device, widths: list[int] | None = None) -> GPT:
    """The GPT of the recipe, seeded by the caller; `widths`: the MLPs' hidden widths when growth has changed them
    (a resumed run, whose weights are loaded next). Function-preserving strategies need an output bias in each
    MLP (the dying neurons' mean goes there): added, at zero, when the model has no biases."""
    model = GPT(GPTConfig(block_size=c.block_size, vocab_size=vocab_size, n_layer=c.n_layer, n_head=c.n_head,
                          n_embd=c.n_embd, dropout=c.dropout, bias=c.bias))
    for block, width in zip(model.transformer.h, widths or []):
        if width != block.mlp.width:
            block.mlp = MLP(model.config, width)
    if c.strategy in PRESERVING:
        for mlp in model.mlps:
            ensure_output_bias(mlp)
    return model.to(device)


def make_optimizer(model, c: ApoptosisConfig):
    return build_optimizer(model.named_parameters(), "adamw", c.lr, c.weight_decay, betas=(c.beta1, c.beta2))


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


class Learner:
    """What a training step and an event act on: the recipe's GPT (initialised from the seed), its AdamW and, for
    every strategy but none, the fitness tracker and the turnover."""

    def __init__(self, c: ApoptosisConfig, vocab_size: int, device, widths: list[int] | None = None):
        self.c, self.device = c, device
        torch.manual_seed(c.seed)  # the same initial weights for every strategy
        self.model = build_model(c, vocab_size, device, widths)
        self.optimizer = make_optimizer(self.model, c)
        self.lineage = Lineage([m.width for m in self.model.mlps])
        self.tracker = self.turnover = None
        if c.strategy != "none":
            self.tracker = FitnessTracker(self.model.mlps, c.fitness, c.fitness_decay)
            self.turnover = Turnover(self.model, self.optimizer, c, self.tracker, self.lineage,
                                     torch.Generator().manual_seed(c.seed + 1))
        self.forward = self.model
        if c.compile and device.type == "cuda":
            self.forward = torch.compile(self.model)  # growth changes shapes: expect recompiles at its events
        elif c.compile:
            render.warn(f"--compile is used on CUDA only; training on {device.type} without it")

    def state_dict(self) -> dict:
        """Everything an event or a step depends on: weights (with grown widths and added biases), AdamW's state,
        the lineage and ages, and the strategy's state (fitness EMAs, latest inputs, vitalities, its generator)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "mlp_widths": [m.width for m in self.model.mlps], "lineage": self.lineage.to_json(),
                "tracker": self.tracker.state_dict() if self.tracker else None,
                "turnover": self.turnover.state_dict() if self.turnover else None}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()`; the learner must have been built with the state's `mlp_widths`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lineage.load_json(state["lineage"])
        if self.tracker:
            self.tracker.load_state_dict(state["tracker"])
        if self.turnover:
            self.turnover.load_state_dict(state["turnover"])

    def step(self, x, y, lr: float, step: int) -> float:
        """One AdamW step on (x, y); the loss before it. A non-finite loss stops the run (RunFailed)."""
        set_lr(self.optimizer, lr)
        with charlm.autocast(self.device):
            _, loss = self.forward(x, y)
        return optimizer_step(loss, self.optimizer, self.model.parameters(), self.c.grad_clip, step)

    @torch.no_grad()
    def batch_loss(self, x, y) -> float:
        self.model.eval()
        with charlm.autocast(self.device):
            _, loss = self.model(x, y)
        self.model.train()
        return loss.item()

    def event(self, step: int, x, y) -> dict:
        """Apply the strategy; measure the loss on the latest batch (x, y) just before and just after."""
        t0 = time.perf_counter()
        before = self.batch_loss(x, y)
        layers = self.turnover.event(step)
        after = self.batch_loss(x, y)
        return {"step": step, "strategy": self.c.strategy, "n_killed": sum(r["n_killed"] for r in layers),
                "n_born": sum(r["n_born"] for r in layers), "swap_loss_before": before, "swap_loss_after": after,
                "swap_loss_ratio": after / before, "time_ms": 1000 * (time.perf_counter() - t0), "layers": layers}


class Training:
    """The run: the learner trained for max_iters steps with evaluations, checkpoints, events and their spikes.
    Given a checkpoint (`--resume`), it continues from the checkpoint's step exactly where the run stood."""

    def __init__(self, config: ApoptosisConfig, corpus, train: torch.Tensor, val: torch.Tensor, device, run,
                 checkpoint: dict | None = None):
        self.c = config
        self.corpus, self.train, self.val, self.device, self.run_ = corpus, train, val, device, run
        self.learner = Learner(config, corpus.vocab.size, device, checkpoint["mlp_widths"] if checkpoint else None)
        self.model, self.lineage = self.learner.model, self.learner.lineage
        self.params_start = count_params(self.model)
        self.batches = torch.Generator().manual_seed(config.seed)  # the same batches whatever the strategy
        self.losses: list[float] = []
        self.events: list[dict] = []
        self.references: list[dict] = []
        self.pending: list[dict] = []  # events (or, for none, would-be event steps) waiting for their window
        self.batch = None  # the latest training batch (x, y): an event's same-batch loss change is measured on it
        self.estimates = (None, None)  # (train, val) at the latest evaluation
        self.step_times: list[float] = []
        self.seconds_before = 0.0  # training time of the work a resumed run inherits
        self.start_step, self.checkpointed = 0, None
        if checkpoint is not None:
            self._restore(checkpoint)

    @property
    def spike_records(self) -> list[dict]:
        """Where pending records live: the events, or for none the would-be event steps."""
        return self.references if self.learner.turnover is None else self.events

    def _evaluate(self, step: int) -> None:
        c = self.c
        est = {name: charlm.estimate_loss(self.learner.forward, data, c.block_size, c.batch_size, c.eval_iters,
                                          self.device, seed=c.seed)
               for name, data in (("train", self.train), ("val", self.val))}
        self.run_.log({"step": step, "split": "val", **self._stage(), "loss": est["val"]})
        self.run_.log({"step": step, "split": "train", **self._stage(), "eval_loss": est["train"]})
        self.estimates = (est["train"], est["val"])

    def _stage(self) -> dict:
        return {} if self.c.strategy == "none" else {"stage": f"gen{len(self.events)}"}

    # --- checkpoints: everything needed to continue exactly ------------------------------------------------------
    def _checkpoint(self, step: int, seconds: float) -> None:
        records = self.spike_records
        state = self.learner.state_dict()
        save_state(self.run_.checkpoint_dir / CHECKPOINT, self.model, self.learner.optimizer, step,
                   **{k: v for k, v in state.items() if k not in ("model", "optimizer")},
                   config=self.run_.config, batches=self.batches.get_state(),
                   batch=None if self.batch is None else [t.cpu() for t in self.batch],
                   losses=self.losses, events=self.events, references=self.references,
                   pending=[i for i, r in enumerate(records) if any(r is p for p in self.pending)],
            estimates=list(self.estimates), params_start=self.params_start,
            step_times=self.step_times, train_time_s=seconds)
        self.checkpointed = step

    def _restore(self, ckpt: dict) -> None:
        self.learner.load_state_dict(ckpt)
        self.start_step = self.checkpointed = ckpt["step"]
        self.losses, self.step_times = list(ckpt["losses"]), list(ckpt["step_times"])
        self.events, self.references = ckpt["events"], ckpt["references"]
        self.pending = [self.spike_records[i] for i in ckpt["pending"]]
        self.batch = None if ckpt["batch"] is None else tuple(t.to(self.device) for t in ckpt["batch"])
        self.estimates = tuple(ckpt["estimates"])
        self.params_start, self.seconds_before = ckpt["params_start"], ckpt["train_time_s"]
        restore_state(ckpt)  # the generators (the learner holds weights and optimizer)
        self.batches.set_state(ckpt["batches"])
        # what was logged after the checkpoint is logged again: cut it from the record files
        cut_records_after(self.run_, self.start_step)
        settled = [e["step"] for e in self.events if not any(e is p for p in self.pending)]
        truncate_jsonl(self.run_.path(EVENTS), max(settled, default=-1))

    def _settle(self, final: bool = False) -> None:
        """Fill in the spike factor of every pending event whose window is complete (all of them at the end)."""
        for rec in list(self.pending):
            if final or len(self.losses) >= rec["step"] + self.c.spike_window:
                rec.update(spike_stats(self.losses, rec["step"], self.c.spike_window))
                if "layers" in rec:
                    self.run_.jsonl(EVENTS).write(rec)
                self.pending.remove(rec)

    # --- the loop ----------------------------------------------------------------------------------------------
    def run(self) -> dict:
        with keep_last_good(self.run_, lambda: self.checkpointed):
            return self._run()

    def _run(self) -> dict:
        c = self.c
        t_start = time.perf_counter() - self.seconds_before
        schedule = Schedule(c.lr, c.min_lr, c.warmup_iters, c.lr_decay_iters)
        with render.progress(c.max_iters - self.start_step, f"training ({c.strategy})", unit="step") as bar:
            for step in range(self.start_step, c.max_iters + 1):
                if evaluation_due(step, c.eval_interval, c.max_iters) and step != self.checkpointed:
                    self._evaluate(step)
                    check_finite(self.estimates[1], step, "validation loss")  # never checkpoint a diverged model
                    self._checkpoint(step, time.perf_counter() - t_start)  # the last good state
                if step == c.max_iters:
                    break
                if step and step % c.interval == 0:
                    if self.learner.turnover is not None:
                        self.events.append(self.learner.event(step, *self.batch))
                        self.pending.append(self.events[-1])
                    else:  # the baseline: the same measurement at the same steps, with nothing done
                        self.references.append({"step": step})
                        self.pending.append(self.references[-1])
                lr = schedule.at(step)
                self.batch = charlm.get_batch(self.train, c.block_size, c.batch_size, self.device, self.batches)
                t0 = time.perf_counter()
                value = self.learner.step(*self.batch, lr, step)
                self.step_times.append(time.perf_counter() - t0)
                self.losses.append(value)
                self._settle()
                if (step + 1) % c.log_interval == 0:
                    self.run_.log({"step": step + 1, "split": "train", **self._stage(),
                                   "loss": statistics.fmean(self.losses[-c.log_interval:]), "lr": lr})
                bar.advance()
                bar.note(f"loss {value:.3f}")
        self._settle(final=True)
        train_time = time.perf_counter() - t_start
        blocks = charlm.block_losses(self.model, self.val, c.block_size, c.batch_size, self.device)
        self.run_.write_json(LINEAGE, self.lineage.to_json())
        self.run_.write_json(VAL_BLOCKS, blocks.tolist())
        sample = (charlm.sample_text(self.model, self.corpus.vocab, c.sample, self.device, c.temperature,
                                     seed=c.seed) if c.sample else None)
        return self._metrics(blocks, *self.estimates, self.step_times, train_time, time.perf_counter() - t_start,
                             sample)

    def _metrics(self, blocks, train_est, val_est, step_times, train_time, wall, sample) -> dict:
        c = self.c
        measured = self.events if self.events else self.references
        factors = [e["spike_factor"] for e in measured if e.get("spike_factor") is not None]
        variances = [e["loss_variance"] for e in measured if e.get("loss_variance") is not None]
        ratios = [e["swap_loss_ratio"] for e in self.events]
        m = {
            "val_loss": blocks.mean().item(),
            "val_loss_se": (blocks.std() / len(blocks) ** 0.5).item(),
            "val_tokens": len(blocks) * c.block_size,
            "val_blocks": len(blocks),
            "val_loss_estimate": val_est,
            "train_loss_estimate": train_est,
            "strategy": c.strategy,
            "fitness": c.fitness if c.strategy != "none" else None,
            "dataset": c.dataset,
            "n_events": len(self.events),
            "neurons_killed": sum(e["n_killed"] for e in self.events),
            "neurons_born": sum(e["n_born"] for e in self.events),
            "mean_spike_factor": statistics.fmean(factors) if factors else None,
            "max_spike_factor": max(factors) if factors else None,
            "spike_factors": factors,
            "mean_loss_variance": statistics.fmean(variances) if variances else None,
            "max_loss_variance": max(variances) if variances else None,
            "loss_variances": variances,
            "spike_basis": ("events" if self.events else
                            "no events: the would-be event steps, the noise floor" if self.references else "none"),
            "mean_swap_loss_ratio": statistics.fmean(ratios) if ratios else None,
            "params_start": self.params_start,
            "params_end": count_params(self.model),
            "mlp_widths": [mlp.width for mlp in self.model.mlps],
            **self.lineage.summary(c.max_iters),
            "steps": c.max_iters,
            "wall_time_s": wall,
            "train_time_s": train_time,
            "step_time_ms_mean": 1000 * statistics.fmean(step_times),
            "step_time_ms_median": 1000 * statistics.median(step_times),
            "event_time_s": sum(e["time_ms"] for e in self.events) / 1000,
            "temperature": c.temperature,
            "events": [{k: v for k, v in e.items() if k != "layers"} | {"layers": [r["layer"] for r in e["layers"]]}
                       for e in self.events],
            # files of the run folder, named relative to it (a moved or copied folder stays whole)
            "events_file": EVENTS if self.events else None,
            "lineage_file": LINEAGE,
            "val_blocks_file": VAL_BLOCKS,
        }
        if sample is not None:
            m["sample"] = sample
        return m

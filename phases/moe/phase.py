"""The train-moe phase: check options, load and split the data, open (or resume) the run, train, write metrics
and test predictions, show the summary."""

from __future__ import annotations

from dataclasses import asdict

import torch

from phases.core.data.classification import prepare_task
from phases.core.device import device_name, prepare
from phases.core.models.moe_classifier import MoEModelConfig, build_model
from phases.core.runs import Run
from phases.core.training import cut_records_after
from phases.moe.config import TrainMoEConfig
from phases.moe.plan import Plan, parse_tasks, resolve
from phases.moe.report import build_metrics, render_summary, write_predictions
from phases.moe.train import BEST, CHECKPOINT, train

PHASE = "train-moe"


def model_config(c: TrainMoEConfig, plan: Plan) -> MoEModelConfig:
    return MoEModelConfig(plan.experts, c.top_k, c.d_model, c.expert_hidden, c.router, c.router_hidden, c.width,
                          c.dropout, c.capacity_factor, plan.masks, c.assignment)


def selection_note(c: TrainMoEConfig, plan: Plan) -> str:
    """How the reported epoch was chosen, in words (metrics.json's `selection`)."""
    if c.val_fraction == 0:
        return "no validation split (--val-fraction 0): the last epoch is reported"
    if plan.select == "last":
        return "--select last: the last epoch is reported"
    return "the epoch of the best validation accuracy (--select best-val)"


def run(config: TrainMoEConfig) -> dict:
    plan = resolve(config)
    _, option = parse_tasks(config)
    device = prepare(config.device, config.seed, config.deterministic)
    tasks = [prepare_task(name, config.data_dir, config.val_fraction, config.seed, config.train_limit, option=option)
             for name in plan.tasks]
    cfg = {**asdict(config), "tasks": ",".join(plan.tasks), "epochs": plan.epochs, "lr": plan.lr,
           "weight_decay": plan.weight_decay, "phase1_epochs": plan.phase1_epochs, "masks": plan.masks,
           "data_paths": {t.name: t.data_path for t in tasks}}
    run_ = Run.open(PHASE, config, cfg)
    checkpoint = run_.load_checkpoint(CHECKPOINT, "its first epoch ended") if config.resume else None
    model = build_model(tasks, model_config(config, plan)).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if config.compile:
        for backbone in model.backbones:  # the MoE layer's token counts vary per batch: it stays eager
            backbone.compile()
    tasks = [t.to(device) for t in tasks]
    with run_:
        run_.set_device(str(device), device_name(device))
        if checkpoint is not None:  # epochs logged after the checkpoint are trained again
            cut_records_after(run_, checkpoint["step"])
            run_.path(Run.PREDICTIONS).unlink(missing_ok=True)
        result = train(model, tasks, config, plan, device, run_, checkpoint)
        metrics = build_metrics(tasks, result.val, result.test)
        metrics.update(strategy=config.strategy, experts=result.experts, top_k=config.top_k, router=config.router,
                       tasks_trained=plan.tasks, epochs=result.epochs, steps=result.steps,
                       train_seconds=result.train_seconds, train_loss=result.train_loss,
                       best_val_acc=result.best_val_acc, best_val_epoch=result.best_val_epoch,
                       select=plan.select, selected_epoch=result.selected_epoch,
                       selection=selection_note(config, plan), router_entropy_weight=config.router_entropy_weight,
                       train_entropy_share=result.entropy_share, synthetic_labels=config.synthetic_labels,
                       params=sum(p.numel() for p in model.parameters()),
                       # weights, named in the run's checkpoint folder (manifest: checkpoint_dir)
                       checkpoint=CHECKPOINT, best_checkpoint=BEST)
        if plan.growth:
            metrics.update(experts_start=plan.growth.start, experts_final=result.experts_final,
                           growth_events=result.growth)
        write_predictions(run_, tasks, result.test)
        out = run_.write_metrics(metrics, primary="test_acc")
    render_summary(out, tasks, f"train-moe: {'+'.join(plan.tasks)} ({config.strategy}, {result.experts} experts, "
                               f"top-{config.top_k}, {config.router} router)")
    return out

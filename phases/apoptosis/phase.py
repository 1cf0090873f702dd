"""The apoptosis phase: train a char-level GPT with nanoGPT's recipe while, every `interval` steps, a strategy
kills and rebirths (or adds) hidden neurons of its MLPs; record every event, its loss spike, neuron ages and
lineage, and report the loss on the whole held-out split."""

from __future__ import annotations

from dataclasses import asdict

from phases.apoptosis.config import ApoptosisConfig
from phases.core import data, render
from phases.core.errors import InputError
from phases.core.options import check_memory, check_options
from phases.core.runs import Run

PHASE = "apoptosis"


def check(c: ApoptosisConfig) -> None:
    check_options(c)  # each option's own range or choice (declared in the config); below, options together
    if c.n_embd % c.n_head:
        raise InputError(f"--n-embd {c.n_embd} is not divisible by --n-head {c.n_head}",
                         "pick a width that is a multiple of the number of heads")
    if c.min_lr > c.lr:
        raise InputError(f"--min-lr {c.min_lr}: must be at most --lr ({c.lr})", "use e.g. --lr 1e-3 --min-lr 1e-4")
    if c.preservation_steps and c.strategy != "functional":
        raise InputError(f"--preservation-steps applies to --strategy functional, not {c.strategy}",
                         "leave it out, or use --strategy functional")
    width = 4 * c.n_embd
    if c.strategy == "growth" and c.max_width is not None and c.max_width < width:
        raise InputError(f"--max-width {c.max_width} is below the MLPs' current width ({width} = 4 x --n-embd)",
                         f"use a --max-width of at least {width}")
    if c.strategy != "layer" and (c.layer_schedule != "fitness" or c.initial_vitality != 1.0):
        raise InputError("--layer-schedule/--initial-vitality apply to --strategy layer, not " + c.strategy,
                         "leave them out, or use --strategy layer")
    if c.select == "orthogonal" and c.strategy in ("none", "layer"):
        raise InputError(f"--select orthogonal chooses parent neurons; --strategy {c.strategy} has none",
                         "use it with standard, functional, crossover, hybrid or growth")
    if c.strategy == "layer" and c.layer_schedule == "depth" and c.n_layer < 2:
        raise InputError("--layer-schedule depth moves MLPs between blocks: needs --n-layer 2 or more",
                         "use --n-layer 2 or more, or --layer-schedule fitness")
    if c.strategy != "none" and c.interval >= c.max_iters:
        raise InputError(f"--interval {c.interval} with --max-iters {c.max_iters}: no event would happen",
                         "use an --interval below --max-iters")


def _resolved(c: ApoptosisConfig) -> ApoptosisConfig:
    """The config with its derived defaults filled in (what config.json records)."""
    c = ApoptosisConfig(**asdict(c))
    c.lr_decay_iters = c.lr_decay_iters or c.max_iters
    if c.strategy == "growth":
        c.max_width = c.growth_limit
    return c


def run(config: ApoptosisConfig) -> dict:
    check(config)
    config = _resolved(config)
    corpus = data.load(config.dataset, config.data_dir)
    from phases.core import charlm
    from phases.core.device import device_name, prepare

    train, val = charlm.token_tensor(corpus.train_ids()), charlm.token_tensor(corpus.val_ids())
    charlm.check_block_size(config.block_size, {"train": train, "val": val}, config.dataset)
    check_memory(config)
    device = prepare(config.device, config.seed, config.deterministic)
    cfg = {**asdict(config), "data": {"train": corpus.splits[0], "val": corpus.splits[1],
                                      "train_chars": len(train), "val_chars": len(val),
                                      "vocab_size": corpus.vocab.size}}
    run_ = Run.open(PHASE, config, cfg)
    from phases.apoptosis.train import CHECKPOINT

    checkpoint = run_.load_checkpoint(CHECKPOINT, "its first evaluation") if config.resume else None
    with run_:
        run_.set_device(str(device), device_name(device))
        from phases.apoptosis.train import Training

        training = Training(config, corpus, train, val, device, run_, checkpoint)
        if checkpoint is not None:
            render.say(f"resuming {run_.dir} from step {checkpoint['step']}")
        out = run_.write_metrics(training.run(), primary="val_loss")
    _render(out)
    return out


def _render(m: dict) -> None:
    render.render_metrics(m, f"apoptosis: {m['strategy']} on {m['dataset']}", keys=[
        "val_loss", "val_loss_se", "val_tokens", "val_loss_estimate", "train_loss_estimate", "n_events",
        "neurons_killed", "neurons_born", "mean_spike_factor", "max_spike_factor", "mean_swap_loss_ratio",
        "params_start", "params_end", "age_mean", "age_std", "max_generation", "step_time_ms_median",
        "event_time_s", "wall_time_s"])
    if m["events"]:
        render.table("events", ["step", "layers", "killed", "born", "loss on batch before -> after",
                                "loss before", "peak after", "spike factor"],
                     [(e["step"], len(e["layers"]), e["n_killed"], e["n_born"],
                       f"{e['swap_loss_before']:.4f} -> {e['swap_loss_after']:.4f}", e["loss_before"],
                       e["peak_after"], e["spike_factor"]) for e in m["events"]])
    elif m["spike_basis"].startswith("no events"):
        render.say(f"no events ({m['strategy']}); spike factors at the would-be event steps, the noise floor: "
                   f"{render.fmt(m['spike_factors'])}")
    hist = m["age_histogram"]
    render.say("neuron ages: " + ", ".join(f"{hist['edges'][i]:g}-{hist['edges'][i + 1]:g}: {n}"
                                           for i, n in enumerate(hist["counts"]) if n))
    render.say(f"[bold]val loss {m['val_loss']:.4f}[/bold] (+/- {m['val_loss_se']:.4f} s.e., whole held-out split, "
               f"{m['val_tokens']:,} tokens) after {m['steps']} steps in {m['wall_time_s']:.1f} s")
    if m.get("sample"):
        render.say(f"[bold]sample[/bold] ({len(m['sample'])} characters, temperature {m['temperature']:g}):")
        render.say(m["sample"], markup=False)
    render.say(f"run folder: {m['run_dir']}")

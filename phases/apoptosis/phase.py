"""The apoptosis phase: train a char-level GPT with nanoGPT's recipe while, every `interval` steps, a strategy
kills and rebirths (or adds) hidden neurons of its MLPs; record every event, its loss spike, neuron ages and
lineage, and report the loss on the whole held-out split."""

from __future__ import annotations

from dataclasses import asdict

from phases.apoptosis.config import CROSSOVERS, FITNESSES, STRATEGIES, ApoptosisConfig
from phases.core import data, render
from phases.core.errors import InputError
from phases.core.runs import Run, check_run_name

PHASE = "apoptosis"


def _one_of(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{option} {value!r} is not known", f"use one of: {', '.join(allowed)}")


def _check(c: ApoptosisConfig) -> None:
    _one_of("--strategy", c.strategy, STRATEGIES)
    _one_of("--fitness", c.fitness, FITNESSES)
    _one_of("--crossover", c.crossover, CROSSOVERS)
    for option, value in (("--n-layer", c.n_layer), ("--n-head", c.n_head), ("--n-embd", c.n_embd),
                          ("--block-size", c.block_size), ("--batch-size", c.batch_size),
                          ("--max-iters", c.max_iters), ("--eval-interval", c.eval_interval),
                          ("--eval-iters", c.eval_iters), ("--log-interval", c.log_interval),
                          ("--interval", c.interval), ("--spike-window", c.spike_window)):
        if value < 1:
            raise InputError(f"{option} {value}: must be at least 1", "use a positive number")
    if c.n_embd % c.n_head:
        raise InputError(f"--n-embd {c.n_embd} is not divisible by --n-head {c.n_head}",
                         "pick a width that is a multiple of the number of heads")
    for option, value in (("--prune-rate", c.prune_rate), ("--turnover-rate", c.turnover_rate)):
        if not 0 < value <= 0.5:
            raise InputError(f"{option} {value}: must be in (0, 0.5]", "use a fraction such as 0.05")
    if not c.lr > 0 or not 0 <= c.min_lr <= c.lr:
        raise InputError(f"--lr {c.lr} / --min-lr {c.min_lr}: need lr > 0 and 0 <= min-lr <= lr",
                         "use e.g. --lr 1e-3 --min-lr 1e-4")
    if c.warmup_iters < 0 or (c.lr_decay_iters is not None and c.lr_decay_iters < 1):
        raise InputError("--warmup-iters must be >= 0 and --lr-decay-iters >= 1", "use the defaults")
    if not 0 <= c.dropout < 1 or c.weight_decay < 0 or c.grad_clip < 0:
        raise InputError("--dropout must be in [0, 1), --weight-decay and --grad-clip >= 0", "use the defaults")
    if not (0 <= c.beta1 < 1 and 0 <= c.beta2 < 1):
        raise InputError(f"--beta1 {c.beta1} / --beta2 {c.beta2}: must be in [0, 1)", "use 0.9 and 0.99")
    if not 0 < c.fitness_decay < 1:
        raise InputError(f"--fitness-decay {c.fitness_decay}: must be in (0, 1)", "use e.g. 0.99")
    if c.maturity < 0 or c.mutation_strength < 0 or c.preservation_steps < 0:
        raise InputError("--maturity, --mutation-strength and --preservation-steps must be >= 0", "use the defaults")
    if c.preservation_steps and c.strategy != "functional":
        raise InputError(f"--preservation-steps applies to --strategy functional, not {c.strategy}",
                         "leave it out, or use --strategy functional")
    width = 4 * c.n_embd
    if c.strategy == "growth" and c.max_width is not None and c.max_width < width:
        raise InputError(f"--max-width {c.max_width} is below the MLPs' current width ({width} = 4 x --n-embd)",
                         f"use a --max-width of at least {width}")
    if c.strategy != "none" and c.interval >= c.max_iters:
        raise InputError(f"--interval {c.interval} with --max-iters {c.max_iters}: no event would happen",
                         "use an --interval below --max-iters")
    if c.sample < 0 or c.temperature < 0:
        raise InputError("--sample and --temperature must be >= 0", "use e.g. --sample 500 --temperature 0.8")
    if c.resume is not None and (c.out is not None or c.name is not None):
        raise InputError("--resume continues a run in its own folder: --out and --name do not apply",
                         "leave out --out and --name")
    check_run_name(c.name)


def _resolved(c: ApoptosisConfig) -> ApoptosisConfig:
    """The config with its derived defaults filled in (what config.json records)."""
    c = ApoptosisConfig(**asdict(c))
    c.lr_decay_iters = c.lr_decay_iters or c.max_iters
    if c.strategy == "growth":
        c.max_width = c.growth_limit
    return c


def run(config: ApoptosisConfig) -> dict:
    _check(config)
    config = _resolved(config)
    corpus = data.load(config.dataset, config.data_dir)
    from phases.core import charlm
    from phases.core.device import device_name, prepare

    train, val = charlm.token_tensor(corpus.train_ids()), charlm.token_tensor(corpus.val_ids())
    charlm.check_block_size(config.block_size, {"train": train, "val": val}, config.dataset)
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

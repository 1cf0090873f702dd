"""Every phase once: its command, where its CLI function and config live, whether it resumes and can be swept,
and which of its metrics come from validation data (fit to choose on) and which from test data (only to report).
`nlab_cli.main` registers the commands from here, seed-sweep takes the phases it can run from here, and the
`sweep` and `runs` commands read the same table. Strings only: importing this costs nothing."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch
from importlib import import_module


@dataclass(frozen=True)
class Phase:
    command: str  # `nlab <command>`; also the run folders' `logs/<command>/` and the manifest's `phase`
    cli: str  # "module:function" of the Typer command
    config: str  # "module:Class" of its options
    kind: str  # training, evaluation, sweep, analysis or notebook
    resumes: bool = False  # `--resume RUN` alone continues a killed run
    sweepable: bool = False  # seed-sweep (and sweep) can run it per seed
    val_metrics: tuple[str, ...] = ()  # patterns of metrics measured on validation data: fit for selection
    test_metrics: tuple[str, ...] = ()  # patterns of metrics measured on test data: for reporting only
    other_metrics: tuple[str, ...] = ()  # patterns of its other numeric metrics (counts, sizes, timings)
    # (final metric pattern, history key): the history.jsonl records of split "val" that track a validation metric
    # while the run trains (what sweep's TPE pruner is fed)
    val_history: tuple[tuple[str, str], ...] = ()
    check: str = ""  # "module:function" checking its config before any data is read (what seed-sweep runs once)
    note: str = ""  # what a user choosing on its metrics should know
    extra_args: bool = False  # takes pass-through options after `--`
    group: bool = False  # `cli` is a Typer app of subcommands (`nlab runs list`, ...), added with add_typer

    def is_test_metric(self, name: str) -> bool:
        return any(fnmatch(name, p) for p in self.test_metrics)

    def is_val_metric(self, name: str) -> bool:
        return any(fnmatch(name, p) for p in self.val_metrics)

    @property
    def metrics(self) -> tuple[str, ...]:
        """Patterns of every numeric metric its metrics.json holds (what seed-sweep may select and report on)."""
        return self.val_metrics + self.test_metrics + self.other_metrics

    def writes_metric(self, name: str) -> bool:
        return any(fnmatch(name, p) for p in self.metrics)

    def history_key(self, metric: str) -> str | None:
        """The key of its validation history records that tracks `metric` while it trains, if any."""
        return next((key for pattern, key in self.val_history if fnmatch(metric, pattern)), None)

    def load(self, what: str = "cli"):
        module, name = getattr(self, what).split(":")
        return getattr(import_module(module), name)


PHASES: tuple[Phase, ...] = (
    Phase("train-moe", "nlab_cli.commands.train_moe:train_moe", "phases.moe.config:TrainMoEConfig", "training",
          resumes=True, sweepable=True, check="phases.moe.plan:resolve", val_metrics=("val_*", "best_val_*"),
          test_metrics=("test_*",), val_history=(("*val_acc", "acc"), ("*val_loss", "loss")),
          other_metrics=("experts", "top_k", "epochs", "steps", "train_seconds", "train_loss", "best_val_epoch",
                         "selected_epoch", "params", "experts_*", "router_entropy_weight", "train_entropy_share",
                         "synthetic_labels")),
    Phase("apoptosis", "nlab_cli.commands.apoptosis:apoptosis", "phases.apoptosis.config:ApoptosisConfig",
          "training", resumes=True, sweepable=True, check="phases.apoptosis.phase:check",
          val_metrics=("val_loss", "val_loss_se", "val_loss_estimate", "val_tokens", "val_blocks",
                       "train_loss_estimate"),
          val_history=(("val_loss*", "loss"),),
          other_metrics=("n_events", "neurons_*", "mean_spike_factor", "max_spike_factor", "mean_swap_loss_ratio",
                         "mean_loss_variance", "max_loss_variance",
                         "params_start", "params_end", "steps", "wall_time_s", "train_time_s", "step_time_ms_mean",
                         "step_time_ms_median", "event_time_s", "age_*", "*_generation", "temperature"),
          note="a char-level corpus has a train and a validation split only: val_loss (the whole split) is its "
               "headline, so a seed chosen on val_loss_estimate is reported on the same text"),
    Phase("ewc", "nlab_cli.commands.ewc:ewc", "phases.ewc.config:EwcConfig", "training", resumes=True,
          sweepable=True, check="phases.ewc.phase:check",
          test_metrics=("*_average_*", "*_mean_forgetting", "*_bwt", "*_max_spike", "*_base_retention",
                        "*_modification_success", "*_first_before_shift", "*_first_after_*", "*_second_after_*"),
          note="every summary metric is measured on the tasks' test items; none is fit for selection"),
    Phase("eval-gsm8k", "nlab_cli.commands.eval_gsm8k:eval_gsm8k", "phases.gsm8k.config:EvalConfig", "evaluation",
          resumes=True, sweepable=True, check="phases.gsm8k.phase:check",
          test_metrics=("strict_*", "flexible_*", "gold_ppl", "adapter_*_acc*", "best_adapter_acc", "oracle_*",
                        "router_acc*", "routing_*", "router_vs_best_*"),
          other_metrics=("finished_by_length", "prompt_tokens_mean", "completion_tokens", "gen_seconds",
                         "tokens_per_s", "problems_per_min", "gold_nll_per_token", "gold_tokens", "export_*",
                         "adapter_*_n", "adapter_*_n_correct", "router_n*", "router_train_*"),
          note="its metrics are on --split (test by default); choose on a run with --split train (--route: "
               "router_train_* are the router's in-sample figures on its training problems)"),
    Phase("train-lora", "nlab_cli.commands.train_lora:train_lora", "phases.lora.config:TrainLoraConfig", "training",
          resumes=True, sweepable=True, check="phases.lora.phase:check",
          val_metrics=("val_*", "best_step", "evaluations"), test_metrics=("test_*", "base_test_*"),
          other_metrics=("train_*", "tokens_per_s", "padding_share", "extra_*", "steps",
                         "examples_per_step")),
    Phase("seed-sweep", "nlab_cli.commands.seed_sweep:seed_sweep", "phases.sweep.config:SweepConfig", "sweep",
          resumes=True, extra_args=True),
    Phase("sweep", "nlab_cli.commands.sweep:sweep", "phases.search.config:SearchConfig", "sweep", resumes=True,
          extra_args=True),
    Phase("ensemble-vote", "nlab_cli.commands.ensemble_vote:ensemble_vote", "phases.ensemble.config:EnsembleConfig",
          "analysis"),
    Phase("analyze-history", "nlab_cli.commands.analyze_history:analyze_history",
          "phases.history.config:HistoryConfig", "analysis"),
    Phase("runs", "nlab_cli.commands.runs:app", "phases.notebook.config:ListConfig", "notebook", group=True,
          note="reads run folders and writes none (gc --yes deletes failed and stopped ones)"),
)

BY_COMMAND = {p.command: p for p in PHASES}
SWEEPABLE = tuple(p.command for p in PHASES if p.sweepable)


def get(command: str) -> Phase | None:
    return BY_COMMAND.get(command)


def of_config(config_cls) -> str | None:
    """The command whose options `config_cls` holds."""
    ref = f"{config_cls.__module__}:{config_cls.__qualname__}"
    return next((p.command for p in PHASES if p.config == ref), None)

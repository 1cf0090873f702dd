"""Options declared once (choices and ranges on the config fields, phases.core.options) and checked one way: the
CLI lists and enforces every choice, and every phase rejects out-of-range, NaN and infinite values with exit 2,
naming the option and writing nothing."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import pytest

from phases.apoptosis.config import ApoptosisConfig
from phases.core.errors import InputError
from phases.core.options import at_least, check_options, choice, in_range, option_name, positive, rule_of
from phases.ensemble.config import EnsembleConfig
from phases.ewc.config import EwcConfig
from phases.gsm8k.config import EvalConfig
from phases.history.config import HistoryConfig, Thresholds
from phases.moe.config import TrainMoEConfig
from phases.sweep.config import SweepConfig

# each command, its config class, and the arguments it needs besides the option under test
COMMANDS = {
    "train-moe": (TrainMoEConfig, []),
    "apoptosis": (ApoptosisConfig, []),
    "ewc": (EwcConfig, []),
    "eval-gsm8k": (EvalConfig, []),
    "seed-sweep": (SweepConfig, ["train-moe"]),
    "ensemble-vote": (EnsembleConfig, []),
    "analyze-history": (HistoryConfig, ["no-such-history"]),
}

CHOICES = [(command, option_name(f.name), rule_of(f).choices)
           for command, (cls, _) in COMMANDS.items()
           for f in fields(cls) if rule_of(f) and rule_of(f).choices]


def _flat(text: str) -> str:
    """stderr as one line: click's boxed error is wrapped at the terminal width."""
    return " ".join(text.replace("│", " ").split())


def _nothing_written(home) -> bool:
    logs = home / "logs"
    return not logs.exists() or not any(logs.iterdir())


def test_every_command_declares_its_choices():
    assert {c for c, _, _ in CHOICES} == {"train-moe", "apoptosis", "ewc", "eval-gsm8k", "seed-sweep",
                                          "ensemble-vote"}  # analyze-history has no choice option
    assert len(CHOICES) >= 20


@pytest.mark.parametrize("command, option, choices", CHOICES, ids=[f"{c} {o}" for c, o, _ in CHOICES])
def test_invalid_choice_exits_2_listing_the_choices(cli, nlab_home, command, option, choices):
    code, out, err = cli(command, *COMMANDS[command][1], option, "nosuch")
    text = _flat(err)
    assert code == 2 and out == "", err
    assert f"'{option}'" in text and "'nosuch' is not one of" in text, err
    assert all(f"'{c}'" in text for c in choices), err
    assert "Traceback" not in err and _nothing_written(nlab_home)


@pytest.mark.parametrize("command", sorted({c for c, _, _ in CHOICES}))
def test_help_lists_the_choices(cli, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "300")  # wide enough that rich does not wrap the choices
    code, out, _ = cli(command, "--help")
    assert code == 0
    for c, option, choices in CHOICES:
        if c == command:
            assert f"<{'|'.join(choices)}>" in out, option


BAD_NUMBERS = [
    ("apoptosis", ["--lr", "nan"], "--lr nan: must be a finite number"),
    ("apoptosis", ["--lr", "inf"], "--lr inf: must be a finite number"),
    ("apoptosis", ["--grad-clip", "nan"], "--grad-clip nan: must be a finite number"),
    ("apoptosis", ["--grad-clip", "inf"], "--grad-clip inf: must be a finite number"),
    ("apoptosis", ["--prune-rate", "0.7"], "--prune-rate 0.7: must be in (0, 0.5]"),
    ("apoptosis", ["--temperature", "nan"], "--temperature nan: must be a finite number"),
    ("apoptosis", ["--min-lr", "-inf"], "--min-lr -inf: must be a finite number"),
    ("apoptosis", ["--beta2", "1"], "--beta2 1.0: must be in [0, 1)"),
    ("apoptosis", ["--fitness-decay", "1"], "--fitness-decay 1.0: must be in (0, 1)"),
    ("apoptosis", ["--lr-decay-iters", "0"], "--lr-decay-iters 0: must be at least 1"),
    ("train-moe", ["--lr", "nan"], "--lr nan: must be a finite number"),
    ("train-moe", ["--lr", "inf"], "--lr inf: must be a finite number"),
    ("train-moe", ["--grad-clip", "nan"], "--grad-clip nan: must be a finite number"),
    ("train-moe", ["--weight-decay", "inf"], "--weight-decay inf: must be a finite number"),
    ("train-moe", ["--val-fraction", "0.6"], "--val-fraction 0.6: must be in [0, 0.5]"),
    ("train-moe", ["--synthetic-labels", "1.5"], "--synthetic-labels 1.5: must be in [0, 1]"),
    ("train-moe", ["--router-entropy-weight", "-11"], "--router-entropy-weight -11.0: must be in [-10, 10]"),
    ("train-moe", ["--momentum", "1"], "--momentum 1.0: must be in [0, 1)"),
    ("train-moe", ["--width", "0"], "--width 0.0: must be above 0"),
    ("train-moe", ["--batch-size", "1"], "--batch-size 1: must be at least 2"),
    ("ewc", ["--ewc-lambda", "inf"], "--ewc-lambda inf: must be a finite number"),
    ("ewc", ["--ewc-lambda", "nan"], "--ewc-lambda nan: must be a finite number"),
    ("ewc", ["--lr", "nan"], "--lr nan: must be a finite number"),
    ("ewc", ["--gamma", "nan"], "--gamma nan: must be a finite number"),
    ("ewc", ["--gate-bias", "inf"], "--gate-bias inf: must be a finite number"),  # no declared range: finite still
    ("ewc", ["--tasks-count", "1"], "--tasks-count 1: must be at least 2"),
    ("eval-gsm8k", ["--temperature", "nan"], "--temperature nan: must be a finite number"),
    ("eval-gsm8k", ["--request-timeout", "inf"], "--request-timeout inf: must be a finite number"),
    ("eval-gsm8k", ["--retry-backoff", "-1"], "--retry-backoff -1.0: must be at least 0"),
    ("seed-sweep", ["train-moe", "--num-cpus", "nan"], "--num-cpus nan: must be a finite number"),
    ("seed-sweep", ["train-moe", "--workers", "0"], "--workers 0: must be at least 1"),
    ("ensemble-vote", ["--top-k", "0"], "--top-k 0: must be at least 1"),
    ("analyze-history", ["x", "--spike-threshold", "nan"], "--spike-threshold nan: must be a finite number"),
    ("analyze-history", ["x", "--spike-threshold", "1"], "--spike-threshold 1.0: must be above 1"),
]


@pytest.mark.parametrize("command, args, expect", BAD_NUMBERS, ids=[f"{c} {' '.join(a)}" for c, a, _ in BAD_NUMBERS])
def test_bad_number_exits_2_naming_the_option(cli, nlab_home, command, args, expect):
    code, out, err = cli(command, *args)
    assert code == 2 and out == "", err
    assert f"error: {expect}" in _flat(err) and "fix:" in err, err
    assert "Traceback" not in err and _nothing_written(nlab_home)


def test_apoptosis_dataset_must_be_char_level_text(cli, nlab_home):
    code, _, err = cli("apoptosis", "--dataset", "digits")
    assert code == 2 and "'digits' is not one of 'tinyshakespeare', 'wikitext2'" in _flat(err)
    assert _nothing_written(nlab_home)


def test_comma_separated_choices_use_the_same_message(cli, nlab_home):
    for args, expect in ((["ewc", "--method", "naive,dropout"], "--method 'dropout' is not one of: naive, ewc"),
                         (["train-moe", "--tasks", "digits,scan"], "--tasks 'scan' is not one of: digits, sst2"),
                         (["ewc", "--scenario", "moe-multitask", "--moe-tasks", "digits,tinyshakespeare"],
                          "--moe-tasks 'tinyshakespeare' is not one of: digits, sst2, cifar10, cifar100")):
        code, _, err = cli(*args)
        assert code == 2 and expect in _flat(err), err
    assert _nothing_written(nlab_home)


# check_options from Python: the phases are callable without the CLI

@dataclass
class _Demo:
    mode: str = choice("a", ("a", "b"))
    count: int = at_least(1, 3)
    rate: float = in_range(0.5, 0, 1, lo_open=True)
    cap: float = in_range(1.0, hi=10, hi_open=True)
    step: float | None = positive(None)
    free: float = 0.0


@pytest.mark.parametrize("config", [TrainMoEConfig(), ApoptosisConfig(), EwcConfig(), EvalConfig(),
                                    SweepConfig(phase="ewc"), EnsembleConfig(), HistoryConfig(inputs=["x"]), _Demo()])
def test_defaults_pass(config):
    check_options(config)


@pytest.mark.parametrize("config, message", [
    (_Demo(mode="c"), "--mode 'c' is not one of: a, b"),
    (_Demo(count=0), "--count 0: must be at least 1"),
    (_Demo(rate=0.0), "--rate 0.0: must be in (0, 1]"),
    (_Demo(cap=10.0), "--cap 10.0: must be below 10"),
    (_Demo(step=0.0), "--step 0.0: must be above 0"),
    (_Demo(free=math.nan), "--free nan: must be a finite number"),
    (_Demo(free=-math.inf), "--free -inf: must be a finite number"),
    (_Demo(rate=math.nan), "--rate nan: must be a finite number"),
    (ApoptosisConfig(prune_rate=0.7), "--prune-rate 0.7: must be in (0, 0.5]"),
    (ApoptosisConfig(strategy="foo"), "--strategy 'foo' is not one of: none, layer, standard, functional, hybrid, "
                                      "growth, crossover"),
    (HistoryConfig(inputs=["x"], thresholds=Thresholds(window=0)), "--window 0: must be at least 1"),
    (EwcConfig(lr=math.inf), "--lr inf: must be a finite number"),
])
def test_check_options_message(config, message):
    with pytest.raises(InputError) as e:
        check_options(config)
    assert e.value.message == message and e.value.exit_code == 2 and e.value.hint


def test_hint_gives_the_default_or_the_declared_hint():
    with pytest.raises(InputError) as e:
        check_options(ApoptosisConfig(prune_rate=0.7))
    assert e.value.hint == "e.g. --prune-rate 0.05"
    with pytest.raises(InputError) as e:
        check_options(TrainMoEConfig(batch_size=1))
    assert "batch norm" in e.value.hint
    with pytest.raises(InputError) as e:
        check_options(EwcConfig(lr=math.nan))
    assert e.value.hint == "leave --lr out for its default"


def test_optional_none_means_default():
    check_options(EwcConfig(lr=None, steps=None, replay_batch=None))
    check_options(TrainMoEConfig(lr=None, weight_decay=None, epochs=None))


def test_phase_run_rejects_before_writing(nlab_home):
    from phases import apoptosis, moe

    for run, config in ((apoptosis.run, ApoptosisConfig(dataset="digits")), (moe.run, TrainMoEConfig(lr=math.nan))):
        with pytest.raises(InputError):
            run(config)
    assert _nothing_written(nlab_home)


@pytest.mark.parametrize("args, expect", [
    (["seed-sweep", "--compare", "a", "b", "--threshold", "0.3"], "--threshold 0.3: must be in (0.5, 1)"),
    (["seed-sweep", "--compare", "a", "b", "--threshold", "nan"], "--threshold nan: must be a finite number"),
    (["eval-gsm8k", "--compare", "a", "b", "--checkpoint-every", "0"], "--checkpoint-every 0: must be at least 1"),
])
def test_compare_modes_check_their_options_first(cli, nlab_home, args, expect):
    code, out, err = cli(*args)
    assert code == 2 and expect in " ".join(err.split()) and out == "", err
    assert not (nlab_home / "logs").exists()

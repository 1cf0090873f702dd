"""Scenarios: a sequence of tasks, each with its training examples, a validation subset (history curves) and a
held-out test set (every R[i][j]), plus the model family, the per-example loss and the stage plan.

Every model is called as `model(x, task)` and returns logits, so the training loop, the Fisher and the
evaluation are the same code for the MLP, train-moe's classifier and the char-level GPT."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from phases.core.charlm import random_windows
from phases.core.curriculum import parse_mix  # noqa: F401 (the --mix grammar, shared with train-lora)
from phases.core.errors import InputError
from phases.ewc.config import EwcConfig


@dataclass
class Stage:
    name: str
    task: int  # the task this stage brings in (the one whose training it is)
    mix: list[tuple[int, float]]  # (task, share of every batch)


@dataclass
class Task:
    name: str
    train: tuple[torch.Tensor, torch.Tensor] | None  # examples (x, y); None for a text: windows of `tokens`
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    model_task: int = 0  # what the model is told (head / backbone index)
    tokens: torch.Tensor | None = None  # char-LM: the training text
    block: int = 0
    decode: list[tuple[list[int], list[int]]] | None = None  # scan: (prompt ids, action ids) of each test item
    test_ids: list | None = None  # item ids for predictions.jsonl

    @property
    def n_train(self) -> int:
        return len(self.tokens) - self.block if self.tokens is not None else len(self.train[1])

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n random training examples (with replacement), drawn from `gen` so every method sees the same ones."""
        if self.tokens is not None:
            return random_windows(self.tokens, self.block, n, gen)
        idx = torch.randint(len(self.train[1]), (n,), generator=gen)
        return self.train[0][idx], self.train[1][idx]

    def examples(self, n: int | None, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to n distinct training examples in random order (a text gives n random windows)."""
        if self.tokens is not None:
            return self.sample(n or 1024, gen)
        perm = torch.randperm(len(self.train[1]), generator=gen)[:n]
        return self.train[0][perm], self.train[1][perm]


@dataclass
class Scenario:
    name: str
    kind: str  # cls (classification), lm (char-level text), seq (scan commands -> actions)
    family: str  # mlp | moe | gpt
    tasks: list[Task]
    build_model: Callable[[], nn.Module]
    steps: int
    lr: float
    curriculum: list[tuple[int, int]] | None = None  # scan: (base %, modified %) per stage
    info: dict = field(default_factory=dict)  # sizes and choices, for metrics.json
    gated_layers: list[str] = field(default_factory=list)  # Linear layers the gated method wraps
    order: list[int] | None = None  # the task of each stage when not one stage per task (a return: 0, 1, 0)

    @property
    def metric(self) -> str:
        return {"cls": "acc", "lm": "loss", "seq": "exact_match"}[self.kind]

    @property
    def higher_is_better(self) -> bool:
        return self.kind != "lm"

    def stages(self, method: str) -> list[Stage]:
        out, seen = [], {}
        if self.curriculum is None:
            for task in self.order or range(len(self.tasks)):
                seen[task] = seen.get(task, 0) + 1
                out.append(Stage(self.tasks[task].name + (f"-{seen[task]}" if seen[task] > 1 else ""), task,
                                 [(task, 1.0)]))
            return out
        for base, mod in self.curriculum:
            task = 1 if mod > 0 else 0
            seen[task] = seen.get(task, 0) + 1
            name = self.tasks[task].name + (f"-{seen[task]}" if seen[task] > 1 else "")
            mix = ([(i, share / 100) for i, share in enumerate((base, mod)) if share > 0] if method == "mixed"
                   else [(task, 1.0)])
            out.append(Stage(name, task, mix))
        return out

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One loss per example: cross-entropy, averaged over the target tokens of a sequence (-1: no target)."""
        if self.kind == "cls":
            return F.cross_entropy(logits.float(), y, reduction="none")
        ce = F.cross_entropy(logits.float().transpose(1, 2), y.clamp(min=0), reduction="none")
        mask = (y >= 0).float()
        return (ce * mask).sum(1) / mask.sum(1).clamp(min=1)

    def group_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: int) -> tuple[torch.Tensor,
                                                                                                    torch.Tensor]:
        """(loss to minimise, task loss) of one batch of one task: train-moe's loss (with its balance and z
        terms) for the MoE classifier, the plain per-example loss's mean otherwise."""
        if self.family == "moe":
            from phases.core.models.moe_classifier import LossWeights, training_loss

            loss, stats = training_loss(model.inner, x, y, task, LossWeights())
            return loss, stats["task_loss"]
        loss = self.loss_fn(model(x, task), y).mean()
        return loss, loss.detach()


# --- models -----------------------------------------------------------------------------------------------------
class MoEAdapter(nn.Module):
    """train-moe's classifier called as model(x, task) -> logits (the routing is dropped)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, task: int = 0) -> torch.Tensor:
        return self.inner(x, task)[0]


class LMAdapter(nn.Module):
    """The shared GPT called as model(x, task) -> logits at every position (the task plays no part)."""

    def __init__(self, gpt: nn.Module):
        super().__init__()
        self.gpt = gpt

    def forward(self, x: torch.Tensor, task: int = 0) -> torch.Tensor:
        x = x.contiguous()
        return self.gpt(x, x)[0]  # passing targets makes the GPT return every position's logits


def _gpt(c: EwcConfig, vocab_size: int, block_size: int):
    from phases.core.models.gpt import GPT, GPTConfig

    if c.n_embd % c.n_head:
        raise InputError(f"--n-embd {c.n_embd} is not a multiple of --n-head {c.n_head}", "e.g. --n-embd 64 --n-head 4")
    cfg = GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=c.n_layer, n_head=c.n_head,
                    n_embd=c.n_embd, dropout=0.0, bias=False)
    return lambda: LMAdapter(GPT(cfg)), [f"gpt.transformer.h.{i}.mlp.{n}" for i in range(c.n_layer)
                                          for n in ("c_fc", "c_proj")]


# --- digits -------------------------------------------------------------------------------------------------------
def _digits(c: EwcConfig):
    from phases.core.data.classification import prepare_task

    return prepare_task("digits", c.data_dir, 0.1, c.seed, c.train_limit, option="--data-dir")


def _limit(n: int, limit: int | None) -> slice:
    return slice(0, n if limit is None else min(n, limit))


def _classifier(c: EwcConfig, heads: list[int], moe_tasks) -> Callable[[], nn.Module]:
    if c.model == "moe":
        from phases.core.models.moe_classifier import MoEModelConfig, build_model

        return lambda: MoEAdapter(build_model(moe_tasks, MoEModelConfig()))
    from phases.core.models.mlp import MLPClassifier

    return lambda: MLPClassifier(64, heads, c.hidden)


def permuted_digits(c: EwcConfig) -> Scenario:
    """Digits whose 64 pixels go through a fixed random permutation per task (task 1: none); one shared head."""
    d = _digits(c)
    rng = np.random.default_rng(c.seed)
    perms = [np.arange(64)] + [rng.permutation(64) for _ in range(c.tasks_count - 1)]
    ev = _limit(len(d.test), c.eval_limit)

    def view(x: torch.Tensor, perm) -> torch.Tensor:
        flat = x.reshape(len(x), 64)[:, torch.as_tensor(perm)]
        return flat.reshape(x.shape) if c.model == "moe" else flat.float() / d.pixel_max

    tasks = [Task(f"perm{i + 1}", (view(d.train.x, p), d.train.y), (view(d.val.x, p), d.val.y),
                  (view(d.test.x[ev], p), d.test.y[ev]), test_ids=d.test.ids[ev]) for i, p in enumerate(perms)]
    return Scenario("permuted-digits", "cls", c.model, tasks, _classifier(c, [10], [d]), 300, 1e-3,
                    info={"n_train": len(d.train), "n_val": len(d.val), "n_test": len(tasks[0].test[1]),
                          "heads": "single (domain-incremental)"})


def split_digits(c: EwcConfig) -> Scenario:
    """Digits 0-4, then 5-9: a head per task (labels 0-4 within each) or one 10-way head (class-incremental)."""
    d = _digits(c)
    multi = c.heads == "multi"
    halves = [(0, 5), (5, 10)]
    ev = _limit(len(d.test), c.eval_limit)

    def part(split, lo, hi, cut=slice(None)):
        x, y = split.x[cut], split.y[cut]
        keep = (y >= lo) & (y < hi)
        x = x[keep] if c.model == "moe" else x[keep].reshape(int(keep.sum()), 64).float() / d.pixel_max
        return x, y[keep] - (lo if multi else 0)

    tasks = []
    for i, (lo, hi) in enumerate(halves):
        ids = [d.test.ids[k] for k in range(len(d.test))[ev] if lo <= int(d.test.y[k]) < hi]
        tasks.append(Task(f"digits{lo}-{hi - 1}", part(d.train, lo, hi), part(d.val, lo, hi),
                          part(d.test, lo, hi, ev), model_task=i if multi else 0, test_ids=ids))
    moe_tasks = ([replace(d, name=t.name, classes=d.classes[lo:hi]) for t, (lo, hi) in zip(tasks, halves)]
                 if multi else [d])
    return Scenario("split-digits", "cls", c.model, tasks, _classifier(c, [5, 5] if multi else [10], moe_tasks),
                    300, 1e-3, info={"heads": "multi (task-incremental)" if multi else "single (class-incremental)",
                                     "n_train": [len(t.train[1]) for t in tasks],
                                     "n_test": [len(t.test[1]) for t in tasks]})


# --- MoE multitask ------------------------------------------------------------------------------------------------
def moe_multitask(c: EwcConfig) -> Scenario:
    """train-moe's classifier on one dataset, then another (a backbone and head per task, shared MoE layer)."""
    from phases.core.data.classification import prepare_task
    from phases.core.models.moe_classifier import MoEModelConfig, build_model

    names = [n.strip() for n in c.moe_tasks.split(",") if n.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise InputError(f"--moe-tasks {c.moe_tasks!r}: give two or more different datasets", "e.g. digits,sst2")
    limit = c.train_limit if c.train_limit is not None else 3000
    data = [prepare_task(n, c.data_dir, 0.1, c.seed, limit, option="--moe-tasks") for n in names]
    tasks = []
    for i, d in enumerate(data):
        ev = _limit(len(d.test), c.eval_limit)
        tasks.append(Task(d.name, (d.train.x, d.train.y), (d.val.x, d.val.y), (d.test.x[ev], d.test.y[ev]),
                          model_task=i, test_ids=d.test.ids[ev]))
    return Scenario("moe-multitask", "cls", "moe", tasks, lambda: MoEAdapter(build_model(data, MoEModelConfig())),
                    300, 2e-3, info={"n_train": [len(d.train) for d in data], "n_test": [len(t.test[1]) for t in tasks],
                                     "train_limit": limit, "test_splits": [d.test_split for d in data]})


# --- shakespeare then wikitext --------------------------------------------------------------------------------------
def _windows(tokens: torch.Tensor, block: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n fixed windows of a held-out text (x, y shifted by one), chosen by `seed`."""
    return random_windows(tokens, block, n, torch.Generator().manual_seed(seed))


def shakespeare_wikitext(c: EwcConfig) -> Scenario:
    """A char-level GPT on tiny Shakespeare, then on WikiText-2 text (the domain shift), and with --reconsolidate
    back on Shakespeare (does the first domain come back, and what does the return cost the second?); R holds the
    held-out loss per domain."""
    from phases.core.charlm import check_block_size, token_tensor
    from phases.core.data.registry import load
    from phases.core.data.text import CharVocab

    corpora = [load(n, c.data_dir, option="--data-dir") for n in ("tinyshakespeare", "wikitext2")]
    vocab = CharVocab.from_texts(*(t for corpus in corpora for t in (corpus.train_text, corpus.val_text)))
    n_eval = c.eval_limit or 512
    tasks = []
    for i, corpus in enumerate(corpora):
        train = token_tensor(vocab.encode(corpus.train_text))
        held = token_tensor(vocab.encode(corpus.val_text))
        check_block_size(c.block_size, {"train": train, "held-out": held}, corpus.name)
        tasks.append(Task(corpus.name, None, _windows(held, c.block_size, 128, c.seed + 1),
                          _windows(held, c.block_size, n_eval, c.seed), tokens=train, block=c.block_size))
    build, layers = _gpt(c, vocab.size, c.block_size)
    return Scenario("shakespeare-wikitext", "lm", "gpt", tasks, build, 800, 2e-3, gated_layers=layers,
                    order=[0, 1, 0] if c.reconsolidate else None,
                    info={"vocab_size": vocab.size, "block_size": c.block_size, "n_test_windows": n_eval,
                          "splits": {cp.name: list(cp.splits) for cp in corpora},
                          "n_train_chars": [len(t.tokens) for t in tasks]})


# --- SCAN -------------------------------------------------------------------------------------------------------------
SCAN_SPECIAL = ["<pad>", "IN", "OUT", "<eos>"]


def scan(c: EwcConfig) -> Scenario:
    """SCAN as sequences `IN <command> OUT <actions> <eos>` for the shared GPT, loss on the actions only; stage 1
    the simple split (base), later stages the add-primitive 'jump' split (modified); exact match by greedy
    decoding on held-out commands."""
    from phases.core.data.registry import load

    curriculum = parse_mix(c.mix)
    data = load("scan", c.data_dir, option="--data-dir")
    words = sorted({w for pairs in data.values() for cmd, act in pairs for w in (cmd + " " + act).split()})
    itos = SCAN_SPECIAL + words
    stoi = {w: i for i, w in enumerate(itos)}
    pad, tin, tout, eos = (stoi[w] for w in SCAN_SPECIAL)
    max_cmd = max(len(cmd.split()) for pairs in data.values() for cmd, _ in pairs)
    length = 1 + max_cmd + 1 + c.scan_max_actions + 1  # IN cmd OUT actions <eos>

    def keep(pairs):
        return [(cmd, act) for cmd, act in pairs if len(act.split()) <= c.scan_max_actions]

    def encode(pairs) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = torch.full((len(pairs), length), pad, dtype=torch.long)
        targets = torch.full((len(pairs), length - 1), -1, dtype=torch.long)
        for r, (cmd, act) in enumerate(pairs):
            prompt = [tin, *(stoi[w] for w in cmd.split()), tout]
            answer = [*(stoi[w] for w in act.split()), eos]
            seq = prompt + answer
            seqs[r, :len(seq)] = torch.tensor(seq)
            targets[r, len(prompt) - 1:len(seq) - 1] = torch.tensor(answer)  # predict the answer after OUT
        return seqs[:, :-1].contiguous(), targets

    gen = np.random.default_rng(c.seed)
    train_limit = c.train_limit if c.train_limit is not None else 4000
    eval_limit = c.eval_limit or 500
    tasks, info = [], {"max_actions": c.scan_max_actions, "train_limit": train_limit, "eval_limit": eval_limit}
    for i, (name, split) in enumerate((("base", "simple"), ("modified", "addprim_jump"))):
        train_all, test_all = keep(data[f"{split}_train"]), keep(data[f"{split}_test"])
        order = gen.permutation(len(train_all))
        val = [train_all[k] for k in order[:200]]  # held out of training, for the history curves
        train = [train_all[k] for k in order[200:200 + train_limit]]
        test = [test_all[k] for k in sorted(gen.permutation(len(test_all))[:eval_limit])]
        decode = [([tin, *(stoi[w] for w in cmd.split()), tout], [stoi[w] for w in act.split()]) for cmd, act in test]
        tasks.append(Task(name, encode(train), encode(val), encode(test), decode=decode,
                          test_ids=[f"{cmd} -> {act}" for cmd, act in test]))
        info[name] = {"split": split, "n_train": len(train), "n_val": len(val), "n_test": len(test),
                      "n_available_train": len(train_all), "n_available_test": len(test_all)}
    base_cmds = {cmd for cmd, _ in keep(data["simple_train"])}
    info["modified_test_seen_in_base_train"] = float(np.mean([t.split(" -> ")[0] in base_cmds
                                                                for t in tasks[1].test_ids]))
    info["vocab"] = itos
    build, layers = _gpt(c, len(itos), length - 1)
    scn = Scenario("scan", "seq", "gpt", tasks, build, 1000, 2e-3, curriculum=curriculum, info=info,
                   gated_layers=layers)
    scn.info["eos"] = eos
    return scn


BUILDERS = {"permuted-digits": permuted_digits, "split-digits": split_digits, "shakespeare-wikitext":
            shakespeare_wikitext, "scan": scan, "moe-multitask": moe_multitask}


def build(c: EwcConfig) -> Scenario:
    return BUILDERS[c.scenario](c)

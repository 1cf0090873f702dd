"""The training data of train-lora: question/answer problems formatted exactly as eval-gsm8k prompts them (the
same preset, the same chat template), the loss on the answer tokens only; the validation problems carved from the
training data by --split-seed; and which examples each optimizer step trains on.

Which examples a step takes is a pure function of (seed, step): each data source is read as a stream of seeded
epoch permutations, a staged --mix (or a flat --extra-ratio) says how many examples of a step come from the extra
file, and with --group-by-length the examples of a window of steps are sorted by length and dealt out as whole
steps in a seeded order. A resumed run therefore trains on exactly the batches an uninterrupted one would, with no
data state in its checkpoint."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from phases.core.curriculum import parse_mix
from phases.core.data import load
from phases.core.data.gsm8k import MathProblem, read_gsm8k_jsonl
from phases.core.errors import InputError
from phases.gsm8k.items import Item
from phases.gsm8k.prompts import PromptSpec, build_prompt, fill, shot_draws

IGNORE = -100  # label of tokens the loss does not count (the prompt, the padding)
GROUP_WINDOW = 16  # steps whose examples are sorted by length together

_FILE_FIX = "each line must be a JSON object with 'question' and an 'answer' ending in '#### <final answer>'"


@dataclass(frozen=True)
class Example:
    ids: tuple[int, ...]  # prompt + answer tokens
    n_prompt: int  # the first n_prompt tokens are the prompt (no loss)
    source: str  # "train" or "extra"
    index: int  # the problem's index in its source

    @property
    def labels(self) -> list[int]:
        return [IGNORE] * self.n_prompt + list(self.ids[self.n_prompt:])


@dataclass(frozen=True)
class Stage:
    name: str
    start: int  # first step
    end: int  # one past the last step
    extra_share: float  # share of each step's examples drawn from the extra file


@dataclass
class Problems:
    train: list[MathProblem]  # the training pool (validation problems removed)
    val: list[MathProblem]
    extra: list[MathProblem]
    source: str  # where the training problems came from
    pool: list[MathProblem]  # every training problem (shots are drawn from the training pool only)
    extra_held_out: int = 0  # --extra-file lines left out because they are about a validation problem


def read_problems(c) -> Problems:
    """The training problems (--train-file or --dataset's train split), the validation problems carved from
    them by --split-seed, and the --extra-file problems."""
    if c.train_file:
        path = Path(c.train_file)
        if not path.is_file():
            raise InputError(f"--train-file {c.train_file}: no such file", "pass a JSONL file of question/answer lines")
        pool, source = read_gsm8k_jsonl(path, _FILE_FIX), str(path.resolve())
    else:
        pool, source = load(c.dataset, c.data_dir, option="--dataset")["train"], f"{c.dataset}:train"
    if c.val_n >= len(pool):
        raise InputError(f"--val-n {c.val_n}: the training data has only {len(pool)} problems, and some must be "
                         "left to train on", f"use --val-n {max(1, len(pool) // 10)} or a larger training file")
    order = list(range(len(pool)))
    random.Random(c.split_seed).shuffle(order)
    val_ids = set(order[:c.val_n])
    extra = []
    if c.extra_file:
        path = Path(c.extra_file)
        if not path.is_file():
            raise InputError(f"--extra-file {c.extra_file}: no such file",
                             "pass a JSONL file of question/answer lines (e.g. from eval-gsm8k --export)")
        extra = read_gsm8k_jsonl(path, _FILE_FIX)
    val = [pool[i] for i in sorted(val_ids)]
    # an extra line about a validation problem (e.g. exported from eval-gsm8k --split train, which covers them too)
    # would train on the held-out answers: such lines are left out, and counted
    held_out = {p.question.strip() for p in val}
    kept = [p for p in extra if p.question.strip() not in held_out]
    return Problems([p for p in pool if p.id not in val_ids], val, kept, source, pool, len(extra) - len(kept))


def stages(c) -> list[Stage]:
    """The curriculum: one stage at --extra-ratio, or --mix's stages (train:extra percentages) splitting
    --max-steps evenly (the last stage takes the remainder)."""
    if not c.mix:
        if c.extra_ratio > 0 and not c.extra_file:
            raise InputError(f"--extra-ratio {c.extra_ratio} needs --extra-file", "add --extra-file FILE.jsonl")
        return [Stage("train", 0, c.max_steps, c.extra_ratio if c.extra_file else 0.0)]
    if not c.extra_file:
        raise InputError(f"--mix {c.mix} needs --extra-file (the data its second number is the share of)",
                         "add --extra-file FILE.jsonl")
    if c.extra_ratio:
        raise InputError("--mix and --extra-ratio both say how much extra data to mix in", "give only one")
    mix = parse_mix(c.mix)
    if len(mix) > c.max_steps:
        raise InputError(f"--mix has {len(mix)} stages but --max-steps is {c.max_steps}", "train longer")
    each = c.max_steps // len(mix)
    out = []
    for i, (base, extra) in enumerate(mix):
        end = c.max_steps if i == len(mix) - 1 else (i + 1) * each
        out.append(Stage(f"{base}:{extra}", i * each, end, extra / 100))
    return out


# --- prompts and tokens -----------------------------------------------------------------------------------------
def shots_for(spec: PromptSpec, pool: list[MathProblem], upto: int, exclude_self: bool) -> list[list[MathProblem]]:
    """Shots for the first `upto` problems, drawn from the training pool as eval-gsm8k draws them from the
    train split (never the problem itself when the problems are the pool's own)."""
    return [[pool[j] for j in draw] for draw in shot_draws(spec, len(pool), upto, exclude_self)]


def prompt_of(spec: PromptSpec, problem: MathProblem, shots: list[MathProblem]) -> str | list[dict]:
    return build_prompt(spec, problem.question, [(s.question, s.answer) for s in shots])


def answer_text(tok, spec: PromptSpec, prompt, prompt_text: str, solution: str) -> str:
    """What follows the prompt in a training example: the solution as the preset's answer turn, closed as the
    model closes a turn at inference (the chat template's end-of-turn; else the shot separator and EOS)."""
    target = fill(spec.target_template, answer=solution)
    if isinstance(prompt, list):
        full = tok.apply_chat_template(prompt + [{"role": "assistant", "content": target}], tokenize=False)
        if full.startswith(prompt_text):
            rest = full[len(prompt_text):]
            ends = [rest.find(s, len(target)) for s in spec.stop]
            ends = [(e, s) for e, s in zip(ends, spec.stop) if e >= 0]
            if ends:  # up to and including the first stop string (the end-of-turn token)
                e, s = min(ends)
                return rest[:e + len(s)]
            return rest
    return target + (tok.eos_token or "")


def encode_examples(tok, spec: PromptSpec, problems: list[MathProblem], shots: list[list[MathProblem]], source: str,
                    max_length: int) -> tuple[list[Example], int]:
    """Tokenized examples (prompt and answer encoded separately: the prompt exactly as the evaluation encodes
    it) and the number left out for being longer than `max_length`."""
    from phases.gsm8k.hf_backend import encode, prompt_text

    out, too_long = [], 0
    for p, s in zip(problems, shots):
        prompt = prompt_of(spec, p, s)
        text = prompt_text(tok, spec, prompt)
        ids = encode(tok, text)
        target = encode(tok, answer_text(tok, spec, prompt, text, p.answer))
        if len(ids) + len(target) > max_length:
            too_long += 1
            continue
        out.append(Example(tuple(ids + target), len(ids), source, p.id))
    return out, too_long


def val_items(spec: PromptSpec, problems: list[MathProblem], shots: list[list[MathProblem]]) -> list[Item]:
    """The validation problems as eval-gsm8k items (the engine decodes them)."""
    return [Item(p.id, p.question, p.answer, p.final, [s.id for s in sh], prompt_of(spec, p, sh))
            for p, sh in zip(problems, shots)]


# --- which examples each step trains on -------------------------------------------------------------------------
class Plan:
    """The examples of every optimizer step, as a pure function of the step."""

    def __init__(self, train: list[Example], extra: list[Example], stages_: list[Stage], per_step: int, seed: int,
                 group_by_length: bool):
        if not train:
            raise InputError("no training example fits --max-length", "raise --max-length")
        if any(s.extra_share > 0 for s in stages_) and not extra:
            raise InputError("no --extra-file example fits --max-length", "raise --max-length")
        self.train, self.extra, self.stages = train, extra, stages_
        self.per_step, self.seed, self.group = per_step, seed, group_by_length
        self._counts: list[tuple[int, int]] = []  # per step: (train examples, extra examples)
        for st in stages_:
            n_extra = int(round(st.extra_share * per_step))
            self._counts += [(per_step - n_extra, n_extra)] * (st.end - st.start)
        self._taken = [(0, 0)]  # cumulative counts before each step
        for a, b in self._counts:
            self._taken.append((self._taken[-1][0] + a, self._taken[-1][1] + b))

    def stage_of(self, step: int) -> Stage:
        return next(s for s in self.stages if s.start <= step < s.end)

    def _stream(self, pool: list[Example], salt: int, start: int, n: int) -> list[Example]:
        """Items start..start+n of the stream of seeded epoch permutations of `pool`."""
        out, pos = [], start
        while len(out) < n:
            epoch, offset = divmod(pos, len(pool))
            order = list(range(len(pool)))
            random.Random(f"{self.seed}:{salt}:{epoch}").shuffle(order)
            take = order[offset:offset + n - len(out)]
            out += [pool[i] for i in take]
            pos += len(take)
        return out

    def _drawn(self, step: int) -> list[Example]:
        (a0, b0), (na, nb) = self._taken[step], self._counts[step]
        return self._stream(self.train, 0, a0, na) + (self._stream(self.extra, 1, b0, nb) if nb else [])

    def examples(self, step: int) -> list[Example]:
        """The examples of optimizer step `step`, shortest first (micro-batches then pad little)."""
        if not self.group:
            return sorted(self._drawn(step), key=lambda e: len(e.ids))
        stage = self.stage_of(step)
        w0 = stage.start + (step - stage.start) // GROUP_WINDOW * GROUP_WINDOW
        window = range(w0, min(w0 + GROUP_WINDOW, stage.end))
        pooled = sorted((e for s in window for e in self._drawn(s)), key=lambda e: (len(e.ids), e.source, e.index))
        chunks = [pooled[i * self.per_step:(i + 1) * self.per_step] for i in range(len(window))]
        order = list(range(len(window)))
        random.Random(f"{self.seed}:window:{w0}").shuffle(order)  # not short-to-long within a window
        return chunks[order[step - w0]]


def micro_batches(examples: list[Example], batch_size: int) -> list[list[Example]]:
    return [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]


def collate(batch: list[Example], pad_id: int, device):
    """Right-padded input ids, attention mask and labels (IGNORE on the prompt and the padding)."""
    import torch

    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return ids.to(device), mask.to(device), labels.to(device)

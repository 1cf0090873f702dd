"""Batched decoding for causal LMs in which finished sequences leave the batch and waiting prompts take their place.

`model.generate` on a batch keeps computing every sequence until the longest one is done: with GSM8K completions
of 1 to 256 tokens most of a batch's decoding goes to sequences that have already stopped, and the batch's last
steps run on one or two live rows. Here a sequence that emits an end-of-sequence token or completes a stop string
leaves at once (its rows are dropped from the KV cache, and columns of left padding no remaining row needs are
trimmed), and the next waiting prompt is prefilled and joins, so the batch stays full until the queue is empty.

Each prompt is prefilled alone (no padding, the causal attention kernel) and its KV cache joins the batch
right-aligned, left padding masked; positions come from each row's own length, so padding never shifts a row.
Given the same queue, the schedule (and so every number) is the same from run to run.

The batch's KV cache (`_SlotBatch`) lives in buffers allocated once per call: a decode step writes its column in
place and attention reads a view of the live rows and columns. A cache that grows by concatenation (transformers'
DynamicCache) copies all of itself at every step, which profiling showed to be most of a decode step at 16 rows of
1,100-token GSM8K prompts (benchmarks/gsm8k_profile.py). A row that leaves is replaced by the last live row (one
row copied), trimming left padding moves a start index, and nothing moves when a prompt joins. Models whose cache
layers are not all plain full-attention layers (sliding windows, linear attention) use `_ConcatBatch`, the
concatenating cache.

Decode steps multiply each weight by only a few rows; on a CPU they run through oneDNN with the weights prepacked
for the length of the call (packed.py), which profiling showed to halve their matmul time."""

from __future__ import annotations

import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from transformers.cache_utils import DynamicLayer

from phases.gsm8k.packed import packed_linears


@dataclass
class Generated:
    tokens: list[int] = field(default_factory=list)  # generated ids, with the end-of-sequence token if there was one
    finish: str = ""  # "eos", "stop" (a stop string completed) or "length" (max_new_tokens reached)


@dataclass
class RowSampling:
    """How one row picks its tokens: greedy (temperature 0) or sampled with its own generator, so a row's draws
    depend only on its seed, never on the other rows of its batch."""

    temperature: float = 0.0
    generator: torch.Generator | None = None


def _next_tokens(logits: torch.Tensor, sampling: list[RowSampling]) -> list[int]:
    out = logits.argmax(-1)
    for i, s in enumerate(sampling):
        if s.temperature > 0:
            probs = torch.softmax(logits[i].float() / s.temperature, dim=-1)
            out[i] = torch.multinomial(probs, 1, generator=s.generator)[0]
    return out.tolist()


def _left_pad(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class _ConcatBatch:
    """The live rows in a concatenating cache (any cache layer type): their KV cache (right-aligned, left padding
    masked), mask, last positions and next tokens."""

    def __init__(self, model):
        self.model = model
        self.cache = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=model.device)
        self.last_pos = torch.zeros(0, dtype=torch.long, device=model.device)
        self.rows: list[int] = []  # output row of each live row
        self.next: list[int] = []  # token each live row feeds at the next step

    def join(self, cache, length: int, rows: list[int], tokens: list[int]) -> None:
        n, dev = len(rows), self.model.device
        mask = torch.ones((n, length), dtype=torch.long, device=dev)
        pos = torch.full((n,), length - 1, dtype=torch.long, device=dev)
        if self.cache is None or not self.rows:
            self.cache, self.mask, self.last_pos = cache, mask, pos
        else:
            width = max(self.mask.shape[1], length)
            for old, new in zip(self.cache.layers, cache.layers):
                old.keys = torch.cat([_left_pad(old.keys, width, 2), _left_pad(new.keys, width, 2)])
                old.values = torch.cat([_left_pad(old.values, width, 2), _left_pad(new.values, width, 2)])
            self.mask = torch.cat([_left_pad(self.mask, width, 1), _left_pad(mask, width, 1)])
            self.last_pos = torch.cat([self.last_pos, pos])
        self.rows += rows
        self.next += tokens

    def keep(self, keep: list[int]) -> None:
        """Keep only the live rows at these positions, and trim the left padding none of them needs."""
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        self.next = [self.next[i] for i in keep]
        if not keep:
            self.cache = None
            return
        index = torch.tensor(keep, device=self.model.device)
        self.cache.batch_select_indices(index)
        self.mask, self.last_pos = self.mask[index], self.last_pos[index]
        lead = int((self.mask.cumsum(-1) == 0).sum(-1).min())
        if lead:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, lead:], layer.values[:, :, lead:]
            self.mask = self.mask[:, lead:]

    def step(self) -> torch.Tensor:
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        self.last_pos = self.last_pos + 1
        ids = torch.tensor(self.next, device=self.model.device).unsqueeze(1)
        return self.model(input_ids=ids, attention_mask=self.mask, position_ids=self.last_pos.unsqueeze(1),
                          cache=self.cache, use_cache=True).logits[:, -1]


class _SlotLayer(DynamicLayer):
    """One layer's view of a `_SlotBatch`: `update` writes the step's keys and values in place at the batch's next
    column and returns the live rows and columns as views, so the cache is not copied per step."""

    def __init__(self, owner: "_SlotBatch", index: int):
        super().__init__()
        # a weak reference: a strong one would make batch -> cache -> layer -> batch a cycle, and the batch's
        # buffers (about a gigabyte at 16 rows of 5-shot prompts) would outlive the call until the cyclic collector ran
        self.owner, self.index = weakref.proxy(owner), index
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        o = self.owner
        k, v = o.keys[self.index], o.values[self.index]
        q = key_states.shape[-2]
        k[:o.n, :, o.end:o.end + q] = key_states
        v[:o.n, :, o.end:o.end + q] = value_states
        self.keys, self.values = k[:o.n, :, o.start:o.end + q], v[:o.n, :, o.start:o.end + q]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.owner.end - self.owner.start


class _SlotBatch:
    """The live rows in preallocated buffers: per layer keys and values (slots x kv heads x capacity x head dim),
    a mask (slots x capacity) and each slot's last position. Live rows are slots [0, n), live columns [start, end):
    every row is right-aligned at `end`, its left padding masked. The buffers are not cleared when allocated (that
    costs a pass over a gigabyte per call); instead every column attention reads holds either a model output or a
    zero written when it became padding, so masked columns are always finite (a NaN there would survive the mask:
    attention multiplies it by a zero weight)."""

    def __init__(self, model, slots: int, capacity: int):
        from transformers.cache_utils import Cache

        self.model, self.slots, self.capacity = model, slots, capacity
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.n = self.start = self.end = 0
        self.mask = torch.zeros((slots, capacity), dtype=torch.long, device=model.device)
        self.last_pos = torch.zeros(slots, dtype=torch.long, device=model.device)
        self.rows: list[int] = []  # output row of each live row
        self.next: list[int] = []  # token each live row feeds at the next step
        self.cache = None
        self._cache_cls = Cache

    def _allocate(self, prefill) -> None:
        """Buffers shaped after a prefilled prompt's cache (kv heads, head dim, dtype), one pair per layer."""
        for layer in prefill.layers:
            shape = (self.slots, layer.keys.shape[1], self.capacity, layer.keys.shape[3])
            self.keys.append(layer.keys.new_empty(shape))
            self.values.append(layer.values.new_empty(shape))
        self.cache = self._cache_cls(layers=[_SlotLayer(self, i) for i in range(len(self.keys))])

    def _make_room(self, width: int) -> None:
        """Room for `width` more columns after `end`: move the live columns to the front, or grow the buffers."""
        live = self.end - self.start
        if live + width > self.capacity:  # grow (rare: the capacity fits the longest prompt and its completion)
            self.capacity = max(live + width, self.capacity * 3 // 2)
            for bufs in (self.keys, self.values):
                for i, b in enumerate(bufs):
                    grown = b.new_empty((*b.shape[:2], self.capacity, b.shape[3]))
                    grown[:, :, :live] = b[:, :, self.start:self.end]
                    bufs[i] = grown
            mask = self.mask.new_zeros((self.slots, self.capacity))
            mask[:, :live] = self.mask[:, self.start:self.end]
            self.mask = mask
        elif self.start > 0:
            for b in (*self.keys, *self.values):
                b[:, :, :live] = b[:, :, self.start:self.end].clone()
            self.mask[:, :live] = self.mask[:, self.start:self.end].clone()
        else:
            return
        self.mask[:, live:] = 0
        self.start, self.end = 0, live

    def _pad(self, rows: slice, lo: int, hi: int) -> None:
        """Columns [lo, hi) of these rows become padding: masked, and zero."""
        if hi > lo:
            self.mask[rows, lo:hi] = 0
            for b in (*self.keys, *self.values):
                b[rows, :, lo:hi] = 0

    def join(self, cache, length: int, rows: list[int], tokens: list[int]) -> None:
        """A prefilled prompt's rows (its cache holds `len(rows)` rows of `length` columns) enter at slots n, n+1,
        ...; its columns end at `end` with the live rows'."""
        if not self.keys:
            self._allocate(cache)
        c = len(rows)
        if self.n == 0:
            self.start = self.end = 0
            self.mask.zero_()
        if self.end - length < 0:  # longer than the room before `end`: shift the live columns right
            if self.end + (length - self.end) + 1 > self.capacity:
                self._make_room(length - self.end + 1)
            shift = length - self.end
            if shift > 0:
                for b in (*self.keys, *self.values):
                    b[:self.n, :, self.start + shift:self.end + shift] = b[:self.n, :, self.start:self.end].clone()
                self.mask[:self.n, self.start + shift:self.end + shift] = self.mask[:self.n, self.start:self.end].clone()
                self.start, self.end = self.start + shift, self.end + shift
        first = self.end - length
        if first < self.start:  # the new rows reach left of the live columns: the others are padding there
            self._pad(slice(0, self.n), first, self.start)
            self.start = first
        new = slice(self.n, self.n + c)
        self._pad(new, self.start, first)
        for i, layer in enumerate(cache.layers):
            self.keys[i][new, :, first:self.end] = layer.keys
            self.values[i][new, :, first:self.end] = layer.values
        self.mask[new] = 0
        self.mask[new, first:self.end] = 1
        self.last_pos[new] = length - 1
        self.n += c
        self.rows += rows
        self.next += tokens

    def keep(self, keep: list[int]) -> None:
        """Keep only the live rows at these positions: the last live rows move into the places of those that
        leave (one row's cache copied each), then the left padding no live row needs is dropped."""
        if len(keep) == self.n:
            return
        n = len(keep)
        gone = sorted(set(range(self.n)) - set(keep))
        holes = [p for p in gone if p < n]
        movers = [p for p in keep if p >= n]
        if holes:
            dst = torch.tensor(holes, device=self.model.device)
            src = torch.tensor(movers, device=self.model.device)
            cols = slice(self.start, self.end)
            for b in (*self.keys, *self.values):
                b[dst, :, cols] = b[src, :, cols]
            self.mask[dst] = self.mask[src]
            self.last_pos[dst] = self.last_pos[src]
            for h, m in zip(holes, movers):
                self.rows[h], self.next[h] = self.rows[m], self.next[m]
        self.n = n
        del self.rows[n:], self.next[n:]
        if n == 0:
            self.start = self.end = 0
            return
        used = self.mask[:n, self.start:self.end].any(0).nonzero()
        self.start += int(used[0]) if len(used) else self.end - self.start

    def step(self) -> torch.Tensor:
        if self.end + 1 > self.capacity:
            self._make_room(1)
        n = self.n
        self.mask[:n, self.end] = 1
        self.last_pos[:n] += 1
        ids = torch.tensor(self.next, device=self.model.device).unsqueeze(1)
        logits = self.model(input_ids=ids, attention_mask=self.mask[:n, self.start:self.end + 1].contiguous(),
                            position_ids=self.last_pos[:n].unsqueeze(1), cache=self.cache, use_cache=True).logits[:, -1]
        self.end += 1
        return logits


@torch.inference_mode()
def generate(model, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, eos_ids: set[int],
             stopped: Callable[[list[int]], bool] | None = None, sampling: list[RowSampling] | None = None,
             copies: int = 1, max_rows: int = 16, early_leave: bool = True, packed: bool = True,
             on_finish: Callable[[int, list[Generated]], None] | None = None) -> list[Generated]:
    """Decode `copies` continuations of each prompt, at most `max_rows` rows at a time, prompts taken in the
    order given. Row `i * copies + j` of the result is copy j of prompt i (the prompt is prefilled once and its
    cache repeated). `stopped(tokens)` says whether a row's text so far completes a stop string; `sampling[row]`
    picks greedy or sampled decoding per row (default: greedy). `on_finish(i, rows)` is called as soon as every
    copy of prompt i is done.

    `early_leave=False` admits the prompts in fixed groups of `max_rows // copies` and keeps finished rows in the
    batch until the whole group is done, as `model.generate` does: it exists to measure what leaving saves;
    `packed=False` keeps decode steps on the plain weights (packed.py; to measure what packing saves)."""
    from transformers import DynamicCache

    rows = len(prompts) * copies
    sampling = list(sampling) if sampling is not None else [RowSampling() for _ in range(rows)]
    if len(sampling) != rows:
        raise ValueError(f"sampling has {len(sampling)} rows, expected {rows}")
    out = [Generated() for _ in range(rows)]
    done = [False] * rows
    left = [copies] * len(prompts)  # unfinished copies of each prompt

    def record(row: int, tok: int) -> bool:
        """Append a token to a row; True when the row is finished."""
        g = out[row]
        g.tokens.append(tok)
        if tok in eos_ids:
            g.finish = "eos"
        elif stopped is not None and stopped(g.tokens):
            g.finish = "stop"
        elif len(g.tokens) >= max_new_tokens:
            g.finish = "length"
        done[row] = bool(g.finish)
        if done[row]:
            left[row // copies] -= 1
            if on_finish is not None and left[row // copies] == 0:
                i = row // copies
                on_finish(i, out[i * copies:(i + 1) * copies])
        return done[row]

    if all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers):
        # room for the longest prompt and its completion, and some steps before the live columns move to the front
        capacity = max(map(len, prompts), default=1) + max_new_tokens + 64
        batch = _SlotBatch(model, max(max_rows, copies), capacity)
    else:
        batch = _ConcatBatch(model)

    def admit(i: int) -> None:
        """Prefill prompt i alone, pick its first tokens, and let its unfinished rows join the batch."""
        cache = DynamicCache(config=model.config)
        ids = torch.tensor([list(prompts[i])], device=model.device)
        logits = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        if copies > 1:
            cache.batch_repeat_interleave(copies)
            logits = logits.repeat_interleave(copies, 0)
        new_rows = [i * copies + j for j in range(copies)]
        tokens = _next_tokens(logits, [sampling[r] for r in new_rows])
        live = [k for k, (r, t) in enumerate(zip(new_rows, tokens)) if not record(r, t)]
        if early_leave and len(live) < len(new_rows):
            if not live:
                return
            cache.batch_select_indices(torch.tensor(live, device=model.device))
            new_rows, tokens = [new_rows[k] for k in live], [tokens[k] for k in live]
        batch.join(cache, ids.shape[1], new_rows, tokens)

    with packed_linears(model, packed):
        queue = deque(range(len(prompts)))
        per_group = max(1, max_rows // copies)
        while queue or batch.rows:
            if early_leave:
                batch.keep([k for k, r in enumerate(batch.rows) if not done[r]])
                while queue and (len(batch.rows) + copies <= max_rows or not batch.rows):
                    admit(queue.popleft())
            else:  # fixed groups: the next group starts when every row of the last one is done
                if all(done[r] for r in batch.rows):
                    batch.keep([])
                    for _ in range(min(per_group, len(queue))):
                        admit(queue.popleft())
            if not batch.rows or all(done[r] for r in batch.rows):
                continue
            chosen = _next_tokens(batch.step(), [sampling[r] for r in batch.rows])
            for r, t in zip(batch.rows, chosen):
                if not done[r]:
                    record(r, t)
            batch.next = chosen
    return out

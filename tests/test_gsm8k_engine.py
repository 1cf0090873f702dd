"""eval-gsm8k's decoding engine on the real small LLM in float32: its completions equal plain `model.generate`'s
greedy ones, and its preallocated KV cache (`_SlotBatch`) decodes exactly what the concatenating cache does, through
prompts joining longer than the batch's width, rows leaving, sampled copies, fixed groups, and buffers that run out
of room (moved to the front, then grown). The cache comparisons run on the model's first 4 layers (the real
weights, architecture and cache classes; 30 layers would only repeat the same cache code 7 times slower). Decode
steps' matmuls run on oneDNN-prepacked weights (packed.py): they agree with the plain ones to rounding, decode the
same tokens, and are undone when the call returns."""

from __future__ import annotations

import random

import pytest
import torch

from phases.gsm8k import engine

MAX_NEW = 14


@pytest.fixture(scope="module")
def fp32(gguf):
    """The shared model in float32 with its tokenizer, and chat prompts of 6 real test problems (89-173 tokens)."""
    from phases.core.device import set_threads
    from phases.gsm8k.config import EvalConfig
    from phases.gsm8k.hf_backend import TransformersBackend
    from phases.gsm8k.models import load_model
    from phases.gsm8k.phase import _items
    from phases.gsm8k.prompts import resolve_spec

    before = torch.get_num_threads()
    set_threads()
    spec = resolve_spec("chat", max_new_tokens=MAX_NEW)
    items, _ = _items(EvalConfig(model=str(gguf), preset="chat", n=6), spec)
    loaded = load_model(str(gguf), "float32", torch.device("cpu"))
    backend = TransformersBackend(loaded, spec, 4, 0, 0.0, 0, False)
    backend.prepare(items)
    yield backend, [it.prompt_ids for it in items]
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sliced(fp32):
    """The same backend with the model cut to its first 4 decoder layers."""
    import copy

    backend, prompts = fp32
    model = copy.deepcopy(backend.model)
    model.model.layers = model.model.layers[:4]
    model.config.num_hidden_layers = 4
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:4]
    return copy.copy(backend), prompts, model


def _decode(backend, prompts, concat: bool = False, model=None, **kwargs) -> list[list[int]]:
    saved = engine._SlotBatch
    if concat:
        engine._SlotBatch = lambda model, slots, capacity: engine._ConcatBatch(model)
    try:
        out = engine.generate(model or backend.model, prompts, max_new_tokens=MAX_NEW, eos_ids=backend.eos_ids, **kwargs)
    finally:
        engine._SlotBatch = saved
    return [g.tokens for g in out]


def test_completions_equal_plain_model_generate(fp32):
    backend, prompts = fp32
    ours = _decode(backend, prompts[:4], max_rows=2)  # rows leave and prompts join mid-decode
    with torch.inference_mode():
        for ids, tokens in zip(prompts[:4], ours):
            out = backend.model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                         dtype=torch.long), max_new_tokens=MAX_NEW, do_sample=False,
                                         eos_token_id=sorted(backend.eos_ids), pad_token_id=backend.tok.pad_token_id)
            assert out[0, len(ids):].tolist() == tokens


@pytest.mark.parametrize("kwargs", [{"max_rows": 3}, {"max_rows": 3, "copies": 2}, {"max_rows": 4, "copies": 3},
                                    {"max_rows": 3, "early_leave": False}], ids=str)
def test_preallocated_cache_decodes_what_the_concatenated_one_does(sliced, kwargs):
    backend, prompts, model = sliced
    prompts = list(prompts)
    random.Random(1).shuffle(prompts)  # unsorted: prompts join that are longer than the batch's live width
    copies = kwargs.get("copies", 1)

    def run(concat):
        sampling = None
        if copies > 1:  # copy 0 greedy, the others sampled, each row from its own seeded generator
            sampling = [engine.RowSampling(0.9 if j else 0.0, torch.Generator().manual_seed(100 * i + j))
                        for i in range(len(prompts)) for j in range(copies)]
        return _decode(backend, prompts, concat, model=model, sampling=sampling, **kwargs)

    assert run(False) == run(True)


def test_buffers_that_run_out_of_room_move_then_grow(sliced):
    """The batch driven by hand with a capacity far too small: the buffers grow, and once a row has left, the live
    columns move to the front; every step's logits match the concatenating batch's under the same joins and leaves
    (each batch keeps its own row order: rows are matched by their output row)."""
    from transformers import DynamicCache

    backend, prompts, model = sliced
    slot, concat = engine._SlotBatch(model, 3, 60), engine._ConcatBatch(model)
    events = []
    with torch.inference_mode():
        def join(i):
            for batch in (slot, concat):
                cache = DynamicCache(config=model.config)
                logits = model(input_ids=torch.tensor([prompts[i]]), cache=cache, use_cache=True, logits_to_keep=1)
                batch.join(cache, len(prompts[i]), [i], logits.logits[:, -1].argmax(-1).tolist())

        join(0)
        for k in range(120):
            start, capacity = slot.start, slot.capacity
            a, b = slot.step(), concat.step()
            if slot.capacity > capacity:
                events.append("grown")
            elif slot.start < start:
                events.append("moved")
            order = [concat.rows.index(r) for r in slot.rows]
            torch.testing.assert_close(a, b[order], rtol=1e-4, atol=1e-4)
            slot.next, concat.next = a.argmax(-1).tolist(), b.argmax(-1).tolist()
            if k in (2, 5):
                join(k // 2)  # prompts join, one longer than the live width
            if k == 8:
                for batch in (slot, concat):
                    batch.keep([1, 2])  # the first row leaves (the last moves into its slot), padding is trimmed
            if "grown" in events and "moved" in events:
                break
    assert "grown" in events and "moved" in events, events


def test_packed_decode_matmuls_agree_with_the_plain_ones_and_are_undone(sliced):
    from torch.profiler import profile

    from phases.gsm8k import packed

    backend, prompts, model = sliced
    assert packed.available()  # the lock's CPU torch has oneDNN
    lin = model.model.layers[0].mlp.up_proj
    few = torch.randn(2, 3, lin.in_features)  # a decode step's rows
    many = torch.randn(1, packed.MAX_PACKED_ROWS + 1, lin.in_features)  # a prompt's
    with torch.inference_mode():
        plain_few, plain_many = lin(few), lin(many)
        with packed.packed_linears(model):
            assert "forward" in lin.__dict__
            with profile() as prof:
                packed_few = lin(few)
            packed_many = lin(many)
        assert "forward" not in lin.__dict__  # the class's forward again
    assert any("linear_pointwise" in ev.key for ev in prof.key_averages())  # oneDNN's kernel did the work
    torch.testing.assert_close(packed_few, plain_few, rtol=1e-5, atol=1e-5)
    assert torch.equal(packed_many, plain_many)  # many rows keep the plain kernel

    assert _decode(backend, prompts, model=model, max_rows=3) == \
        _decode(backend, prompts, model=model, max_rows=3, packed=False)


def test_the_batch_frees_its_buffers_as_soon_as_it_is_dropped(sliced):
    """No reference cycle holds the KV buffers (about a gigabyte at 16 rows of 5-shot prompts) after a call: they
    are freed at once, not whenever the cyclic collector next runs (disabled here so that it cannot hide one)."""
    import gc
    import weakref

    from transformers import DynamicCache

    backend, prompts, model = sliced
    gc.disable()
    try:
        with torch.inference_mode():
            batch = engine._SlotBatch(model, 2, 400)
            cache = DynamicCache(config=model.config)
            logits = model(input_ids=torch.tensor([prompts[0]]), cache=cache, use_cache=True, logits_to_keep=1)
            batch.join(cache, len(prompts[0]), [0], logits.logits[:, -1].argmax(-1).tolist())
            batch.step()
        buffer = weakref.ref(batch.keys[0])
        del batch, cache
        assert buffer() is None
    finally:
        gc.enable()

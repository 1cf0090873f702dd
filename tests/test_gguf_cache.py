"""The GGUF conversion cache (phases/gsm8k/gguf_cache.py) on the real shared model: the first load converts the file
and stores the conversion, later loads read it and give exactly the same weights (float32 and bf16), tokenizer and
identity; a damaged entry falls back to the file; NLAB_GGUF_CACHE=0 stores nothing."""

from __future__ import annotations

import pytest
import torch

from phases.gsm8k import gguf_cache
from phases.gsm8k.models import load_model, load_tokenizer

CPU = torch.device("cpu")


def _same_weights(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_converted_once_then_read_back_identical(gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("NLAB_CACHE_DIR", str(tmp_path / "cache"))
    direct = load_model(str(gguf), "float32", CPU)  # converts, and stores the conversion
    entries = list((tmp_path / "cache" / "gguf").iterdir())
    assert len(entries) == 1 and gguf_cache.ready(entries[0])
    assert entries[0].name.startswith(direct.identity["sha256"][:24])
    cached = load_model(str(gguf), "float32", CPU)
    assert _same_weights(direct, cached) and cached.identity == direct.identity
    assert cached.model.lm_head.weight.data_ptr() == cached.model.model.embed_tokens.weight.data_ptr()  # tied
    text = "Question: Janet's ducks lay 16 eggs.\nAnswer: <|im_end|> 42 héllo"
    msgs = [{"role": "user", "content": "What is 2 + 3?"}]
    for tok in (cached.tokenizer, load_tokenizer(str(gguf))):
        assert tok(text).input_ids == direct.tokenizer(text).input_ids
        assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == \
            direct.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        assert (tok.eos_token_id, tok.pad_token_id) == (direct.tokenizer.eos_token_id, direct.tokenizer.pad_token_id)

    # bf16 from the cache equals bf16 converted straight from the file
    bf16 = load_model(str(gguf), "bfloat16", CPU)
    monkeypatch.setenv("NLAB_GGUF_CACHE", "0")
    assert _same_weights(bf16, load_model(str(gguf), "bfloat16", CPU))

    # a damaged entry is not trusted: the file is converted again
    monkeypatch.delenv("NLAB_GGUF_CACHE")
    (entries[0] / "model.safetensors").write_bytes(b"not safetensors")
    assert _same_weights(direct, load_model(str(gguf), "float32", CPU))


def test_off_or_too_big_stores_nothing(gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("NLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NLAB_GGUF_CACHE", "0")
    assert gguf_cache.entry(gguf, "0" * 64) is None
    monkeypatch.delenv("NLAB_GGUF_CACHE")
    monkeypatch.setenv("NLAB_GGUF_CACHE_MAX_GB", "0.1")  # 98 MB of 4-bit weights: about 0.8 GB in float32
    assert gguf_cache.entry(gguf, "0" * 64) is None
    monkeypatch.setenv("NLAB_GGUF_CACHE_MAX_GB", "4")
    assert gguf_cache.entry(gguf, "0" * 64) is not None

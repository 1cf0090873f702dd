"""The llama.cpp backend (`--backend llamacpp`): a GGUF model run in this process by llama-cpp-python, with its own
quantised kernels (the transformers backend dequantises the same file to float32 or bf16).

Prompts are tokenized by the model's transformers tokenizer (`hf_backend.TokenizedBackend`), so both backends feed
the model the same token ids and judge completions by the same end ids and stop strings. Problems run one at a
time, longest prompt first, greedy as llama.cpp's argmax (temperature 0, no repeat penalty); a problem's samples
reuse its prompt's KV cache (llama-cpp-python keeps the longest matching prefix) and draw from llama.cpp's sampler
seeded per sample (`items.sample_seed`), with top-k, top-p and min-p off, as the transformers backend samples."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from phases.core.errors import InputError
from phases.gsm8k.hf_backend import TokenizedBackend
from phases.gsm8k.items import Item, Result, sample_seed
from phases.gsm8k.prompts import PromptSpec

EXTRA = "llamacpp"  # the optional dependency group that installs llama-cpp-python


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise InputError("--backend llamacpp needs llama-cpp-python, which is not installed",
                         f"pip install 'nlab[{EXTRA}]' (a source build, a few minutes; on a CPU other than the one "
                         "it is built on, build it with CMAKE_ARGS='-DGGML_NATIVE=OFF', see docs/install.md)") from None
    return llama_cpp


class LlamaCppBackend(TokenizedBackend):
    def __init__(self, model: str, spec: PromptSpec, samples: int, temperature: float, seed: int, threads: int):
        from phases.gsm8k.models import load_tokenizer, resolve_source, sha256_file

        source = resolve_source(model)
        if source.kind != "gguf":
            raise InputError(f"--model {model}: --backend llamacpp runs a .gguf file",
                             "pass a .gguf file, or use --backend transformers for a folder or hub id")
        self.llama_cpp = _llama_cpp()
        self.path = Path(source.location) / source.gguf_file
        self.threads = threads
        tok = load_tokenizer(model)
        super().__init__(tok, spec, samples, temperature, seed)
        self.llm = None  # loaded in prepare(), when the context the prompts need is known
        self.identity = {"backend": "llamacpp", "kind": "gguf", "location": source.location,
                         "gguf_file": source.gguf_file, "sha256": sha256_file(self.path),
                         "llama_cpp_python": self.llama_cpp.__version__, "threads": threads,
                         "dtype": "the file's own (quantised kernels)", "adapters": []}

    def prepare(self, items: list[Item], limit: int | None = None) -> None:
        """Tokenize the prompts, then load the model with a context just large enough for the longest prompt and
        its completion (llama.cpp allocates the KV cache whole), within the context the model was trained for."""
        super().prepare(items)
        need = max(len(it.prompt_ids) for it in items) + self.spec.max_new_tokens
        self.llm = self.llama_cpp.Llama(model_path=str(self.path), n_ctx=need, n_batch=512, n_threads=self.threads,
                                        n_threads_batch=self.threads, verbose=False)
        meta = self.llm.metadata
        trained = int(meta.get(f"{meta.get('general.architecture')}.context_length", 0) or 0)
        if trained:
            super().prepare(items, trained)  # a prompt too long for the model: the transformers backend's error
        self.eos_ids.add(self.llm.token_eos())

    def _decode(self, prompt: list[int], temperature: float, seed: int) -> tuple[list[int], str]:
        if temperature > 0:
            self.llm.set_seed(seed)
        tokens: list[int] = []
        finish = ""
        for tok in self.llm.generate(prompt, temp=temperature, top_k=0 if temperature > 0 else 1, top_p=1.0,
                                     min_p=0.0, repeat_penalty=1.0):
            tokens.append(tok)
            if tok in self.eos_ids:
                finish = "eos"
            elif self._stopped(tokens):
                finish = "stop"
            elif len(tokens) >= self.spec.max_new_tokens:
                finish = "length"
            if finish:
                return tokens, finish
        return tokens, "length"

    def run(self, items: list[Item], done: set[int], emit: Callable[[list[Result]], None]) -> None:
        for it in sorted(items, key=lambda it: (-len(it.prompt_ids), it.id)):
            if it.id in done:
                continue
            start = time.perf_counter()
            greedy = self._completion(*self._decode(it.prompt_ids, 0.0, 0))
            samples = [self._completion(*self._decode(it.prompt_ids, self.temperature,
                                                      sample_seed(self.seed, it.id, j) % (2 ** 31)))
                       for j in range(self.samples)]
            result = Result(it.id, greedy, samples, prompt_tokens=len(it.prompt_ids))
            result.gen_seconds = time.perf_counter() - start
            emit([result])

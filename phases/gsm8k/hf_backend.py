"""The transformers backend: prompts tokenized locally, problems sorted by prompt length (longest first),
decoded by `engine.generate` (KV cache, finished rows leave, waiting prompts join), and, with --ppl, the gold
solutions scored.

A window (`checkpoint_every` problems) is one continuous batch; a window with any problem missing is decoded
whole, so a resumed run has exactly the schedule, and so the numbers, of an uninterrupted one."""

from __future__ import annotations

import time
from typing import Callable

from phases.core.errors import InputError
from phases.gsm8k.engine import RowSampling, generate
from phases.gsm8k.items import Completion, Item, Result, cut_at_stop, sample_seed
from phases.gsm8k.models import LoadedModel
from phases.gsm8k.prompts import PromptSpec, build_prompt, gold_target


def prompt_text(tok, spec: PromptSpec, prompt: str | list[dict]) -> str:
    """The text the model sees for a prompt: completion text as is, chat messages through the chat template with
    the assistant turn opened (train-lora formats its examples with this too, so training and evaluation agree)."""
    if isinstance(prompt, str):
        return prompt
    if not getattr(tok, "chat_template", None):
        raise InputError(f"--preset {spec.name}: the model has no chat template",
                         "use a completion preset such as --preset lm-eval")
    return tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def encode(tok, text: str) -> list[int]:
    # no BOS added, as lm-eval does for causal models; chat templates write their own special tokens
    return tok(text, add_special_tokens=False).input_ids


class TokenizedBackend:
    """What every backend that tokenizes locally shares (transformers, llama.cpp): the prompt's text and token
    ids, the end-of-sequence ids, the stop-string check and the completion text, so that two backends fed the same
    model and problems see the same tokens and judge their outputs by the same rules."""

    def __init__(self, tok, spec: PromptSpec, samples: int, temperature: float, seed: int, extra_eos=()):
        self.tok, self.spec, self.samples, self.temperature, self.seed = tok, spec, samples, temperature, seed
        self.eos_ids = self._end_ids(extra_eos)

    def _end_ids(self, extra_eos) -> set[int]:
        """End-of-sequence ids: the tokenizer's and the model's own (`extra_eos`: its generation config's), plus
        every stop string that the tokenizer writes as one special token (it would be skipped when the text is
        decoded)."""
        ids = {self.tok.eos_token_id, *extra_eos}
        special = set(self.tok.all_special_tokens)
        for s in self.spec.stop:
            if s in special:
                ids.add(self.tok.convert_tokens_to_ids(s))
        return {i for i in ids if i is not None}

    # --- prompts ---------------------------------------------------------------------------------------------------
    def _text(self, prompt: str | list[dict]) -> str:
        return prompt_text(self.tok, self.spec, prompt)

    def _encode(self, text: str) -> list[int]:
        return encode(self.tok, text)

    def prepare(self, items: list[Item], limit: int | None = None) -> None:
        """Tokenize every prompt up front, so that a prompt too long for the model (`limit` positions) is an input
        error."""
        for it in items:
            it.prompt_ids = self._encode(self._text(it.prompt))
            if limit and len(it.prompt_ids) + self.spec.max_new_tokens > limit:
                raise InputError(f"problem {it.id}: prompt of {len(it.prompt_ids)} tokens + {self.spec.max_new_tokens} "
                                 f"new tokens exceeds the model's {limit} positions",
                                 "use fewer --shots or a smaller --max-new-tokens")

    # --- generation ------------------------------------------------------------------------------------------------
    def _stopped(self, tokens: list[int]) -> bool:
        text = self.tok.decode(tokens, skip_special_tokens=True)
        return any(s in text for s in self.spec.stop)

    def _completion(self, tokens: list[int], finish: str) -> Completion:
        body = tokens[:-1] if finish == "eos" else tokens
        return Completion(cut_at_stop(self.tok.decode(body, skip_special_tokens=True), self.spec.stop), finish,
                          len(tokens))


class TransformersBackend(TokenizedBackend):
    def __init__(self, loaded: LoadedModel, spec: PromptSpec, batch_size: int, samples: int, temperature: float,
                 seed: int, ppl: bool):
        self.model = loaded.model
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        super().__init__(loaded.tokenizer, spec, samples, temperature, seed,
                         gen_eos if isinstance(gen_eos, list) else [gen_eos])
        self.ppl, self.batch_size = ppl, batch_size
        self.identity = {"backend": "transformers", **loaded.identity, "dtype": loaded.dtype,
                         "adapters": loaded.adapters}

    def prepare(self, items: list[Item], limit: int | None = None) -> None:
        super().prepare(items, limit or getattr(self.model.config, "max_position_embeddings", None))

    def _sampling(self, batch: list[Item]) -> list[RowSampling]:
        import torch

        rows = []
        for it in batch:
            rows.append(RowSampling())
            for j in range(self.samples):
                g = torch.Generator(device=self.model.device).manual_seed(sample_seed(self.seed, it.id, j))
                rows.append(RowSampling(self.temperature, g))
        return rows

    def run(self, items: list[Item], done: set[int], emit: Callable[[list[Result]], None]) -> None:
        """Decode the whole window in one continuous batch (longest prompts first) and emit each problem as soon
        as its completions are done. A window with any problem missing is decoded whole, so that a resumed
        window has exactly the schedule, and so the numbers, of an uninterrupted one."""
        order = sorted(items, key=lambda it: (-len(it.prompt_ids), it.id))
        last = time.perf_counter()

        def finished(i: int, rows) -> None:
            nonlocal last
            it = order[i]
            if it.id in done:
                return
            texts = [self._completion(g.tokens, g.finish) for g in rows]
            result = Result(it.id, texts[0], texts[1:], prompt_tokens=len(it.prompt_ids))
            # the time since the previous problem: the shares add up to the decoding wall time
            result.gen_seconds = time.perf_counter() - last
            if self.ppl:
                result.gold_nll, result.gold_tokens = self.gold_nll(it)
            last = time.perf_counter()
            emit([result])

        generate(self.model, [it.prompt_ids for it in order], max_new_tokens=self.spec.max_new_tokens,
                 eos_ids=self.eos_ids, stopped=self._stopped, sampling=self._sampling(order),
                 copies=1 + self.samples, max_rows=self.batch_size, on_finish=finished)

    # --- the base model's representation of a problem (what --route's router reads) ------------------------------
    def represent(self, items: list[Item]):
        """(problems x hidden) array: each problem's own prompt (its question through the preset, without shots) as
        the base model reads it, every adapter disabled: the last hidden state, mean-pooled over the prompt."""
        import contextlib

        import numpy as np
        import torch

        disable = getattr(self.model, "disable_adapter", None)
        rows = []
        with torch.inference_mode(), (disable() if disable else contextlib.nullcontext()):
            for it in items:
                ids = self._encode(self._text(build_prompt(self.spec, it.question, [])))
                out = self.model(input_ids=torch.tensor([ids], device=self.model.device), output_hidden_states=True,
                                 logits_to_keep=1)
                rows.append(out.hidden_states[-1][0].float().mean(0).cpu().numpy())
        return np.stack(rows)

    # --- perplexity of the gold solutions --------------------------------------------------------------------------
    def gold_nll(self, item: Item) -> tuple[float, int]:
        """(summed NLL, tokens) of the problem's gold solution, given its prompt as the model saw it."""
        import torch

        target = self._encode(gold_target(self.spec, item.solution))
        ids = torch.tensor([item.prompt_ids + target], device=self.model.device)
        with torch.inference_mode():
            # logits of the token before the solution and of all its tokens but the last
            logits = self.model(input_ids=ids, logits_to_keep=len(target) + 1).logits[0, :-1].float()
        picked = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(target, device=ids.device)[:, None])
        return float(-picked.sum()), len(target)

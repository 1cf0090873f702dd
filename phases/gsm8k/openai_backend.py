"""The OpenAI-compatible backend (vLLM, llama.cpp's server, TGI, OpenAI): completion presets go to
/completions, chat presets to /chat/completions, at most `concurrency` problems in flight.

A request that fails for a reason that can pass (no connection, a timeout, HTTP 408/409/429/5xx) is retried with
exponential backoff and jitter; when the retries are spent the run fails (exit 1) after the problems already
answered are written, so `--resume` continues from there. The API key is read from the environment variable
named by --api-key-env, sent only in the Authorization header, and scrubbed from every error message: it is
never logged or written."""

from __future__ import annotations

import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable

from phases.core.errors import RunFailed
from phases.gsm8k.items import Completion, Item, Result, cut_at_stop, sample_seed
from phases.gsm8k.prompts import PromptSpec

RETRY_STATUS = {408, 409, 429}
MAX_STOPS = 4  # the OpenAI API accepts at most four stop strings; the rest are cut here


class _Transient(Exception):
    """A failure worth retrying."""


class OpenAIBackend:
    def __init__(self, api_base: str, model: str, spec: PromptSpec, *, api_key: str | None, concurrency: int,
                 max_retries: int, retry_backoff: float, timeout: float, samples: int, temperature: float,
                 seed: int, extra_body: dict):
        self.base = api_base.rstrip("/")
        self.model, self.spec, self.key = model, spec, api_key
        self.concurrency, self.max_retries, self.backoff = concurrency, max_retries, retry_backoff
        self.timeout = timeout
        self.samples, self.temperature, self.seed, self.extra = samples, temperature, seed, extra_body
        self._jitter = random.Random()  # jitter only: never touches what is evaluated
        self.identity = {"backend": "openai", "model": model, "served": self._served_model()}

    # --- HTTP ------------------------------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return text.replace(self.key, "***") if self.key else text

    def _once(self, path: str, body: dict | None) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method="POST" if data else "GET")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = self._scrub(e.read().decode("utf-8", "replace")[:300])
            if e.code in RETRY_STATUS or e.code >= 500:
                raise _Transient(f"HTTP {e.code}: {detail}") from None
            raise RunFailed(f"{self.base}{path}: the server refused the request (HTTP {e.code}: {detail})",
                            "check --model, --api-base, the key in --api-key-env and --extra-body") from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)  # URLError wraps the socket's error
            raise _Transient(self._scrub(f"{type(reason).__name__}: {reason}")) from None
        except json.JSONDecodeError as e:
            raise _Transient(f"the answer is not JSON ({e.msg})") from None

    def request(self, path: str, body: dict | None = None) -> dict:
        for attempt in range(self.max_retries + 1):
            try:
                return self._once(path, body)
            except _Transient as e:
                last = str(e)
                if attempt < self.max_retries:
                    time.sleep(self.backoff * 2 ** attempt * (1 + 0.25 * self._jitter.random()))
        raise RunFailed(f"{self.base}{path}: no answer after {self.max_retries + 1} attempts (last: {last})",
                        "check that the server is up; the problems already answered are kept: continue with "
                        "--resume RUN_DIR")

    def _served_model(self) -> dict | None:
        """The server's entry for the model (from /models), recorded as the model's identity. This first request is
        made before any run folder exists: when the server does not answer it, there is nothing to resume."""
        try:
            listing = self.request("/models")
        except RunFailed as e:
            raise RunFailed(e.message, "check that the server is up and that --api-base is its OpenAI-compatible "
                                       "root (e.g. http://127.0.0.1:8000/v1); no run folder was written") from None
        for entry in listing.get("data", []) if isinstance(listing, dict) else []:
            if isinstance(entry, dict) and entry.get("id") == self.model:
                return {k: entry[k] for k in ("id", "owned_by") if k in entry}
        return None

    # --- completions -----------------------------------------------------------------------------------------------
    def _complete(self, item: Item, temperature: float, seed: int | None) -> tuple[Completion, int | None]:
        body = {"model": self.model, "max_tokens": self.spec.max_new_tokens, "temperature": temperature,
                "stop": list(self.spec.stop[:MAX_STOPS]), **self.extra}
        if seed is not None:
            body["seed"] = seed
        chat = isinstance(item.prompt, list)
        body["messages" if chat else "prompt"] = item.prompt
        answer = self.request("/chat/completions" if chat else "/completions", body)
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"] if chat else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise RunFailed(f"{self.base}: an answer without choices[0] text ({str(answer)[:200]})",
                            "point --api-base at an OpenAI-compatible server (its /v1 root)") from None
        usage = answer.get("usage") or {}
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        return (Completion(cut_at_stop(text or "", self.spec.stop), finish, usage.get("completion_tokens")),
                usage.get("prompt_tokens"))

    def _one(self, item: Item) -> Result:
        greedy, prompt_tokens = self._complete(item, 0.0, None)
        samples = [self._complete(item, self.temperature, sample_seed(self.seed, item.id, j) % 2**31)[0]
                   for j in range(self.samples)]
        return Result(item.id, greedy, samples, prompt_tokens=prompt_tokens)

    def run(self, items: list[Item], done: set[int], emit: Callable[[list[Result]], None]) -> None:
        todo = [it for it in items if it.id not in done]
        last, failure = time.perf_counter(), None
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            pending = {pool.submit(self._one, it) for it in todo}
            while pending:
                ready, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in ready:
                    if fut.cancelled():  # never started: the run is failing
                        continue
                    try:
                        r = fut.result()
                    except RunFailed as e:
                        failure = failure or e
                        for f in pending:
                            f.cancel()
                        continue
                    # the time since the previous answer: the shares add up to the wall time
                    now = time.perf_counter()
                    r.gen_seconds, last = now - last, now
                    emit([r])
        if failure is not None:
            raise failure

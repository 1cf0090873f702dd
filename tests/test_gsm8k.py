"""eval-gsm8k on real GSM8K problems with the real small LLM (SmolLM2-135M-Instruct, GGUF, from ../shared/models):
outputs and checkpoints, resume after kill -9, compare on two real runs, maj@k and perplexity, LoRA adapters made
with peft, the openai backend against a real llama.cpp server, and bad input.

The model is loaded once per module; runs made in this process get a copy of it (`preloaded`), runs of the
installed `nlab` load it themselves."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import nlab_executable, serving_copies
from phases.core.stats import mcnemar_exact, wilson_interval
from phases.core.voting import majority_vote
from phases.gsm8k.extract import canonical

ACC_KEYS = ("n", "strict_acc", "strict_acc_low", "strict_acc_high", "strict_n_correct", "flexible_acc",
            "flexible_acc_low", "flexible_acc_high", "flexible_n_correct", "strict_invalid", "flexible_invalid",
            "finished_by_length", "completion_tokens", "prompt_tokens_mean")


@pytest.fixture(scope="module")
def loaded(gguf):
    import torch

    from phases.gsm8k.models import load_model

    return load_model(str(gguf), "auto", torch.device("cpu"))


@pytest.fixture(scope="module")
def preloaded(loaded, gguf):
    """Runs of the shared model (dtype auto) in this process get a copy of the module's model."""
    with serving_copies(loaded, gguf, "auto"):
        yield


def invoke(*args: str) -> tuple[int, str, str]:
    """eval-gsm8k in this process: (exit code, stdout, stderr with its line wrapping undone)."""
    from typer.testing import CliRunner

    from nlab_cli.main import app

    result = CliRunner().invoke(app, ["eval-gsm8k", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


def evaluate(gguf, out: Path, *args: str) -> dict:
    code, stdout, stderr = invoke("--model", str(gguf), "--out", str(out), "--json", *args)
    assert code == 0, stderr
    return json.loads(stdout)


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "predictions.jsonl").read_text().splitlines()]


def history(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "history.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(gguf, preloaded, tmp_path_factory) -> dict:
    """Two real runs on test problems 2-4: the chat preset and the lm-eval preset. Which problems each solves
    depends on the CPU's rounding (bf16 on AMX and on AVX-512 differ), so tests derive their expectations from the
    runs' own records."""
    root = tmp_path_factory.mktemp("gsm8k-runs")
    common = ("--offset", "2", "--n", "3", "--checkpoint-every", "2")
    return {"chat": evaluate(gguf, root / "chat", "--preset", "chat", "--max-new-tokens", "128", *common),
            "lm-eval": evaluate(gguf, root / "lm-eval", "--preset", "lm-eval", "--max-new-tokens", "48", *common)}


# --- outputs ---------------------------------------------------------------------------------------------------------
def test_outputs_of_a_real_run(runs, gguf, loaded):
    m = runs["lm-eval"]
    recs = records(m["run_dir"])
    assert sorted(r["id"] for r in recs) == [2, 3, 4]
    for r in recs:
        assert set(r) >= {"id", "target", "prediction", "correct", "strict", "flexible", "strict_correct",
                          "flexible_correct", "completion", "finish", "prompt_tokens", "completion_tokens", "shots"}
        assert r["prediction"] == canonical(r["strict"]) and r["correct"] == r["strict_correct"]  # lm-eval's primary: strict
        assert len(r["shots"]) == 5 and r["prompt_tokens"] > 500 and 1 <= r["completion_tokens"] <= 48
        assert "Question:" not in r["completion"]  # cut at the stop string
    test = (Path(os.environ["NLAB_DATA_DIR"]) / "gsm8k" / "test.jsonl").read_text().splitlines()
    assert all(r["target"] == json.loads(test[r["id"]])["answer"].split("####")[-1].strip() for r in recs)
    correct = sum(r["strict_correct"] for r in recs)
    assert m["strict_acc"] == correct / 3 and m["n"] == 3 and m["primary"] == "strict_acc"
    assert (m["strict_acc_low"], m["strict_acc_high"]) == pytest.approx(wilson_interval(correct, 3))
    assert m["completion_tokens"] == sum(r["completion_tokens"] for r in recs)
    assert m["tokens_per_s"] == pytest.approx(m["completion_tokens"] / sum(r["gen_seconds"] for r in recs))
    assert m["problems_per_min"] > 0 and m["preset"] == "lm-eval" and m["shots"] == 5
    assert m["template"]["question_template"] == "Question: {question}\nAnswer:"
    assert "#### " in m["extractor"]["strict"]
    assert m["model"]["kind"] == "gguf" and m["model"]["sha256"] == loaded.identity["sha256"]
    # auto: bf16 where the CPU computes it natively (AVX512-BF16 or AMX), else float32
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    native_bf16 = any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))
    assert m["model"]["dtype"] == ("bfloat16" if native_bf16 else "float32")
    manifest = json.loads((Path(m["run_dir"]) / "manifest.json").read_text())
    assert manifest["status"] == "completed"


def test_checkpoints_every_k_in_dataset_order(runs):
    for m in runs.values():
        recs = {r["id"]: r for r in records(m["run_dir"])}
        points = history(m["run_dir"])
        assert [p["step"] for p in points] == [2, 3]  # every 2 problems, and the last
        for p in points:
            first = [recs[i] for i in range(2, 2 + p["step"])]
            for ext in ("strict", "flexible"):
                correct = sum(r[f"{ext}_correct"] for r in first)
                assert p[f"{ext}_acc"] == correct / p["step"]
                assert (p[f"{ext}_acc_low"], p[f"{ext}_acc_high"]) == pytest.approx(wilson_interval(correct, p["step"]))
            assert p["split"] == "test" and p["task"] == "gsm8k"


# --- compare ---------------------------------------------------------------------------------------------------------
def test_compare_two_real_runs(runs, tmp_path):
    a, b = runs["chat"]["run_dir"], runs["lm-eval"]["run_dir"]
    code, stdout, stderr = invoke("--compare", a, b, "--out", str(tmp_path / "cmp"), "--json")
    assert code == 0, stderr
    m = json.loads(stdout)
    ra, rb = {r["id"]: r for r in records(a)}, {r["id"]: r for r in records(b)}
    for ext in ("strict", "flexible"):
        only_a = [i for i in sorted(ra) if ra[i][f"{ext}_correct"] and not rb[i][f"{ext}_correct"]]
        only_b = [i for i in sorted(ra) if rb[i][f"{ext}_correct"] and not ra[i][f"{ext}_correct"]]
        assert m[f"{ext}_ids_only_a"] == only_a and m[f"{ext}_ids_only_b"] == only_b
        assert m[f"{ext}_mcnemar_p"] == mcnemar_exact(len(only_a), len(only_b))
        assert m[f"{ext}_beyond_noise"] is False  # 3 problems cannot show a difference
    assert m["strict_solved_only_by_a"] == len(m["strict_ids_only_a"]) and m["primary"] == "strict_mcnemar_p"
    assert m["strict_solved_only_by_b"] == len(m["strict_ids_only_b"])
    hist_a, hist_b = history(a), history(b)
    assert [p["step"] for p in m["checkpoints"]] == [2, 3]
    for point, pa, pb in zip(m["checkpoints"], hist_a, hist_b):
        assert point["strict_acc_a"] == pa["strict_acc"] and point["strict_acc_b"] == pb["strict_acc"]
    assert "only A" in stderr and "McNemar" in stderr
    # '-' reads the run folders from --json output on stdin
    piped = json.dumps({"run_dir": a}) + "\n" + json.dumps({"run_dir": b}) + "\n"
    from typer.testing import CliRunner

    from nlab_cli.main import app

    res = CliRunner().invoke(app, ["eval-gsm8k", "--compare", "-", "-", "--out", str(tmp_path / "cmp2"), "--json"],
                             input=piped)
    assert res.exit_code == 0 and json.loads(res.stdout)["run_a"] == m["run_a"]
    res = CliRunner().invoke(app, ["eval-gsm8k", "--compare", a, "-", "--out", str(tmp_path / "cmp3"), "--json"],
                             input=json.dumps({"run_dir": b}))
    assert res.exit_code == 0 and json.loads(res.stdout)["strict_mcnemar_p"] == m["strict_mcnemar_p"]


# --- resume ----------------------------------------------------------------------------------------------------------
def test_resume_after_kill_9_matches_an_uninterrupted_run(gguf, preloaded, tmp_path):
    args = ["--model", str(gguf), "--preset", "chat", "--n", "6", "--max-new-tokens", "32", "--checkpoint-every",
            "3", "--batch-size", "2"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([nlab_executable(), "eval-gsm8k", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    preds = killed / "predictions.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if preds.exists() and preds.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = records(killed)
    assert 1 <= len(before) < 6
    assert json.loads((killed / "manifest.json").read_text())["status"] == "running"  # kill -9 cannot be caught

    code, stdout, stderr = invoke("--resume", str(killed), "--json")
    assert code == 0, stderr
    resumed = json.loads(stdout)
    full = evaluate(gguf, tmp_path / "full", *args[2:])

    assert {k: resumed[k] for k in ACC_KEYS} == {k: full[k] for k in ACC_KEYS}
    after = records(killed)
    assert sorted(r["id"] for r in after) == list(range(6))  # nothing lost, nothing twice
    assert after[:len(before)] == before  # what was written before the kill is kept as it was
    uninterrupted = {r["id"]: r["completion"] for r in records(full["run_dir"])}
    assert {r["id"]: r["completion"] for r in after} == uninterrupted
    assert [p["step"] for p in history(killed)] == [3, 6] == [p["step"] for p in history(full["run_dir"])]
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["resumes"][0]["previous_status"] == "running"
    assert "resuming" in stderr

    # a resume with another preset or model is refused before anything is written
    for extra in (["--preset", "lm-eval"], ["--model", str(tmp_path / "other.gguf")], ["--n", "7"]):
        code, _, stderr = invoke("--resume", str(killed), *extra)
        assert code == 2 and "these differ" in stderr
    assert records(killed) == after


# --- maj@k and perplexity --------------------------------------------------------------------------------------------
def test_self_consistency_and_gold_perplexity(gguf, preloaded, loaded, tmp_path):
    args = ("--preset", "chat", "--n", "2", "--max-new-tokens", "24", "--samples", "3", "--temperature", "1.0",
            "--ppl")
    m = evaluate(gguf, tmp_path / "a", *args)
    recs = records(m["run_dir"])
    for r in recs:
        assert len(r["samples"]) == 3
        for ext in ("strict", "flexible"):
            answer, votes = majority_vote([canonical(s[ext]) for s in r["samples"]], tie_break="first")
            assert (r[f"{ext}_maj"], r[f"{ext}_maj_votes"]) == (answer, votes)
    assert m["samples"] == 3 and m["flexible_maj_acc"] == sum(r["flexible_maj_correct"] for r in recs) / 2
    texts = [s["completion"] for r in recs for s in r["samples"]]
    assert len(set(texts)) > 1  # sampled, not greedy
    assert m["completion_tokens"] == sum(r["completion_tokens"] + sum(s["tokens"] for s in r["samples"])
                                         for r in recs)
    # samples are seeded per problem: a second run draws the same ones
    again = records(evaluate(gguf, tmp_path / "b", *args)["run_dir"])
    assert [s["completion"] for r in again for s in r["samples"]] == texts

    # perplexity: the corpus-level exp(mean NLL per token), and one problem's NLL recomputed here
    nll, tokens = sum(r["gold_nll"] for r in recs), sum(r["gold_tokens"] for r in recs)
    assert m["gold_ppl"] == pytest.approx(math.exp(nll / tokens)) and 1 < m["gold_ppl"] < 100
    import torch

    tok, model = loaded.tokenizer, loaded.model
    problem = json.loads((Path(os.environ["NLAB_DATA_DIR"]) / "gsm8k" / "test.jsonl").open().readline())
    from phases.gsm8k.prompts import build_prompt, resolve_spec

    prompt = tok.apply_chat_template(build_prompt(resolve_spec("chat"), problem["question"], []), tokenize=False,
                                     add_generation_prompt=True)
    p_ids = tok(prompt, add_special_tokens=False).input_ids
    t_ids = tok(problem["answer"], add_special_tokens=False).input_ids
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([p_ids + t_ids])).logits[0].float()
    logp = torch.log_softmax(logits[len(p_ids) - 1:-1], -1)
    expected = -float(sum(logp[i, t] for i, t in enumerate(t_ids)))
    first = next(r for r in recs if r["id"] == 0)
    assert first["gold_tokens"] == len(t_ids) and first["gold_nll"] == pytest.approx(expected, rel=1e-3)


# --- LoRA adapters ---------------------------------------------------------------------------------------------------
def _train_adapter(loaded, out: Path, seed: int, steps: int = 3) -> Path:
    """A real LoRA adapter: a few AdamW steps of peft LoRA on GSM8K train solutions."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(copy.deepcopy(loaded.model), LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj",
                                                                                                       "v_proj"]))
    lines = (Path(os.environ["NLAB_DATA_DIR"]) / "gsm8k" / "train.jsonl").read_text().splitlines()
    texts = [json.loads(lines[i])["answer"] for i in range(seed * 2, seed * 2 + 2)]
    batch = loaded.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=96)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(str(out))
    return out


def _tiny_llama_adapter(out: Path) -> Path:
    """An adapter made on another base: a Llama of width 64 instead of 576."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    tiny = LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=4))
    get_peft_model(tiny, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(str(out))
    return out


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.filterwarnings("ignore:Could not find a config file:UserWarning")  # peft, saving a GGUF-loaded model
def test_lora_adapters_load_change_outputs_and_are_checked(gguf, preloaded, loaded, tmp_path, nlab_home):
    one = _train_adapter(loaded, tmp_path / "math-a", seed=1)
    two = _train_adapter(loaded, tmp_path / "math-b", seed=2)
    args = ("--preset", "chat", "--n", "2", "--max-new-tokens", "24")
    base = records(evaluate(gguf, tmp_path / "base", *args)["run_dir"])
    m = evaluate(gguf, tmp_path / "lora", *args, "--adapter", str(one))
    tuned = records(m["run_dir"])
    assert [r["completion"] for r in tuned] != [r["completion"] for r in base]
    (info,) = m["model"]["adapters"]
    assert info["name"] == "math-a" and info["active"] and info["r"] == 8 and len(info["weights_sha256"]) == 64
    assert m["adapter"] == "math-a"

    # several adapters, selected by name
    code, _, stderr = invoke("--model", str(gguf), *args, "--adapter", f"a={one}", "--adapter", f"b={two}")
    assert code == 2 and "--use-adapter" in stderr
    m2 = evaluate(gguf, tmp_path / "lora-b", *args, "--adapter", f"a={one}", "--adapter", f"b={two}",
                  "--use-adapter", "b")
    assert [a["name"] for a in m2["model"]["adapters"] if a["active"]] == ["b"] and m2["adapter"] == "b"
    assert [r["completion"] for r in records(m2["run_dir"])] != [r["completion"] for r in tuned]

    # an adapter made on another base model is refused, and nothing is written
    tiny = _tiny_llama_adapter(tmp_path / "tiny")
    code, _, stderr = invoke("--model", str(gguf), *args, "--adapter", str(tiny), "--out", str(tmp_path / "no"))
    assert code == 2 and "does not fit the model" in stderr and str(tiny) in stderr
    assert not (tmp_path / "no").exists() and not (nlab_home / "logs").exists()
    code, _, stderr = invoke("--model", str(gguf), *args, "--adapter", str(tmp_path))
    assert code == 2 and "not a peft adapter folder" in stderr


# --- the openai backend against a real llama.cpp server ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(gguf, tmp_path_factory):
    """`python -m llama_cpp.server` on 127.0.0.1, started and stopped (by its own PID) here."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make test installs it: the "
                                            "llamacpp extra)")
    port, folder = _free_port(), tmp_path_factory.mktemp("llama")
    pidfile, log = folder / "pid", open(folder / "server.log", "w")
    server = subprocess.Popen(["bash", "-c", f'echo $$ > {pidfile}; exec "{sys.executable}" -m llama_cpp.server '
                                             f'--model "{gguf}" --host 127.0.0.1 --port {port} --n_ctx 4096 '
                                             f'--verbose false'], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/models", timeout=1).read()
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                pytest.fail(f"llama_cpp.server did not come up: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
    pid = int(pidfile.read_text())
    assert pid == server.pid  # bash exec'd into the server: this PID is the server's python
    yield base
    os.kill(pid, signal.SIGTERM)
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
        server.wait()
    log.close()


class _FailAfter(BaseHTTPRequestHandler):
    """A proxy in front of the llama.cpp server that forwards the first `allowed` completions and then answers
    503 to everything (a server that breaks down mid-run)."""

    upstream, allowed, seen = "", 0, []

    def _relay(self, body: bytes | None) -> None:
        type(self).seen.append(self.path)
        completions = sum(p.endswith("completions") for p in type(self).seen)
        if self.path.endswith("completions") and completions > type(self).allowed:
            self.send_response(503)
            self.end_headers()
            return
        req = urllib.request.Request(type(self).upstream + self.path.removeprefix("/v1"), data=body,
                                     headers={"Content-Type": "application/json"})
        data = urllib.request.urlopen(req, timeout=60).read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self._relay(None)

    def do_POST(self):  # noqa: N802
        self._relay(self.rfile.read(int(self.headers["Content-Length"])))

    def log_message(self, *args):
        pass


def test_openai_backend_against_llama_cpp_server(gguf, llama_server, preloaded, tmp_path, monkeypatch):
    secret = "sk-nlab-test-secret-4242"
    monkeypatch.setenv("NLAB_TEST_KEY", secret)
    greedy = json.dumps({"top_k": 1, "repeat_penalty": 1.0})
    args = ("--preset", "chat", "--n", "3", "--max-new-tokens", "24")
    served = ("--backend", "openai", "--model", str(gguf), "--extra-body", greedy, "--api-key-env", "NLAB_TEST_KEY")
    code, stdout, stderr = invoke(*served, *args, "--api-base", llama_server, "--out", str(tmp_path / "oa"), "--json")
    assert code == 0, stderr
    m = json.loads(stdout)
    recs = records(m["run_dir"])
    assert sorted(r["id"] for r in recs) == [0, 1, 2] and m["backend"] == "openai"
    assert m["model"]["served"]["id"] == str(gguf)
    # the server saw the same prompt, token for token, as the transformers backend builds it
    local = {r["id"]: r for r in records(evaluate(gguf, tmp_path / "hf", *args)["run_dir"])}
    for r in recs:
        assert r["prompt_tokens"] == local[r["id"]]["prompt_tokens"]
        assert 1 <= r["completion_tokens"] <= 24 and r["completion"]
        # greedy on both sides: the same start (later tokens drift apart: llama.cpp computes on the Q4_1 blocks)
        assert os.path.commonprefix([r["completion"], local[r["id"]]["completion"]]).strip()
    # the key is never written or printed
    for f in Path(m["run_dir"]).iterdir():
        assert secret not in f.read_text()
    assert secret not in stdout + stderr

    # a server that breaks down mid-run: retries, exit 1, the answered problems kept; then resume elsewhere
    _FailAfter.upstream, _FailAfter.allowed, _FailAfter.seen = llama_server, 2, []
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _FailAfter)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    broken = tmp_path / "broken"
    try:
        code, _, stderr = invoke(*served, *args, "--api-base", f"http://127.0.0.1:{proxy.server_port}/v1",
                                 "--concurrency", "1", "--max-retries", "2", "--retry-backoff", "0.01",
                                 "--out", str(broken))
    finally:
        proxy.shutdown()
    assert code == 1 and "no answer after 3 attempts" in stderr and "--resume" in stderr
    assert sum(p.endswith("completions") for p in _FailAfter.seen) == 2 + 3  # two answered, one tried 3 times
    assert sorted(r["id"] for r in records(broken)) == [0, 1]
    manifest = json.loads((broken / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "no answer after 3 attempts" in manifest["exit_reason"]
    code, _, stderr = invoke("--resume", str(broken), "--api-base", llama_server)
    assert code == 0, stderr
    assert sorted(r["id"] for r in records(broken)) == [0, 1, 2]
    first = {r["id"]: r["completion"] for r in recs}
    assert {r["id"]: r["completion"] for r in records(broken)} == first  # greedy: the same text


def test_openai_backend_server_down(tmp_path):
    code, _, stderr = invoke("--backend", "openai", "--model", "m", "--api-base", f"http://127.0.0.1:{_free_port()}/v1",
                             "--max-retries", "1", "--retry-backoff", "0", "--n", "1", "--out", str(tmp_path / "x"))
    assert code == 1 and "no answer after 2 attempts" in stderr and "ConnectionRefusedError" in stderr


# --- bad input -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, names", [
    (["--preset", "lmeval"], "'--preset': Value error, 'lmeval'"),  # choices: click's error (lists them)
    (["--n", "1320"], "--n 1320"),
    (["--n", "10", "--offset", "1315"], "only 1319 problems"),
    (["--n", "0"], "--n 0"),
    (["--split", "dev"], "'--split': Value error, 'dev'"),
    (["--dtype", "float16"], "'--dtype': Value error, 'float16'"),
    (["--backend", "vllm"], "'--backend': Value error, 'vllm'"),
    (["--model", "no/such/place.gguf"], "no such .gguf file"),
    (["--model", "./missing-folder"], "no such file or folder"),
    (["--samples", "2", "--temperature", "0"], "--temperature 0"),
    (["--backend", "openai"], "--api-base None"),
    (["--backend", "openai", "--api-base", "http://127.0.0.1:1/v1", "--ppl"], "--ppl needs the transformers backend"),
    (["--backend", "openai", "--api-base", "http://127.0.0.1:1/v1", "--extra-body", "{top_k: 1}"], "--extra-body"),
    (["--api-base", "http://127.0.0.1:1/v1"], "--api-base only applies"),
    (["--shots", "-1"], "--shots -1"),
    (["--max-new-tokens", "0"], "--max-new-tokens 0"),
    (["--resume", "/nonexistent/run"], "--resume /nonexistent/run"),
    (["--data-dir", "/nonexistent/data"], "--data-dir /nonexistent/data"),
    (["--compare", "/nonexistent/a", "/nonexistent/b"], "/nonexistent/a"),
    (["--compare", "a", "b", "--preset", "chat"], "--compare takes no evaluation options"),
])
def test_bad_input_exit_2_and_nothing_written(cli, nlab_home, args, names):
    code, _, stderr = cli("eval-gsm8k", *args)
    assert code == 2, stderr
    assert names in " ".join(stderr.split())
    assert not (nlab_home / "logs").exists()


def test_bad_model_folder_file_and_template(cli, nlab_home, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, stderr = cli("eval-gsm8k", "--model", str(tmp_path / "empty"))
    assert code == 2 and "holds no model" in " ".join(stderr.split())
    (tmp_path / "noise.gguf").write_bytes(bytes(range(256)) * 8)
    code, _, stderr = cli("eval-gsm8k", "--model", str(tmp_path / "noise.gguf"), "--n", "1")
    assert code == 2 and "could not load a causal LM" in " ".join(stderr.split())
    template = tmp_path / "t.txt"
    template.write_text("Solve it.")
    code, _, stderr = cli("eval-gsm8k", "--template", str(template))
    assert code == 2 and "no {question} placeholder" in " ".join(stderr.split())
    assert not (nlab_home / "logs").exists()


def test_installed_nlab_rejects_bad_input(nlab, nlab_home):
    res = nlab("eval-gsm8k", "--preset", "nope", "--json")
    assert res.returncode == 2 and "'nope' is not one of" in res.stderr and res.stdout == ""
    assert not (nlab_home / "logs").exists()

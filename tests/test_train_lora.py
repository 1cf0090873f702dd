"""train-lora on the real SmolLM2-135M (the shared GGUF) and real GSM8K: what the loss counts, which examples each
step takes, a real fine-tune whose adapter eval-gsm8k loads and reproduces, exact resume after kill -9, the
non-finite stop, and the overfitting finding analyze-history must give on a train-lora run folder."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import nlab_executable, serving_copies

# a few steps, a handful of problems, short completions: the whole file stays within a few minutes on 2 cores
TINY = ["--max-steps", "4", "--eval-every", "2", "--val-n", "3", "--eval-max-new-tokens", "12", "--batch-size", "2",
        "--max-length", "320", "--log-every", "1", "--dtype", "float32"]


@pytest.fixture(scope="module")
def loaded(gguf):
    import torch

    from phases.gsm8k.models import load_model

    return load_model(str(gguf), "float32", torch.device("cpu"))


@pytest.fixture(scope="module")
def preloaded(loaded, gguf):
    """Runs in this process get a copy of the module's fp32 model instead of loading the GGUF again."""
    with serving_copies(loaded, gguf, "float32"):
        yield


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """The same thread count in this process and in the subprocesses, so their float sums agree bit for bit."""
    import torch

    monkeypatch.setenv("NLAB_NUM_THREADS", "1")
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def invoke(command: str, *args: str) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from nlab_cli.main import app

    result = CliRunner().invoke(app, [command, *args], catch_exceptions=False)
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


def train(gguf, out: Path, *args: str) -> dict:
    code, stdout, stderr = invoke("train-lora", "--model", str(gguf), "--out", str(out), "--json", *args)
    assert code == 0, stderr
    return json.loads(stdout)


def jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# --- what is trained on ------------------------------------------------------------------------------------------
def test_loss_counts_the_answer_tokens_only_and_the_prompt_is_the_evaluations(loaded, data_root):
    from phases.core.data import load
    from phases.gsm8k.hf_backend import TransformersBackend
    from phases.gsm8k.prompts import resolve_spec
    from phases.lora import data

    spec = resolve_spec("chat")
    problems = load("gsm8k", data_root)["train"][:3]
    shots = data.shots_for(spec, problems, 3, exclude_self=True)
    examples, too_long = data.encode_examples(loaded.tokenizer, spec, problems, shots, "train", 10**6)
    assert too_long == 0 and len(examples) == 3
    backend = TransformersBackend(loaded, spec, 1, 0, 0.0, 0, False)
    items = data.val_items(spec, problems, shots)
    backend.prepare(items)
    tok = loaded.tokenizer
    for ex, item, p in zip(examples, items, problems):
        assert list(ex.ids[:ex.n_prompt]) == item.prompt_ids  # the prompt exactly as eval-gsm8k encodes it
        labels = ex.labels
        assert all(x == -100 for x in labels[:ex.n_prompt]) and -100 not in labels[ex.n_prompt:]
        answer = tok.decode(ex.ids[ex.n_prompt:])
        assert answer == p.answer + "<|im_end|>"  # the solution, closed by the end of the assistant's turn
    # a limit shorter than an example leaves it out, and says so
    _, too_long = data.encode_examples(tok, spec, problems, shots, "train", len(examples[0].ids) - 1)
    assert too_long >= 1


def _examples(n: int, source: str, length) -> list:
    from phases.lora.data import Example

    return [Example(tuple(range(length(i))), 2, source, i) for i in range(n)]


def test_the_steps_examples_are_a_pure_function_of_the_step():
    from phases.lora.data import Plan, Stage

    train_ex = _examples(50, "train", lambda i: 5 + (i * 37) % 60)
    extra_ex = _examples(9, "extra", lambda i: 10 + i)
    stages = [Stage("100:0", 0, 20, 0.0), Stage("75:25", 20, 40, 0.25)]

    def plan(group=True):
        return Plan(train_ex, extra_ex, stages, 8, seed=3, group_by_length=group)

    a, b = plan(), plan()
    # any step, asked in any order or by a new plan (a resumed run), gets the same examples
    assert [a.examples(s) for s in range(40)] == [b.examples(s) for s in reversed(range(40))][::-1]
    assert all(len(a.examples(s)) == 8 for s in range(40))
    # no extra data in the first stage; the second stage's windows hold a quarter of extra examples
    assert not any(e.source == "extra" for s in range(20) for e in a.examples(s))
    extra = sum(e.source == "extra" for s in range(20, 40) for e in a.examples(s))
    assert extra == 20 * 2
    # every training example is seen once per epoch before any is seen twice
    seen = [e.index for s in range(6) for e in plan(False).examples(s) if e.source == "train"]
    assert sorted(seen[:48]) == sorted(set(seen[:48]))

    def padding(p) -> int:
        return sum(len(batch) * max(len(e.ids) for e in batch) - sum(len(e.ids) for e in batch)
                   for s in range(40) for batch in [p.examples(s)[i:i + 2] for i in range(0, 8, 2)])

    assert padding(plan(True)) < padding(plan(False))  # grouping by length pads less


def test_validation_is_carved_from_the_training_data_and_kept_out_of_extra_data(train_file, tmp_path):
    from phases.lora import data
    from phases.lora.config import TrainLoraConfig

    lines = train_file.read_text().splitlines()
    extra = tmp_path / "extra.jsonl"
    extra.write_text("\n".join(lines) + "\n")  # an export of --split train covers the validation problems too
    c = TrainLoraConfig(train_file=str(train_file), extra_file=str(extra), extra_ratio=0.2, val_n=5)
    p = data.read_problems(c)
    assert len(p.val) == 5 and len(p.train) == 35
    assert not {q.id for q in p.val} & {q.id for q in p.train}
    assert p.extra_held_out == 5 and len(p.extra) == 35
    assert not {q.question for q in p.val} & {q.question for q in p.extra}
    # the carve-out depends on --split-seed only, not on the training seed
    assert [q.id for q in data.read_problems(TrainLoraConfig(train_file=str(train_file), val_n=5, seed=7)).val] == \
        [q.id for q in p.val]


# --- a real fine-tune ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finetune(gguf, preloaded, tmp_path_factory) -> dict:
    """A real fine-tune: 4 steps at a high learning rate (so that the adapter visibly changes the outputs),
    evaluations at steps 0, 2 and 4, then the chosen adapter and the base model on 3 test problems."""
    out = tmp_path_factory.mktemp("lora") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLAB_NUM_THREADS", "1")
        return train(gguf, out, *TINY, "--lr", "3e-3", "--warmup", "0", "--test-n", "3")


def test_a_real_fine_tune_writes_an_honest_run_folder(finetune):
    m = finetune
    run = Path(m["run_dir"])
    hist = jsonl(run / "history.jsonl")
    assert [p["step"] for p in hist if p["split"] == "val"] == [0, 2, 4]
    assert [p["step"] for p in hist if p["split"] == "train"] == [1, 2, 3, 4]
    assert all(p["loss"] > 0 for p in hist)
    # the adapter of every evaluation, as a peft folder of safetensors
    for step in (0, 2, 4):
        folder = run / "checkpoints" / "adapters" / f"step-{step:06d}"
        assert {p.name for p in folder.iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}
    # the chosen adapter is the best trained one on validation (ties: the earliest), step 0 being the base model
    val = {r["step"]: r for r in m["evaluations"]}
    assert m["best_step"] in (2, 4) and val[m["best_step"]]["acc"] == max(val[2]["acc"], val[4]["acc"])
    assert m["best_adapter"] == f"adapters/step-{m['best_step']:06d}"
    assert m["val_n"] == 3 and m["val_base_acc"] == val[0]["acc"]
    assert len(jsonl(run / "val_predictions.jsonl")) == 3 * 3
    # the test split is touched once, at the end, with the base model on the same problems beside it
    assert m["primary"] == "test_acc" and m["test_n"] == 3
    assert m["test_vs_base"]["n_shared"] == 3 and "McNemar" in m["test_vs_base"]["verdict"]
    assert [r["id"] for r in jsonl(run / "predictions.jsonl")] == [0, 1, 2]
    assert (run / "accuracy_vs_steps.png").stat().st_size > 1000
    # the validation problems come from the training split and never from the test split
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["training_source"] == "gsm8k:train" and len(config["resolved"]["val_ids"]) == 3


def test_the_adapter_loads_in_eval_gsm8k_and_reproduces_its_outputs(finetune, gguf, tmp_path):
    """eval-gsm8k with the chosen adapter, in fp32 as trained, writes exactly the test completions train-lora
    wrote, and they are not the base model's."""
    run = Path(finetune["run_dir"])
    adapter = run / "checkpoints" / finetune["best_adapter"]
    code, stdout, stderr = invoke("eval-gsm8k", "--model", str(gguf), "--adapter", f"tuned={adapter}", "--dtype",
                                  "float32", "--preset", "chat", "--max-new-tokens", "12", "--n", "3", "--out",
                                  str(tmp_path / "eval"), "--json")
    assert code == 0, stderr
    evaluated = {r["id"]: r["completion"] for r in jsonl(tmp_path / "eval" / "predictions.jsonl")}
    tuned = {r["id"]: r["completion"] for r in jsonl(run / "predictions.jsonl")}
    base = {r["id"]: r["completion"] for r in jsonl(run / "base_test_predictions.jsonl")}
    assert evaluated == tuned
    assert tuned != base
    # a train-lora run folder compares with an eval-gsm8k one: its test predictions, labelled with its adapter
    code, stdout, stderr = invoke("eval-gsm8k", "--compare", str(run), str(tmp_path / "eval"), "--out",
                                  str(tmp_path / "cmp"), "--json")
    assert code == 0, stderr
    m = json.loads(stdout)
    assert m["n"] == 3 and m["split"] == "test"
    assert m["strict_acc_a"] == finetune["test_strict_acc"] == m["strict_acc_b"]
    assert m["strict_solved_only_by_a"] == m["strict_solved_only_by_b"] == 0
    assert finetune["best_adapter"] in m["label_a"] and "tuned" in m["label_b"]


@pytest.fixture(scope="module")
def train_file(data_root, tmp_path_factory) -> Path:
    """The first 40 GSM8K training problems as a --train-file (question/answer lines)."""
    lines = (data_root / "gsm8k" / "train.jsonl").read_text().splitlines()[:40]
    path = tmp_path_factory.mktemp("data") / "train40.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_resume_after_kill_9_equals_an_uninterrupted_run(gguf, preloaded, train_file, tmp_path):
    args = [*TINY, "--lr", "1e-3", "--train-file", str(train_file)]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([nlab_executable(), "train-lora", "--model", str(gguf), *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    hist = killed / "history.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # killed after step 3 was logged: past a checkpoint
        if hist.exists() and any(json.loads(x).get("step") == 3 for x in hist.read_text().splitlines()[:-1] + [""]
                                 if x):
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((killed / "manifest.json").read_text())["status"] == "running"

    code, stdout, stderr = invoke("train-lora", "--resume", str(killed), "--json")
    assert code == 0, stderr
    resumed = json.loads(stdout)
    full = train(gguf, tmp_path / "full", *args)

    def untimed(records):
        return [{k: v for k, v in r.items() if k != "gen_seconds"} for r in records]

    assert jsonl(killed / "history.jsonl") == jsonl(tmp_path / "full" / "history.jsonl")
    for step in (0, 2, 4):
        rel = f"checkpoints/adapters/step-{step:06d}/adapter_model.safetensors"
        assert (killed / rel).read_bytes() == (tmp_path / "full" / rel).read_bytes(), step
    assert untimed(jsonl(killed / "val_predictions.jsonl")) == untimed(jsonl(tmp_path / "full" / "val_predictions.jsonl"))
    assert resumed["evaluations"] == full["evaluations"] and resumed["best_step"] == full["best_step"]

    # a resume with other LoRA settings or another model is refused before anything is written
    before = (killed / "metrics.json").read_bytes()
    for extra in (["--r", "8"], ["--model", str(tmp_path / "other.gguf")], ["--target-modules", "q_proj"]):
        code, _, stderr = invoke("train-lora", "--resume", str(killed), *extra)
        assert code == 2 and ("these differ" in stderr or "completed" in stderr), stderr
    assert (killed / "metrics.json").read_bytes() == before

    # without --test-n a train-lora run has no test records to compare: exit 2, the fix named, nothing written
    code, _, stderr = invoke("eval-gsm8k", "--compare", str(killed), str(tmp_path / "full"), "--out",
                             str(tmp_path / "cmp"))
    assert code == 2 and "has no predictions.jsonl" in stderr and "--test-n" in stderr, stderr
    assert not (tmp_path / "cmp").exists()


def test_a_target_module_the_model_lacks_is_named_with_the_ones_it_has(gguf, preloaded, tmp_path, nlab_home):
    code, _, stderr = invoke("train-lora", "--model", str(gguf), "--target-modules", "q_proj,c_attn", *TINY,
                             "--out", str(tmp_path / "x"))
    assert code == 2 and "c_attn" in stderr and "gate_proj" in stderr, stderr
    assert not (tmp_path / "x").exists() and not (nlab_home / "logs").exists()


def test_a_diverged_run_fails_keeping_its_last_good_adapter(gguf, preloaded, tmp_path):
    code, _, stderr = invoke("train-lora", "--model", str(gguf), *TINY, "--lr", "1e30", "--warmup", "0",
                             "--grad-clip", "0", "--out", str(tmp_path / "run"))
    assert code == 1, stderr
    assert "non-finite loss" in stderr and "last good checkpoint (step" in stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert (tmp_path / "run" / "checkpoints" / "adapters" / "step-000000" / "adapter_model.safetensors").is_file()


# --- the lab's failure, seen by analyze-history --------------------------------------------------------------------
def test_analyze_history_flags_memorising_on_a_train_lora_run_folder(tmp_path):
    """The lab's 500 -> 1,000 steps: the training loss falls towards zero while validation accuracy falls. In a
    train-lora run folder (metrics.json names accuracy as its selection metric) the finding is on accuracy, even
    though the validation loss is logged too, and it names the step it began."""
    run = tmp_path / "run"
    run.mkdir()
    points = []
    for step, loss in zip(range(0, 1001, 100), [1.2, 0.8, 0.6, 0.4, 0.25, 0.12, 0.06, 0.03, 0.01, 0.006, 0.004]):
        points.append({"step": step, "split": "train", "loss": loss})
    for step, acc, vloss in [(0, 0.30, 1.3), (250, 0.52, 1.0), (500, 0.768, 0.95), (750, 0.75, 0.94),
                             (1000, 0.744, 0.94)]:
        points.append({"step": step, "split": "val", "acc": acc, "loss": vloss})
    (run / "history.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    (run / "metrics.json").write_text(json.dumps({"selection_metric": "acc", "primary": "val_acc", "val_acc": 0.768}))
    code, stdout, stderr = invoke("analyze-history", str(run), "--patience", "2", "--no-plot", "--json")
    assert code == 0, stderr
    found = [f for f in json.loads(stdout)["findings"] if f["kind"] == "overfitting"]
    assert len(found) == 1 and found[0]["value"] == 500, found
    assert "overfitting from step 500" in found[0]["text"] and "val_acc was best at 0.768" in found[0]["text"]
    # without the run's selection metric the validation loss (still falling here) shows no overfitting
    (run / "metrics.json").unlink()
    code, stdout, _ = invoke("analyze-history", str(run), "--patience", "2", "--no-plot", "--json")
    assert not [f for f in json.loads(stdout)["findings"] if f["kind"] == "overfitting"]

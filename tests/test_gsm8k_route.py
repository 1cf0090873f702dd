"""eval-gsm8k beyond GSM8K (issue 14): SST-2 and SCAN as question/answer text, --export of sampled solutions as
training lines (Phase 29a), and --route (LoRA adapters as experts, the oracle and a learned router; Phase 18), on
the real small LLM with real peft adapters. Which problems the model solves depends on the CPU's rounding, so the
tests derive their expectations from the runs' own records."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from phases.core.answers import same_answer
from phases.core.compare import paired_correctness
from phases.core.data import load
from phases.core.data.gsm8k import MathProblem, read_gsm8k_jsonl
from phases.core.stats import wilson_interval
from phases.gsm8k.extract import extract_both
from phases.gsm8k.prompts import default_preset, resolve_spec
from test_gsm8k import evaluate, invoke, loaded, preloaded, records  # noqa: F401 (fixtures shared)


# --- the question/answer datasets (no model) ------------------------------------------------------------------------
def test_qa_datasets_counts_finals_and_answer_rule():
    sst, scan = load("sst2-qa"), load("scan-qa")
    assert (len(sst["train"]), len(sst["test"])) == (67349, 872)  # test = SST-2's dev split
    assert (len(scan["train"]), len(scan["test"])) == (16728, 4182)  # SCAN's simple split
    raw = load("sst2")
    assert [p.final for p in sst["test"]] == [raw.classes[y] for y in raw.test_y]
    for split in (*sst.values(), *scan.values()):
        assert all(isinstance(p, MathProblem) for p in split[:50])
        assert [p.id for p in split[:50]] == list(range(50))
    p = sst["test"][0]
    assert p.answer == f"The sentiment is {p.final}.\n#### {p.final}" and p.final in ("positive", "negative")
    assert p.question.endswith(raw.test_x[0])
    q = scan["train"][0]
    assert q.answer == f"#### {q.final}" and q.final.startswith("I_") and q.question.startswith("Translate")
    # the one answer rule: case, a trailing '.', surrounding and repeated white space
    assert same_answer("Positive.", "positive") and same_answer(" I_JUMP  I_WALK ", "I_JUMP I_WALK")
    assert not same_answer("I_JUMP", "I_JUMP I_JUMP") and not same_answer("negative", "positive")
    # the default preset of each dataset, and their regexes on text finals
    assert [default_preset([d]) for d in ("gsm8k", "sst2-qa", "scan-qa")] == ["lm-eval", "sst2-qa", "scan-qa"]
    assert default_preset(["gsm8k", "scan-qa"]) == "qa" and default_preset(["sst2-qa"], chat=True) == "qa-chat"
    cases = {"sst2-qa": (" The sentiment is Positive.\n#### Positive", "positive"),
             "scan-qa": (" #### I_TURN_LEFT  I_JUMP.", "I_TURN_LEFT I_JUMP"),
             "qa": (" 3 + 4 = 7\n#### 7", "7"), "qa-chat": ("It is negative.\n#### negative", "negative")}
    for preset, (text, gold) in cases.items():
        spec = resolve_spec(preset)
        assert all(same_answer(x, gold) for x in extract_both(text, spec.strict_regex, spec.flexible_regex)), preset


# --- --export: sampled solutions as training lines ------------------------------------------------------------------
def test_export_sampled_solutions_as_training_lines(gguf, preloaded, tmp_path):
    from phases.gsm8k.export import solution_lines

    out = tmp_path / "sampled.jsonl"
    args = ("--dataset", "sst2-qa,scan-qa", "--split", "train", "--n", "2", "--shots", "2", "--max-new-tokens", "24",
            "--samples", "2", "--temperature", "1.0", "--export", str(out), "--export-filter", "correct")
    m = evaluate(gguf, tmp_path / "run", *args)
    recs = sorted(records(m["run_dir"]), key=lambda r: r["id"])
    assert [r["id"] for r in recs] == ["scan-qa:0", "scan-qa:1", "sst2-qa:0", "sst2-qa:1"]
    assert all(len(r["samples"]) == 2 for r in recs)

    lines = [json.loads(x) for x in out.read_text().splitlines()]
    back = read_gsm8k_jsonl(out) if lines else []  # training lines: what train-lora --train-file reads
    assert len(back) == len(lines) == m["export_lines"]
    assert all(line["correct"] and same_answer(p.final, recs_target(recs, line)) for p, line in zip(back, lines))
    assert m["export_correct"] + m["export_incorrect"] + m["export_skipped"] == 4 * 3  # greedy + 2 samples each
    assert m["export_lines"] == m["export_correct"]
    for line in lines:
        assert set(line) >= {"question", "answer", "source_id", "sample", "correct", "temperature", "model"}
        assert line["temperature"] == (0.0 if line["sample"] is None else 1.0)
        rec = next(r for r in recs if r["id"] == line["source_id"])
        completion = rec["completion"] if line["sample"] is None else rec["samples"][line["sample"]]["completion"]
        assert line["answer"].split("####")[0].strip() in completion

    # every solution is correct or incorrect: the filters partition what "all" exports
    data = {d: load(d) for d in ("sst2-qa", "scan-qa")}
    items = {r["id"]: _item(data, r["id"]) for r in recs}
    spec = resolve_spec("qa", shots=2, max_new_tokens=24)
    every = {w: solution_lines(recs, items, spec, w, "m", None, 1.0)[0] for w in ("all", "correct", "incorrect")}
    assert [x["answer"] for x in every["correct"]] == [x["answer"] for x in lines]
    assert not any(x["correct"] for x in every["incorrect"]) and all(x["correct"] for x in every["correct"])
    assert len(every["all"]) == len(every["correct"]) + len(every["incorrect"]) == 12 - m["export_skipped"]

    # a resumed run writes the export from predictions.jsonl at its end (here: nothing was left to decode)
    run_dir = Path(m["run_dir"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    (run_dir / "metrics.json").unlink()
    before = out.read_text()
    out.unlink()
    code, stdout, stderr = invoke("--resume", str(run_dir), "--json")
    assert code == 0, stderr
    assert out.read_text() == before and json.loads(stdout)["export_lines"] == m["export_lines"]


def recs_target(recs: list[dict], line: dict) -> str:
    return next(r["target"] for r in recs if r["id"] == line["source_id"])


def _item(data: dict, pid: str):
    from phases.gsm8k.items import Item

    dataset, index = pid.split(":")
    p = data[dataset]["train"][int(index)]
    return Item(pid, p.question, p.answer, p.final, [], "", dataset=dataset)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# --- --route: adapters as experts -----------------------------------------------------------------------------------
def _random_adapter(loaded, out: Path, seed: int) -> Path:
    """A real peft LoRA adapter with random (scaled down) B matrices, so that it changes the model's outputs
    without wrecking them."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(copy.deepcopy(loaded.model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                    init_lora_weights=False))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.3)
    model.save_pretrained(str(out))
    return out


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.filterwarnings("ignore:Could not find a config file:UserWarning")  # peft, saving a GGUF-loaded model
def test_route_oracle_router_and_resume(gguf, preloaded, loaded, tmp_path):
    a, b = _random_adapter(loaded, tmp_path / "a", 1), _random_adapter(loaded, tmp_path / "b", 2)
    args = ("--dataset", "sst2-qa,scan-qa", "--n", "2", "--shots", "2", "--max-new-tokens", "24", "--route", "all",
            "--router-train-n", "2", "--checkpoint-every", "2", "--adapter", f"a={a}", "--adapter", f"b={b}")
    m = evaluate(gguf, tmp_path / "route", *args)
    run_dir = Path(m["run_dir"])
    names = ["a", "b"]
    assert m["adapters"] == names and m["primary"] == "router_acc" and m["n"] == 4 and m["router_train_n"] == 4
    preds = records(run_dir)
    ids = [r["id"] for r in preds]
    assert ids == ["sst2-qa:0", "sst2-qa:1", "scan-qa:0", "scan-qa:1"]
    for name in names:  # every adapter on every problem, each pass in its own resumable file
        evaluated = {r["id"]: r for r in lines(run_dir / "adapters" / f"{name}.eval.jsonl")}
        assert sorted(evaluated) == sorted(ids)
        assert len(lines(run_dir / "adapters" / f"{name}.router-train.jsonl")) == 4
        assert all(p["adapters"][name]["correct"] == evaluated[p["id"]]["correct"] for p in preds)
        correct = sum(p["adapters"][name]["correct"] for p in preds)
        assert m[f"adapter_{name}_acc"] == correct / 4 and m[f"adapter_{name}_n_correct"] == correct
        assert (m[f"adapter_{name}_acc_low"], m[f"adapter_{name}_acc_high"]) == pytest.approx(
            wilson_interval(correct, 4))
        assert m["oracle_acc"] >= m[f"adapter_{name}_acc"]  # the oracle is at least every single adapter
    # the completions differ between the adapters (they are real, different experts)
    comp = {n: {r["id"]: r["completion"] for r in lines(run_dir / "adapters" / f"{n}.eval.jsonl")} for n in names}
    assert comp["a"] != comp["b"]

    oracle = {p["id"]: any(p["adapters"][n]["correct"] for n in names) for p in preds}
    assert all(p["oracle"] == oracle[p["id"]] and p["solved_by"] == [n for n in names if p["adapters"][n]["correct"]]
               for p in preds)
    assert m["oracle_n_correct"] == sum(oracle.values())
    router = {p["id"]: p["adapters"][p["route"]]["correct"] for p in preds}
    assert all(p["correct"] == router[p["id"]] and p["route"] in names and set(p["router_probs"]) == set(names)
               for p in preds)
    assert m["router_n_correct"] == sum(router.values()) and m["router_acc"] <= m["oracle_acc"]
    assert m["routing_n"] == sum(oracle.values())
    assert m["routing_n_correct"] == sum(router[i] for i in ids if oracle[i])
    assert m["oracle_gap"] == pytest.approx(m["oracle_acc"] - m["router_acc"])
    best = m["best_adapter"]
    assert m["best_adapter_acc"] == max(m[f"adapter_{n}_acc"] for n in names)
    paired = paired_correctness(router, {p["id"]: p["adapters"][best]["correct"] for p in preds})
    assert m["router_vs_best_mcnemar_p"] == paired["mcnemar_p"] and m["router_vs_best_diff"] == paired["diff"]
    assert set(m["per_dataset"]) == {"sst2-qa", "scan-qa"} and all(v["n"] == 2 for v in m["per_dataset"].values())
    assert m["per_adapter"]["a"]["n"] == 4
    # history points name the run's datasets as their task (analyze-history groups by it), not gsm8k
    assert {p["task"] for p in lines(run_dir / "history.jsonl")} == {"sst2-qa,scan-qa"}

    # resume after an interruption in adapter b's pass: only its missing window is decoded again
    passes = run_dir / "adapters" / "b.eval.jsonl"
    kept = passes.read_text().splitlines()[:3]
    passes.write_text("\n".join(kept) + "\n")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    for name in ("metrics.json", "predictions.jsonl"):
        (run_dir / name).unlink()
    code, stdout, stderr = invoke("--resume", str(run_dir), "--json")
    assert code == 0, stderr
    again = json.loads(stdout)
    assert "resuming b/eval: 3 of 4" in stderr
    assert records(run_dir) == preds
    timing = ("gen_seconds", "tokens_per_s", "problems_per_min", "per_adapter", "run_dir", "device")
    assert {k: v for k, v in again.items() if k not in timing} == {k: v for k, v in m.items() if k not in timing}
    assert len(lines(passes)) == 4

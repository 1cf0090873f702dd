"""eval-gsm8k --backend llamacpp: the shared GGUF run in-process by llama-cpp-python (the portable build of the test
lock) on real problems: the same prompt tokens as the transformers backend, records and metrics of the same shape,
samples that repeat under the same seed, a resume that neither loses nor repeats a problem, and the options it
cannot honour refused (exit 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="the llamacpp extra (in the test lock)")


def _evaluate(cli, gguf, out: Path, *args: str) -> dict:
    code, stdout, stderr = cli("eval-gsm8k", "--model", str(gguf), "--backend", "llamacpp", "--out", str(out),
                               "--json", *args)
    assert code == 0, stderr
    return json.loads(stdout)


def _records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "predictions.jsonl").read_text().splitlines()]


def test_real_run_records_samples_and_resume(cli, gguf, tmp_path):
    from phases.gsm8k.config import EvalConfig
    from phases.gsm8k.hf_backend import TokenizedBackend
    from phases.gsm8k.models import load_tokenizer
    from phases.gsm8k.phase import _items
    from phases.gsm8k.prompts import resolve_spec

    args = ("--preset", "chat", "--n", "3", "--max-new-tokens", "24", "--samples", "2", "--temperature", "1.0",
            "--checkpoint-every", "2")
    m = _evaluate(cli, gguf, tmp_path / "a", *args)
    assert m["model"]["backend"] == "llamacpp" and m["model"]["sha256"] and m["n"] == 3
    recs = _records(m["run_dir"])
    assert sorted(r["id"] for r in recs) == [0, 1, 2]
    # the prompts are tokenized as the transformers backend tokenizes them
    spec = resolve_spec("chat", max_new_tokens=24)
    items, _ = _items(EvalConfig(model=str(gguf), preset="chat", n=3), spec)
    TokenizedBackend(load_tokenizer(str(gguf)), spec, 0, 0.0, 0).prepare(items)
    for r, it in zip(sorted(recs, key=lambda r: r["id"]), items):
        assert r["prompt_tokens"] == len(it.prompt_ids)
        assert 1 <= r["completion_tokens"] <= 24 and r["finish"] in ("eos", "stop", "length")
        assert len(r["samples"]) == 2
    again = _evaluate(cli, gguf, tmp_path / "b", *args)
    assert [r["samples"] for r in _records(again["run_dir"])] == [r["samples"] for r in recs]  # seeded per sample
    assert [r["completion"] for r in _records(again["run_dir"])] == [r["completion"] for r in recs]

    # a run cut after its first window resumes to the same records, none twice
    cut = tmp_path / "cut"
    _evaluate(cli, gguf, cut, *args)
    lines = (cut / "predictions.jsonl").read_text().splitlines()
    (cut / "predictions.jsonl").write_text("\n".join(lines[:2]) + "\n")
    manifest = json.loads((cut / "manifest.json").read_text())
    (cut / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    (cut / "metrics.json").unlink()
    code, stdout, stderr = cli("eval-gsm8k", "--resume", str(cut), "--json")
    assert code == 0, stderr
    assert sorted(r["id"] for r in _records(cut)) == [0, 1, 2]
    assert {r["id"]: r["completion"] for r in _records(cut)} == {r["id"]: r["completion"] for r in recs}


@pytest.mark.parametrize("extra, named", [
    (["--ppl"], "--ppl"),
    (["--dtype", "float32"], "--dtype"),
    (["--device", "cuda"], "--device"),
    (["--adapter", "x=/nonexistent"], "--adapter"),
])
def test_options_it_cannot_honour_exit_2(cli, gguf, nlab_home, extra, named):
    code, out, err = cli("eval-gsm8k", "--model", str(gguf), "--backend", "llamacpp", "--n", "1", *extra)
    assert code == 2 and named in err and out == ""
    assert not (nlab_home / "logs").exists()


def test_a_model_that_is_not_a_gguf_file_exit_2(cli, tmp_path, nlab_home):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    code, _, err = cli("eval-gsm8k", "--model", str(folder), "--backend", "llamacpp", "--n", "1")
    assert code == 2 and ".gguf" in err
    assert not (nlab_home / "logs").exists()

"""eval-gsm8k against EleutherAI's lm-evaluation-harness (the tool a user would otherwise run) on the same GSM8K test
problems, back to back on this machine: wall time, peak memory, accuracy, and whether the completions are the same.

    python benchmarks/gsm8k_vs_lm_eval.py --lm-eval-python /path/to/venv/bin/python        # 64 problems
    python benchmarks/gsm8k_vs_lm_eval.py --lm-eval-python ... --systems lm-eval,nlab-fp32 --n 16

lm-eval runs in its own virtual environment (`pip install torch==2.13.0 lm-eval==0.4.13` and the lock's
transformers and gguf; it is not part of nlab's lock), as `python -m lm_eval --model hf` on the shared GGUF in
float32 at batch 8, its own `gsm8k` task read from the local data folder (a task file that includes the harness's
gsm8k.yaml and changes only where the data comes from: no hub here). Systems, each a separate process, timed from
start to exit (model loading included), peak RSS from the kernel (wait4):
- `lm-eval`: the harness, HF backend, float32, batch 8;
- `nlab-fp32`: `nlab eval-gsm8k --preset lm-eval --dtype float32 --batch-size 8`;
- `nlab-default`: `nlab eval-gsm8k --preset lm-eval` with its defaults (bf16 where the CPU computes it natively,
  else float32; batch 16);
- `nlab-llamacpp`: `nlab eval-gsm8k --preset lm-eval --backend llamacpp` (llama.cpp's quantised kernels).
"same as lm-eval" counts the problems whose completion text equals the harness's exactly; the llama.cpp row also
says how many equal `nlab-fp32`'s (the transformers float32 completions)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shared_model import DATA, DEFAULT_MODEL
NLAB = Path(sys.executable).parent / "nlab"

TASK = """include: {harness}/tasks/gsm8k/gsm8k.yaml
task: gsm8k_local
dataset_path: json
dataset_name: null
dataset_kwargs:
  data_files:
    train: {data}/gsm8k/train.jsonl
    test: {data}/gsm8k/test.jsonl
"""


def timed(argv: list[str], env: dict) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS in GB, exit code, stderr tail) of one process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err.seek(0)
        tail = err.read()[-3000:]
    return wall, usage.ru_maxrss / 1e6, os.waitstatus_to_exitcode(status), tail


def lm_eval(python: str, model: Path, n: int, out: Path, env: dict):
    harness = subprocess.run([python, "-c", "import lm_eval, os; print(os.path.dirname(lm_eval.__file__))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    tasks = out / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "gsm8k_local.yaml").write_text(TASK.format(harness=harness, data=DATA))
    argv = [python, "-m", "lm_eval", "--model", "hf", "--model_args",
            f"pretrained={model.parent},gguf_file={model.name},dtype=float32",
            "--tasks", "gsm8k_local", "--include_path", str(tasks), "--limit", str(n), "--batch_size", "8",
            "--device", "cpu", "--log_samples", "--output_path", str(out / "results")]
    wall, rss, code, tail = timed(argv, {**env, "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(out / "hf")})
    if code != 0:
        raise SystemExit(f"lm-eval failed ({code}):\n{tail}")
    samples = next((out / "results").rglob("samples_gsm8k_local_*.jsonl"))
    texts = {}
    for line in samples.read_text().splitlines():
        r = json.loads(line)
        texts[r["doc_id"]] = r["resps"][0][0]
    results = json.loads(next((out / "results").rglob("results_*.json")).read_text())["results"]["gsm8k_local"]
    return wall, rss, texts, results["exact_match,strict-match"], results["exact_match,flexible-extract"]


def nlab(model: Path, n: int, out: Path, env: dict, *options: str):
    argv = [str(NLAB), "eval-gsm8k", "--model", str(model), "--preset", "lm-eval", "--n", str(n), "--out", str(out),
            *options]
    wall, rss, code, tail = timed(argv, env)
    if code != 0:
        raise SystemExit(f"nlab {' '.join(options)} failed ({code}):\n{tail}")
    texts = {}
    for line in (out / "predictions.jsonl").read_text().splitlines():
        r = json.loads(line)
        texts[r["id"]] = r["completion"]
    m = json.loads((out / "metrics.json").read_text())
    return wall, rss, texts, m["strict_acc"], m["flexible_acc"], m["model"].get("dtype")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lm-eval-python", required=False, help="python of a virtual environment with lm-eval")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--systems", default="lm-eval,nlab-fp32,nlab-default,nlab-llamacpp")
    args = ap.parse_args()
    systems = args.systems.split(",")
    if "lm-eval" in systems and not args.lm_eval_python:
        ap.error("--lm-eval-python is needed for the lm-eval row")
    env = {**os.environ, "NLAB_DATA_DIR": str(DATA), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    print(f"{args.n} GSM8K test problems, lm-eval preset (5 shots), {args.model.name}, {os.cpu_count()} CPUs",
          flush=True)
    rows: dict[str, tuple] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for system in systems:
            out = Path(tmp) / system
            if system == "lm-eval":
                wall, rss, texts, strict, flexible = lm_eval(args.lm_eval_python, args.model, args.n, out, env)
                dtype = "float32"
            else:
                options = {"nlab-fp32": ("--dtype", "float32", "--batch-size", "8"), "nlab-default": (),
                           "nlab-llamacpp": ("--backend", "llamacpp")}[system]
                wall, rss, texts, strict, flexible, dtype = nlab(args.model, args.n, out, env, *options)
            rows[system] = (wall, rss, texts, strict, flexible, dtype)
            print(f"  {system}: {wall:.1f} s", flush=True)
    ref = rows.get("lm-eval")
    print(f"{'system':<14} {'dtype':<10} {'wall s':>8} {'vs lm-eval':>10} {'peak GB':>8} {'strict':>7} "
          f"{'flexible':>8} {'same as lm-eval':>15}")
    for system, (wall, rss, texts, strict, flexible, dtype) in rows.items():
        same = f"{sum(texts[i] == ref[2].get(i) for i in texts)}/{len(texts)}" if ref else "-"
        ratio = f"{ref[0] / wall:.2f}x" if ref else "-"
        print(f"{system:<14} {str(dtype)[:10]:<10} {wall:8.1f} {ratio:>10} {rss:8.2f} {strict:7.3f} {flexible:8.3f} "
              f"{same:>15}")
    if "nlab-llamacpp" in rows and "nlab-fp32" in rows:
        a, b = rows["nlab-llamacpp"][2], rows["nlab-fp32"][2]
        print(f"llama.cpp completions equal to the transformers float32 ones: {sum(a[i] == b.get(i) for i in a)}"
              f"/{len(a)}")


if __name__ == "__main__":
    main()

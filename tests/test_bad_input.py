"""A corpus of bad inputs over every command, as a careless or unlucky user would give them (issue 13): each one
exits 2 without a traceback, names the culprit (the option, the file or file:line) and leaves nothing on disk.

Bad files are written by the test (datasets in a --data-dir layout, histories, predictions, templates, run
folders); nothing trains. Choices and NaN/inf option values are tested in tests/test_options.py (32 bad numbers
and an invalid value for each of its 25 choice options, 57 cases); the 202 cases here are others. A server that
does not answer eval-gsm8k's first request is a failed run (exit 1), tested on its own at the end."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

# --- bad files --------------------------------------------------------------------------------------------------

LATIN1 = "caf\xe9 cr\xe8me".encode("latin-1")  # not UTF-8
BINARY = bytes(range(256)) * 4  # NUL bytes and everything else
SST2_HEAD = b"sentence\tlabel\n"
GOOD_SST2 = SST2_HEAD + b"a fine film\t1\na dull film\t0\n" * 20
GSM = {"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}
GOOD_GSM = (json.dumps(GSM) + "\n").encode() * 20
GOOD_TEXT = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40
SCAN_LINE = b"IN: jump twice OUT: I_JUMP I_JUMP\n"
SCAN_FILES = ("tasks_train_simple.txt", "tasks_test_simple.txt", "tasks_train_addprim_jump.txt",
              "tasks_test_addprim_jump.txt")
HIST = b'{"step": 1, "split": "train", "loss": 2.0}\n{"step": 2, "split": "train", "loss": 1.9}\n'
CSV_HEAD = b"step,epoch,train_loss,val_loss\n"
CSV_ROWS = b"1,0,2.0,\n2,0,1.9,2.1\n"


def _pred(i: int, probs=None, **extra) -> dict:
    return {"id": i, "target": i % 2, "prediction": i % 2, "correct": True,
            "probs": probs if probs is not None else [0.4, 0.6] if i % 2 else [0.6, 0.4], **extra}


def _preds(*records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


GOOD_PREDS = _preds(*(_pred(i) for i in range(4)))

# a data folder: {relative path: bytes}; a dataset's folder holds its good files unless the case replaces one
DATA = {
    "sst2_latin1": {"sst2/train.tsv": SST2_HEAD + b"fine\t1\n" + LATIN1 + b"\t0\n", "sst2/dev.tsv": GOOD_SST2},
    "sst2_binary": {"sst2/train.tsv": GOOD_SST2, "sst2/dev.tsv": BINARY},
    "sst2_badlabel": {"sst2/train.tsv": SST2_HEAD + b"fine\t1\nodd\t7\n", "sst2/dev.tsv": GOOD_SST2},
    "sst2_nohead": {"sst2/train.tsv": b"fine\t1\n", "sst2/dev.tsv": GOOD_SST2},
    "sst2_empty": {"sst2/train.tsv": b"", "sst2/dev.tsv": GOOD_SST2},
    "sst2_headonly": {"sst2/train.tsv": SST2_HEAD, "sst2/dev.tsv": GOOD_SST2},
    "shakes_latin1": {"tinyshakespeare/input.txt": GOOD_TEXT + LATIN1 + b"\n"},
    "shakes_binary": {"tinyshakespeare/input.txt": BINARY},
    "shakes_empty": {"tinyshakespeare/input.txt": b"\n\n"},
    "shakes_tiny": {"tinyshakespeare/input.txt": b"To be or not to be\n"},
    "wiki_latin1": {"wikitext2/valid.txt": GOOD_TEXT, "wikitext2/test.txt": b"ok\n" + LATIN1},
    "wiki_binary": {"wikitext2/valid.txt": BINARY, "wikitext2/test.txt": GOOD_TEXT},
    "gsm_latin1": {"gsm8k/train.jsonl": GOOD_GSM, "gsm8k/test.jsonl": GOOD_GSM + b'{"question": "' + LATIN1
                   + b'", "answer": "#### 1"}\n'},
    "gsm_binary": {"gsm8k/train.jsonl": BINARY, "gsm8k/test.jsonl": GOOD_GSM},
    "gsm_malformed": {"gsm8k/train.jsonl": GOOD_GSM, "gsm8k/test.jsonl": GOOD_GSM[:200] + b"\n{not json\n"},
    "gsm_nofinal": {"gsm8k/train.jsonl": GOOD_GSM, "gsm8k/test.jsonl": b'{"question": "q", "answer": "5"}\n'},
    "gsm_nofield": {"gsm8k/train.jsonl": b'{"question": "q"}\n', "gsm8k/test.jsonl": GOOD_GSM},
    "gsm_empty": {"gsm8k/train.jsonl": GOOD_GSM, "gsm8k/test.jsonl": b""},
    "gsm_small": {"gsm8k/train.jsonl": GOOD_GSM, "gsm8k/test.jsonl": GOOD_GSM[:len(GOOD_GSM) // 20 * 3]},
    "scan_latin1": {**{f"scan/{f}": SCAN_LINE * 3 for f in SCAN_FILES},
                    "scan/tasks_train_simple.txt": SCAN_LINE + b"IN: " + LATIN1 + b" OUT: I_RUN\n"},
    "scan_binary": {**{f"scan/{f}": SCAN_LINE * 3 for f in SCAN_FILES}, "scan/tasks_test_simple.txt": BINARY},
    "scan_malformed": {**{f"scan/{f}": SCAN_LINE * 3 for f in SCAN_FILES},
                       "scan/tasks_train_simple.txt": SCAN_LINE + b"jump twice -> I_JUMP I_JUMP\n"},
    "empty_dir": {},
}

# single files
FILES = {
    "hist_latin1.jsonl": HIST + b'{"step": 3, "split": "train", "note": "' + LATIN1 + b'", "loss": 1.8}\n',
    "hist_binary.jsonl": BINARY,
    "hist_good.jsonl": HIST,
    "hist_malformed.jsonl": HIST + b'{"step": 3, "loss": \n' + HIST,
    "hist_nan.jsonl": HIST + b'{"step": 3, "split": "train", "loss": NaN}\n',
    "hist_inf.jsonl": HIST + b'{"step": 3, "split": "train", "loss": -Infinity}\n',
    "hist_textloss.jsonl": HIST + b'{"step": 3, "split": "train", "loss": "n/a"}\n',
    "hist_badstep.jsonl": HIST + b'{"step": "three", "split": "train", "loss": 1.8}\n',
    "hist_array.jsonl": HIST + b"[1, 2, 3]\n" + HIST,
    "hist_nometric.jsonl": b'{"step": 1, "split": "train"}\n{"step": 2, "note": "x"}\n',
    "hist_empty.jsonl": b"",
    "metrics_latin1.csv": CSV_HEAD + CSV_ROWS + b"3,0," + LATIN1 + b",\n",
    "metrics_binary.csv": BINARY,
    "metrics_textloss.csv": CSV_HEAD + CSV_ROWS + b"3,0,oops,\n4,0,1.7,\n",
    "metrics_nan.csv": CSV_HEAD + CSV_ROWS + b"3,0,nan,\n",
    "metrics_inf.csv": CSV_HEAD + CSV_ROWS + b"3,0,,inf\n",
    "metrics_nostep.csv": b"train_loss,val_loss\n2.0,2.1\n",
    "metrics_fields.csv": CSV_HEAD + CSV_ROWS + b"3,0,1.8\n",
    "metrics_badstep.csv": CSV_HEAD + CSV_ROWS + b"x,0,1.8,\n",
    "metrics_headonly.csv": CSV_HEAD,
    "metrics_empty.csv": b"",
    "template_latin1.txt": b"Question: {question}\n" + LATIN1,
    "template_binary.json": BINARY,
    "template_malformed.json": b'{"shots": 2,\n "stop": [\n',
    "template_unknown.json": b'{"shots": 2, "colour": "blue"}\n',
    "template_list.json": b'["shots", 2]\n',
    "a_file": b"a regular file\n",
    "qa_good.jsonl": GOOD_GSM,
    "qa_malformed.jsonl": GOOD_GSM[:len(GOOD_GSM) // 20 * 2] + b'{"question": "q", "answer": \n',
    "qa_noanswer.jsonl": GOOD_GSM[:len(GOOD_GSM) // 20 * 2] + b'{"question": "What is 1 + 1?"}\n',
    "qa_nofinal.jsonl": b'{"question": "q", "answer": "it is 5"}\n',
}

# run folders: phase, config.json, and {file: bytes}
_SWEEP_CONFIG = {"phase": "train-moe", "phase_args": [], "seeds": 2, "seed_start": 0, "select": "val_acc",
                 "report": "test_acc"}
RUNS = {
    "moe_run": ("train-moe", {"dataset": "digits", "lr": 0.004}, {}),
    "apop_run": ("apoptosis", {"dataset": "tinyshakespeare", "n_embd": 128}, {}),
    "ewc_run": ("ewc", {"scenario": "permuted-digits"}, {}),
    "gsm_run": ("eval-gsm8k", {"n": 10}, {}),
    "sweep_run": ("seed-sweep", _SWEEP_CONFIG, {}),
    "history_run": ("analyze-history", {"inputs": []}, {}),
    "moe_config_latin1": ("train-moe", None, {"config.json": b'{"dataset": "' + LATIN1 + b'"}'}),
    "moe_config_malformed": ("train-moe", None, {"config.json": b'{"dataset": "digits",'}),
    "apop_manifest_binary": (None, {"dataset": "tinyshakespeare"}, {"manifest.json": BINARY}),
    "no_manifest": (None, None, {"notes.txt": b"hello\n"}),
    "member_a": ("train-moe", {}, {"predictions.jsonl": GOOD_PREDS}),
    "member_b": ("train-moe", {}, {"predictions.jsonl": GOOD_PREDS}),
    "member_apop": ("apoptosis", {}, {"predictions.jsonl": GOOD_PREDS}),
    "member_nopreds": ("train-moe", {}, {}),
    "member_latin1": ("train-moe", {}, {"predictions.jsonl": GOOD_PREDS + b'{"id": "' + LATIN1 + b'"}\n'}),
    "member_binary": ("train-moe", {}, {"predictions.jsonl": BINARY}),
    "member_malformed": ("train-moe", {}, {"predictions.jsonl": GOOD_PREDS[:60] + b"\n{oops\n" + GOOD_PREDS}),
    "member_noid": ("train-moe", {}, {"predictions.jsonl": _preds({"target": 1, "prediction": 1})}),
    "member_dupid": ("train-moe", {}, {"predictions.jsonl": GOOD_PREDS + _preds(_pred(0))}),
    "member_empty": ("train-moe", {}, {"predictions.jsonl": b""}),
    "member_nan": ("train-moe", {}, {"predictions.jsonl": GOOD_PREDS[:-1] + b"\n" + b'{"id": 9, "target": 1, '
                                     b'"prediction": 1, "probs": [NaN, 0.5]}\n'}),
    "member_inf": ("train-moe", {}, {"predictions.jsonl": _preds(_pred(0), _pred(1)).replace(b"0.4", b"Infinity", 1)
                                     + _preds(_pred(2), _pred(3))}),
    "member_textprob": ("train-moe", {}, {"predictions.jsonl": _preds(_pred(0), _pred(1), _pred(2, ["a", 0.5]),
                                                                      _pred(3))}),
    "member_negprob": ("train-moe", {}, {"predictions.jsonl": _preds(_pred(0), _pred(1, [-0.5, 1.5]), _pred(2),
                                                                     _pred(3))}),
    "member_noprobs": ("train-moe", {}, {"predictions.jsonl": _preds(*({"id": i, "target": 0, "prediction": 0}
                                                                       for i in range(4)))}),
    "member_other_items": ("train-moe", {}, {"predictions.jsonl": _preds(*(_pred(i) for i in range(1, 5)))}),
    "member_other_targets": ("train-moe", {}, {"predictions.jsonl": _preds(*({**_pred(i), "target": 1 - i % 2}
                                                                             for i in range(4)))}),
    "not_a_sweep": ("train-moe", {}, {"metrics.json": b'{"primary": "test_acc", "test_acc": 0.5}'}),
    "sweep_metrics_latin1": ("seed-sweep", _SWEEP_CONFIG, {"metrics.json": b'{"top_k": "' + LATIN1 + b'"}'}),
}

OUT_PROC = "/proc/nlab-bad-out"

# (command line, culprit named in the message); {name} is a bad file, data folder or run folder built for the case
CASES = [
    # --- train-moe -------------------------------------------------------------------------------------------------
    ("train-moe --dataset sst2 --data-dir {sst2_latin1}", "train.tsv:3"),
    ("train-moe --dataset sst2 --data-dir {sst2_binary}", "dev.tsv"),
    ("train-moe --dataset sst2 --data-dir {sst2_badlabel}", "train.tsv:3"),
    ("train-moe --dataset sst2 --data-dir {sst2_nohead}", "train.tsv:1"),
    ("train-moe --dataset sst2 --data-dir {sst2_empty}", "train.tsv"),
    ("train-moe --dataset sst2 --data-dir {sst2_headonly}", "train.tsv"),
    ("train-moe --dataset sst2 --data-dir {empty_dir}", "--data-dir"),
    ("train-moe --dataset cifar10 --data-dir {empty_dir}", "--data-dir"),
    ("train-moe --tasks digits,sst2 --data-dir {sst2_latin1}", "train.tsv:3"),
    ("train-moe --tasks digits,gsm8k", "--tasks 'gsm8k'"),
    ("train-moe --tasks digits,,sst2", "--tasks"),
    ("train-moe --tasks digits,digits", "--tasks"),
    ("train-moe --experts 99999999999", "--experts"),
    ("train-moe --expert-hidden 1000000000000", "--expert-hidden"),
    ("train-moe --d-model 10000000000", "--d-model"),
    ("train-moe --router deep --router-hidden 1000000000000", "--router-hidden"),
    ("train-moe --batch-size 1000000000000", "--batch-size"),
    ("train-moe --top-k 5 --experts 2", "--top-k"),
    ("train-moe --mask-layout 0-5/6-99 --tasks digits,sst2 --task-masks", "--mask-layout"),
    ("train-moe --train-limit 0", "--train-limit"),
    ("train-moe --epochs 0", "--epochs"),
    ("train-moe --out " + OUT_PROC, "--out"),
    ("train-moe --out {a_file}/sub", "--out"),
    ("train-moe --out {a_file}", "--out"),
    ("train-moe --resume {apop_run}", "apoptosis"),
    ("train-moe --resume {sweep_run}", "seed-sweep"),
    ("train-moe --resume {no_manifest}", "no_manifest"),
    ("train-moe --resume {moe_config_latin1}", "config.json:1"),
    ("train-moe --resume {moe_config_malformed}", "config.json:1"),
    ("train-moe --resume {moe_run} --out {empty_dir}", "--out"),
    ("train-moe --name a/b", "--name"),
    ("train-moe --grow-experts 4:x:2", "--grow-experts"),
    ("train-moe --grow-experts 2:3:1 --tasks digits,sst2 --task-masks --top-k 1", "--grow-experts"),
    ("train-moe --synthetic-labels -0.1", "--synthetic-labels"),
    ("train-moe --router-entropy-weight 50", "--router-entropy-weight"),
    # --- apoptosis -------------------------------------------------------------------------------------------------
    ("apoptosis --data-dir {shakes_latin1}", "input.txt:81"),
    ("apoptosis --data-dir {shakes_binary}", "input.txt"),
    ("apoptosis --data-dir {shakes_empty}", "input.txt"),
    ("apoptosis --data-dir {shakes_tiny}", "--block-size"),
    ("apoptosis --dataset wikitext2 --data-dir {wiki_latin1}", "test.txt:2"),
    ("apoptosis --dataset wikitext2 --data-dir {wiki_binary}", "valid.txt"),
    ("apoptosis --dataset wikitext2 --data-dir {shakes_latin1}", "--data-dir"),
    ("apoptosis --dataset sst2", "--dataset"),
    ("apoptosis --dataset gsm8k", "--dataset"),
    ("apoptosis --n-embd 1000000000", "--n-embd"),
    ("apoptosis --n-layer 100000000", "--n-layer"),
    ("apoptosis --batch-size 1000000000000", "--batch-size"),
    ("apoptosis --block-size 1000000000000", "--block-size"),
    ("apoptosis --strategy growth --max-width 1000000000000", "--max-width"),
    ("apoptosis --n-embd 130 --n-head 4", "--n-embd"),
    ("apoptosis --min-lr 0.01 --lr 0.001", "--min-lr"),
    ("apoptosis --strategy standard --interval 5000", "--interval"),
    ("apoptosis --strategy growth --max-width 10", "--max-width"),
    ("apoptosis --preservation-steps 5", "--preservation-steps"),
    ("apoptosis --out " + OUT_PROC, "--out"),
    ("apoptosis --out {a_file}/sub", "--out"),
    ("apoptosis --out /dev/null/run", "--out"),
    ("apoptosis --resume {moe_run}", "train-moe"),
    ("apoptosis --resume {ewc_run}", "'ewc'"),
    ("apoptosis --resume {apop_manifest_binary}", "manifest.json"),
    ("apoptosis --resume {a_file}", "a_file"),
    # --- ewc -------------------------------------------------------------------------------------------------------
    ("ewc --scenario scan --method naive --data-dir {scan_latin1}", "tasks_train_simple.txt:2"),
    ("ewc --scenario scan --method naive --data-dir {scan_binary}", "tasks_test_simple.txt"),
    ("ewc --scenario scan --method naive --data-dir {scan_malformed}", "tasks_train_simple.txt:2"),
    ("ewc --scenario shakespeare-wikitext --method naive --data-dir {shakes_binary}", "input.txt"),
    ("ewc --scenario moe-multitask --method naive --data-dir {sst2_latin1}", "train.tsv:3"),
    ("ewc --hidden 100000000000", "--hidden"),
    ("ewc --batch-size 1000000000000", "--batch-size"),
    ("ewc --scenario shakespeare-wikitext --n-embd 1000000000", "--n-embd"),
    ("ewc --method naive,naive", "--method"),
    ("ewc --method ,", "--method"),
    ("ewc --method mixed", "--method mixed"),
    ("ewc --scenario scan --model moe", "--model"),
    ("ewc --method replay --buffer-size 100000000", "--buffer-size"),
    ("ewc --out " + OUT_PROC, "--out"),
    ("ewc --out {a_file}/sub", "--out"),
    ("ewc --resume {apop_run}", "apoptosis"),
    ("ewc --resume {history_run}", "analyze-history"),
    # --- eval-gsm8k ------------------------------------------------------------------------------------------------
    ("eval-gsm8k --n 2 --data-dir {gsm_latin1}", "test.jsonl:21"),
    ("eval-gsm8k --n 2 --data-dir {gsm_binary}", "train.jsonl"),
    ("eval-gsm8k --n 2 --data-dir {gsm_malformed}", "test.jsonl:"),
    ("eval-gsm8k --n 2 --data-dir {gsm_nofinal}", "test.jsonl:1"),
    ("eval-gsm8k --n 2 --data-dir {gsm_nofield}", "train.jsonl:1"),
    ("eval-gsm8k --n 2 --data-dir {gsm_empty}", "test.jsonl"),
    ("eval-gsm8k --n 5 --data-dir {gsm_small}", "--n 5"),
    ("eval-gsm8k --n 2 --data-dir {empty_dir}", "--data-dir"),
    ("eval-gsm8k --n 2 --template {template_latin1.txt}", "template_latin1.txt:2"),
    ("eval-gsm8k --n 2 --template {template_binary.json}", "template_binary.json"),
    ("eval-gsm8k --n 2 --template {template_malformed.json}", "template_malformed.json:"),
    ("eval-gsm8k --n 2 --template {template_unknown.json}", "colour"),
    ("eval-gsm8k --n 2 --template {template_list.json}", "template_list.json"),
    ("eval-gsm8k --n 2 --template {empty_dir}/none.txt", "--template"),
    ("eval-gsm8k --n 2 --model {empty_dir}/none.gguf", "--model"),
    ("eval-gsm8k --n 2 --model {empty_dir}", "--model"),
    ("eval-gsm8k --n 2 --backend openai --model m --api-base 127.0.0.1:8000", "--api-base"),
    ("eval-gsm8k --n 2 --backend openai --model m --api-base http://x/v1 --extra-body {{", "--extra-body"),
    ("eval-gsm8k --n 2 --backend openai --model m --api-base http://x/v1 --extra-body [1]", "--extra-body"),
    ("eval-gsm8k --n 2 --api-base http://x/v1", "--api-base"),
    ("eval-gsm8k --n 2 --samples 3 --temperature 0", "--temperature"),
    ("eval-gsm8k --n 2 --out " + OUT_PROC, "--out"),
    ("eval-gsm8k --n 2 --out {a_file}/sub", "--out"),
    # question/answer domains, --export, --route (issue 14)
    ("eval-gsm8k --n 2 --dataset sst2", "--dataset 'sst2'"),
    ("eval-gsm8k --n 2 --dataset gsm8k,nosuch-qa", "--dataset 'nosuch-qa'"),
    ("eval-gsm8k --n 2 --dataset gsm8k,gsm8k", "named twice"),
    ("eval-gsm8k --n 900 --dataset sst2-qa", "only 872 problems"),
    ("eval-gsm8k --n 2 --dataset scan-qa --data-dir {empty_dir}", "--data-dir"),
    ("eval-gsm8k --n 2 --dataset sst2-qa --data-dir {gsm_small}", "sst2/train.tsv"),
    ("eval-gsm8k --n 2 --split train --export {empty_dir}/out.jsonl", "--samples"),
    ("eval-gsm8k --n 2 --samples 2 --export {empty_dir}/out.jsonl", "--split train"),
    ("eval-gsm8k --n 2 --split train --samples 2 --export {empty_dir}", "is a folder"),
    ("eval-gsm8k --n 2 --split train --samples 2 --export {a_file}/out.jsonl", "a_file is a file"),
    ("eval-gsm8k --n 2 --route all", "--route all: needs at least 2 adapters"),
    ("eval-gsm8k --n 2 --route router --adapter a={empty_dir}", "--route router: needs at least 2 adapters"),
    ("eval-gsm8k --n 2 --route oracle --adapter a={empty_dir} --adapter b={empty_dir}", "not a peft adapter"),
    ("eval-gsm8k --n 2 --route all --adapter a=x --adapter b=y --samples 2", "--samples"),
    ("eval-gsm8k --n 2 --route all --adapter a=x --adapter b=y --use-adapter a", "--use-adapter"),
    ("eval-gsm8k --n 2 --route all --adapter a=x --adapter b=y --router-train-n 0", "--router-train-n 0"),
    ("eval-gsm8k --n 2 --dataset scan-qa --route all --adapter a=x --adapter b=y --router-train-n 20000",
     "--router-train-n 20000"),
    ("eval-gsm8k --n 2 --route all --adapter a=x --adapter b=y --split train --samples 2 --export {empty_dir}/o.jsonl",
     "--export does not apply to --route"),
    ("eval-gsm8k --resume {moe_run}", "train-moe"),
    ("eval-gsm8k --resume {sweep_run}", "seed-sweep"),
    # --- train-lora ------------------------------------------------------------------------------------------------
    ("train-lora --train-file {qa_malformed.jsonl}", "qa_malformed.jsonl:3"),
    ("train-lora --train-file {qa_noanswer.jsonl}", "qa_noanswer.jsonl:3"),
    ("train-lora --train-file {qa_nofinal.jsonl}", "qa_nofinal.jsonl:1"),
    ("train-lora --train-file {empty_dir}/none.jsonl", "--train-file"),
    ("train-lora --train-file {qa_good.jsonl} --val-n 20", "--val-n 20"),
    ("train-lora --train-file {qa_good.jsonl} --dataset sst2", "--dataset"),
    ("train-lora --train-file {qa_good.jsonl} --val-n 2 --extra-file {qa_malformed.jsonl} --extra-ratio 0.3",
     "qa_malformed.jsonl:3"),
    ("train-lora --r 0", "--r 0"),
    ("train-lora --alpha 0", "--alpha 0"),
    ("train-lora --extra-ratio 1.0", "--extra-ratio 1.0"),
    ("train-lora --extra-ratio -0.1", "--extra-ratio -0.1"),
    ("train-lora --extra-ratio 0.2", "--extra-file"),
    ("train-lora --mix 100:0,70:30", "--extra-file"),
    ("train-lora --extra-file {qa_good.jsonl} --mix 100:0,70:20", "--mix"),
    ("train-lora --extra-file {qa_good.jsonl} --mix 100:0,70:30 --extra-ratio 0.2", "--extra-ratio"),
    ("train-lora --target-modules ,", "--target-modules"),
    ("train-lora --eval-every 500 --max-steps 200", "--eval-every 500"),
    ("train-lora --test-n 5 --val-n 2 --data-dir {gsm_small}", "--test-n 5"),
    ("train-lora --data-dir {gsm_malformed}", "test.jsonl:"),
    ("train-lora --model {empty_dir}/none.gguf --train-file {qa_good.jsonl} --val-n 2", "--model"),
    ("train-lora --resume {moe_run}", "train-moe"),
    ("train-lora --out " + OUT_PROC, "--out"),
    # --- seed-sweep ------------------------------------------------------------------------------------------------
    ("seed-sweep train-moe -- --epochs -4", "--epochs -4"),
    ("seed-sweep train-moe -- --lr nan", "--lr nan"),
    ("seed-sweep train-moe -- --experts 99999999999", "--experts"),
    ("seed-sweep train-moe -- --tasks digits,gsm8k", "--tasks"),
    ("seed-sweep apoptosis --select val_loss --report nosuch -- --max-iters -4", "--max-iters -4"),
    ("seed-sweep ewc --select x --report naive_bwt -- --gamma 2", "--gamma 2"),
    ("seed-sweep train-moe -- --no-such-option 3", "--no-such-option"),
    ("seed-sweep train-moe -- --dataset tinyshakespeare", "--dataset"),
    ("seed-sweep train-moe -- --seed 3", "--seed"),
    ("seed-sweep train-moe -- --out x", "--out"),
    ("seed-sweep train-moe --select nosuch", "--select nosuch"),
    ("seed-sweep train-moe --report nosuch", "--report nosuch"),
    ("seed-sweep apoptosis --select val_acc --report val_loss", "--select val_acc"),
    ("seed-sweep train-moe --select test_acc --report val_acc", "--select test_acc"),
    ("seed-sweep nosuch-phase", "nosuch-phase"),
    ("seed-sweep train-moe --seeds 1", "--seeds"),
    ("seed-sweep train-moe --seed-list 3,3", "--seed-list"),
    ("seed-sweep train-moe --seed-list a,b", "--seed-list"),
    ("seed-sweep train-moe --out " + OUT_PROC, "--out"),
    ("seed-sweep train-moe --out {a_file}/sub", "--out"),
    ("seed-sweep --resume {moe_run}", "train-moe"),
    ("seed-sweep --resume {no_manifest}", "no_manifest"),
    ("seed-sweep --resume {a_file}", "a_file"),
    ("seed-sweep --compare {moe_run} {sweep_run}", "moe_run"),
    # --- ensemble-vote ---------------------------------------------------------------------------------------------
    ("ensemble-vote {member_a} {member_latin1}", "member_latin1/predictions.jsonl:5"),
    ("ensemble-vote {member_a} {member_binary}", "member_binary/predictions.jsonl"),
    ("ensemble-vote {member_a} {member_malformed}", "member_malformed/predictions.jsonl:"),
    ("ensemble-vote {member_a} {member_noid}", "member_noid/predictions.jsonl:1"),
    ("ensemble-vote {member_a} {member_dupid}", "member_dupid/predictions.jsonl:5"),
    ("ensemble-vote {member_a} {member_empty}", "member_empty/predictions.jsonl"),
    ("ensemble-vote {member_a} {member_nopreds}", "member_nopreds"),
    ("ensemble-vote --method soft {member_a} {member_nan}", "member_nan/predictions.jsonl:5"),
    ("ensemble-vote --method soft {member_a} {member_inf}", "member_inf/predictions.jsonl:1"),
    ("ensemble-vote --method soft {member_a} {member_textprob}", "member_textprob/predictions.jsonl:3"),
    ("ensemble-vote --method soft {member_a} {member_negprob}", "member_negprob/predictions.jsonl:2"),
    ("ensemble-vote --method soft {member_a} {member_noprobs}", "probs"),
    ("ensemble-vote {member_a} {member_other_items}", "member_other_items"),
    ("ensemble-vote {member_a} {member_other_targets}", "member_other_targets"),
    ("ensemble-vote {member_a} {member_apop}", "member_apop"),
    ("ensemble-vote {member_a}", "1 run(s) given"),
    ("ensemble-vote {member_a} {member_a}", "the same run"),
    ("ensemble-vote {member_a} {no_manifest}", "no_manifest"),
    ("ensemble-vote {member_a} {apop_manifest_binary}", "apop_manifest_binary/manifest.json"),
    ("ensemble-vote --from-sweep {not_a_sweep}", "--from-sweep"),
    ("ensemble-vote --from-sweep {sweep_metrics_latin1}", "sweep_metrics_latin1/metrics.json:1"),
    ("ensemble-vote {member_a} {member_b} --out " + OUT_PROC, "--out"),
    ("ensemble-vote {member_a} {member_b} --out {a_file}/sub", "--out"),
    ("ensemble-vote {member_a} {member_b} --out {member_a}", "--out"),
    # --- analyze-history -------------------------------------------------------------------------------------------
    ("analyze-history {hist_latin1.jsonl}", "hist_latin1.jsonl:3"),
    ("analyze-history {hist_binary.jsonl}", "hist_binary.jsonl"),
    ("analyze-history {hist_malformed.jsonl}", "hist_malformed.jsonl:3"),
    ("analyze-history {hist_nan.jsonl}", "hist_nan.jsonl:3"),
    ("analyze-history {hist_inf.jsonl}", "hist_inf.jsonl:3"),
    ("analyze-history {hist_textloss.jsonl}", "hist_textloss.jsonl:3"),
    ("analyze-history {hist_badstep.jsonl}", "hist_badstep.jsonl:3"),
    ("analyze-history {hist_array.jsonl}", "hist_array.jsonl:3"),
    ("analyze-history {hist_nometric.jsonl}", "hist_nometric.jsonl"),
    ("analyze-history {hist_empty.jsonl}", "hist_empty.jsonl"),
    ("analyze-history {metrics_latin1.csv}", "metrics_latin1.csv:4"),
    ("analyze-history {metrics_binary.csv}", "metrics_binary.csv"),
    ("analyze-history {metrics_textloss.csv}", "metrics_textloss.csv:4"),
    ("analyze-history {metrics_nan.csv}", "metrics_nan.csv:4"),
    ("analyze-history {metrics_inf.csv}", "metrics_inf.csv:4"),
    ("analyze-history {metrics_nostep.csv}", "metrics_nostep.csv:1"),
    ("analyze-history {metrics_fields.csv}", "metrics_fields.csv:4"),
    ("analyze-history {metrics_badstep.csv}", "metrics_badstep.csv:4"),
    ("analyze-history {metrics_headonly.csv}", "metrics_headonly.csv"),
    ("analyze-history {metrics_empty.csv}", "metrics_empty.csv"),
    ("analyze-history {empty_dir}", "empty_dir"),
    ("analyze-history {empty_dir}/nosuch.jsonl", "nosuch.jsonl"),
    ("analyze-history {hist_good.jsonl} --loss-metric nosuch", "--loss-metric nosuch"),
    ("analyze-history {hist_good.jsonl} --val-metric loss", "--val-metric loss"),
    ("analyze-history {hist_good.jsonl} --val-split valid", "--val-split valid"),
    ("analyze-history {metrics_nostep.csv} --loss-metric nosuch", "metrics_nostep.csv:1"),
    ("analyze-history --skip-bad-lines {hist_nan.jsonl} --loss-metric nosuch", "--loss-metric nosuch"),
    ("analyze-history --skip-bad-lines {metrics_textloss.csv} --val-metric nosuch", "--val-metric nosuch"),
    ("analyze-history --skip-bad-lines {metrics_textloss.csv} --val-split nosuch --val-metric acc", "--val-split nosuch"),
    ("analyze-history {hist_nan.jsonl} --window 0", "--window 0"),
    ("analyze-history --skip-bad-lines {hist_nan.jsonl} --out " + OUT_PROC, "--out"),
    ("analyze-history --skip-bad-lines {hist_nan.jsonl} --out {a_file}/sub", "--out"),
    ("analyze-history --skip-bad-lines {hist_nan.jsonl} --name ../x", "--name"),
]

# stdin cases: (command line, stdin, culprit)
STDIN_CASES = [
    ("analyze-history -", "", "stdin is empty"),
    ("analyze-history -", "not json\n", "stdin: line 1"),
    ("analyze-history -", '{"metrics": 1}\n', "run_dir"),
    ("ensemble-vote -", "[1, 2]", "stdin"),
]

_FIELD = re.compile(r"\{([^{}]+)\}")


def _write_run(folder: Path, phase: str | None, config: dict | None, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True)
    if phase is not None:
        (folder / "manifest.json").write_text(json.dumps({"phase": phase, "run_id": folder.name, "status": "failed",
                                                          "checkpoint_dir": "checkpoints", "resumes": []}))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    for name, data in files.items():
        (folder / name).write_bytes(data)


def _build(name: str, root: Path) -> Path:
    """The bad file, data folder or run folder a case names, written under `root`."""
    target = root / name
    if target.exists():
        return target
    if name in DATA:
        target.mkdir()
        for rel, data in DATA[name].items():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            (target / rel).write_bytes(data)
    elif name in FILES:
        target.write_bytes(FILES[name])
    else:
        _write_run(target, *RUNS[name])
    return target


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under root with its content hash (a resume's `run.lock` is the lock's own file)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*")) if p.name != "run.lock"}


def _flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def _check(cli, tmp_path, nlab_home, line: str, culprit: str, stdin: str | None = None) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    built = {name: str(_build(name, inputs)) for name in _FIELD.findall(line + culprit)}
    # "{{" is a literal "{" (a value that is not JSON)
    argv = [_FIELD.sub(lambda m: built[m.group(1)], a).replace("\0", "{") for a in line.replace("{{", "\0").split()]
    before = _snapshot(tmp_path)
    code, out, err = cli(*argv, input=stdin)
    text = _flat(err)
    assert "Traceback" not in out + err, err
    assert code == 2, f"exit {code}: {err}"
    assert _FIELD.sub(lambda m: Path(built[m.group(1)]).name, culprit) in text, err
    assert "error" in text.lower(), err
    assert not (nlab_home / "logs").exists() and not (nlab_home / "checkpoints").exists(), err
    assert _snapshot(tmp_path) == before, err


@pytest.mark.parametrize("line, culprit", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_naming_the_culprit(cli, tmp_path, nlab_home, line, culprit):
    _check(cli, tmp_path, nlab_home, line, culprit)


@pytest.mark.parametrize("line, stdin, culprit", STDIN_CASES, ids=[f"{c[0]} <{c[1][:10]!r}" for c in STDIN_CASES])
def test_bad_stdin_exits_2(cli, tmp_path, nlab_home, line, stdin, culprit):
    _check(cli, tmp_path, nlab_home, line, culprit, stdin)


def test_corpus_size():
    assert len(CASES) + len(STDIN_CASES) >= 100
    assert {c[0].split()[0] for c in CASES} == {"train-moe", "apoptosis", "ewc", "eval-gsm8k", "seed-sweep",
                                                "ensemble-vote", "analyze-history", "train-lora"}


def test_skip_bad_lines_counts_a_non_numeric_loss(cli, tmp_path, nlab_home):
    for name in ("metrics_textloss.csv", "hist_textloss.jsonl", "hist_nan.jsonl"):
        code, out, err = cli("analyze-history", "--skip-bad-lines", "--no-plot", "--json", str(_build(name, tmp_path)))
        assert code == 0, err
        assert json.loads(out)["n_bad_lines"] == 1, name


def test_openai_first_request_does_not_suggest_resume(cli, nlab_home):
    """A server that never answered is a failed run (exit 1, as the README says), but there is no folder to resume:
    the hint points at the server and --api-base instead."""
    code, _, err = cli("eval-gsm8k", "--n", "2", "--backend", "openai", "--model", "m", "--api-base",
                       "http://127.0.0.1:1/v1", "--max-retries", "0")
    assert code == 1 and "--resume" not in err and "--api-base" in err and "no run folder" in err, err
    assert not (nlab_home / "logs").exists()

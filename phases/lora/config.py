"""Options of train-lora, with their documented defaults. Light to import: the CLI builds these (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phases.core.options import TrainingRunOptions, at_least, choice, in_range, positive
from phases.gsm8k.config import DTYPES, PRESETS

# the attention and MLP projections of Llama-style models (SmolLM2, Llama, Qwen, Mistral)
DEFAULT_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


@dataclass
class TrainLoraConfig(TrainingRunOptions):
    # model and adapter
    model: str = "HuggingFaceTB/SmolLM2-135M-Instruct"  # hub id, model folder or .gguf file (as eval-gsm8k)
    r: int = at_least(1, 16, "use a rank of at least 1, e.g. --r 16")
    alpha: float = positive(32.0)
    lora_dropout: float = in_range(0.05, 0, 1, hi_open=True)
    target_modules: str = DEFAULT_TARGETS  # comma-separated module names
    dtype: str = choice("auto", DTYPES)  # auto: bf16 autocast where the CPU/GPU computes it natively
    # data
    # a question/answer dataset (gsm8k, sst2-qa, scan-qa): its train split is trained on (unless --train-file), its
    # test split is --test-n's, and it picks the default preset
    dataset: str = "gsm8k"
    train_file: str | None = None  # JSONL of {"question", "answer"} lines, instead of --dataset's train split
    extra_file: str | None = None  # JSONL of extra {"question", "answer"} lines mixed in
    extra_ratio: float = in_range(0.0, 0, 1, hi_open=True)  # share of each batch drawn from --extra-file
    mix: str | None = None  # staged schedule "STEPS:RATIO,...", e.g. "100:0,100:0.3": extra share per stage
    preset: str | None = choice(None, PRESETS)  # prompt format, as eval-gsm8k; default: the dataset's chat preset
    max_length: int = at_least(16, 512)  # prompt + answer tokens; longer examples are left out (counted)
    val_n: int = at_least(1, 100)  # validation problems carved from the training data (never the test split)
    split_seed: int = 0  # which problems are validation: fixed by this seed, whatever --seed trains with
    # training
    max_steps: int = at_least(1, 200)
    batch_size: int = at_least(1, 4)
    grad_accum: int = at_least(1, 1)
    lr: float = positive(2e-4)
    min_lr: float = at_least(0, 2e-5)
    warmup: int = at_least(0, 20)
    weight_decay: float = at_least(0, 0.0)
    grad_clip: float = at_least(0, 1.0)  # 0: off
    group_by_length: bool = True  # batches of similar lengths, so padding does not dominate
    log_every: int = at_least(1, 10)
    # evaluation
    eval_every: int = at_least(1, 50)
    eval_max_new_tokens: int | None = at_least(1, None)  # default: the preset's (256)
    eval_batch_size: int = at_least(1, 16)
    test_n: int = at_least(0, 0)  # at the end: the adapter chosen on validation on this many test problems

    # what a resumed run may change: where it runs and reads, not what it computes
    resume_may_differ: ClassVar[tuple[str, ...]] = ("device", "data_dir")

    @property
    def targets(self) -> list[str]:
        return [t.strip() for t in self.target_modules.split(",") if t.strip()]

"""The LoRA adapter of train-lora: put onto the base model (loaded by eval-gsm8k's model code), its weights alone in
checkpoints (the base is never copied), and saved as a peft adapter folder (adapter_config.json +
adapter_model.safetensors) that `nlab eval-gsm8k --adapter` and peft load as they are."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from phases.core.errors import InputError


def linear_names(model) -> list[str]:
    """The names of the model's linear layers, as LoRA target modules (the last part of each module path)."""
    import torch.nn as nn

    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})


def add_lora(model, targets: list[str], r: int, alpha: float, dropout: float):
    """The model with a fresh LoRA adapter on `targets` (A random, B zero: at step 0 it is the base model)."""
    from peft import LoraConfig, get_peft_model

    have = linear_names(model)
    missing = [t for t in targets if t not in have]
    if missing or not targets:
        raise InputError(f"--target-modules {','.join(targets)}: the model has no module named "
                         f"{', '.join(missing) or '(none given)'}",
                         f"choose among its linear layers: {', '.join(have)}")
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none",
                     task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft asks transformers a deprecated question while wrapping
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        return get_peft_model(model, cfg)


class LoraWeights:
    """The adapter's weights as a module-like object for `save_state`/`restore_state`: a checkpoint holds these
    (a few MB), not the frozen base model."""

    def __init__(self, model):
        self.model = model

    def state_dict(self) -> dict:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(self.model, save_embedding_layers=False)
        return {k: v.detach().clone() for k, v in state.items()}

    def load_state_dict(self, state: dict) -> None:
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.model, state)
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise InputError(f"the checkpoint's adapter does not fit the model ({len(unexpected)} unexpected "
                             f"weights, e.g. {unexpected[0]})", "start a new run")


def save_adapter(model, folder: Path) -> Path:
    """The adapter as a peft folder, written atomically: into a temporary sibling, then renamed into place."""
    folder = Path(folder)
    tmp = folder.parent / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    # the adapter alone: LoRA never trains the embeddings here (and peft would look for the base's config.json to
    # decide, which a .gguf base has not)
    model.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=False)
    (tmp / "README.md").unlink(missing_ok=True)  # peft's empty model-card template: the run folder documents it
    if folder.exists():  # a resumed run writes the same step's adapter again
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def load_adapter_weights(model, folder: Path) -> None:
    """Load a saved adapter folder's weights into the model's (same-shaped) adapter."""
    from safetensors.torch import load_file

    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, load_file(str(Path(folder) / "adapter_model.safetensors")))

"""A .gguf file's model and tokenizer as transformers rebuilds them (weights dequantized to float32), kept on disk
after the first load, so that later loads read safetensors instead of converting again. Rebuilding the shared
SmolLM2-135M from its GGUF takes 20-40 s on 2 cores (the tokenizer alone 6-13 s); every eval-gsm8k and
train-lora run, and every test that starts nlab, paid it.

An entry is keyed by the file's sha256 and the transformers version (which does the conversion), written to a
temporary folder and renamed into place, so a half-written entry is never read. Files whose float32 weights would
pass `NLAB_GGUF_CACHE_MAX_GB` (default 4, i.e. GGUF files up to about 0.5 GB) are not cached. `NLAB_CACHE_DIR`
(default `$XDG_CACHE_HOME/nlab`, else `~/.cache/nlab`) says where; `NLAB_GGUF_CACHE=0` turns the cache off."""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

MARKER = "nlab-gguf-cache.json"
DEQUANTIZED_PER_FILE_BYTE = 8  # float32 weights take about 8 bytes per byte of a 4-bit GGUF file


def cache_root() -> Path:
    if os.environ.get("NLAB_CACHE_DIR"):
        return Path(os.environ["NLAB_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nlab"


def entry(gguf: Path, sha256: str) -> Path | None:
    """The folder this file's conversion is (or would be) kept in; None when caching is off or the file too big."""
    if os.environ.get("NLAB_GGUF_CACHE", "1") == "0":
        return None
    limit = float(os.environ.get("NLAB_GGUF_CACHE_MAX_GB", "4")) * 1e9
    if gguf.stat().st_size * DEQUANTIZED_PER_FILE_BYTE > limit:
        return None
    import transformers

    return cache_root() / "gguf" / f"{sha256[:24]}-transformers-{transformers.__version__}"


def ready(folder: Path | None) -> bool:
    return folder is not None and (folder / MARKER).is_file()


def store(folder: Path, model, tokenizer, gguf: Path, sha256: str) -> None:
    """Write the float32 model and the tokenizer next to `folder`, then rename into place. A cache that cannot be
    written (no space, read-only) only costs the next load its conversion: nothing is raised."""
    from safetensors.torch import save_model

    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        # transformers will not save_pretrained a model loaded from GGUF (its loader marks it quantized, though
        # the weights are plain dequantized tensors): the config without that mark, the weights, the tokenizer
        config = copy.deepcopy(model.config)
        config.__dict__.pop("quantization_config", None)
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))  # tied weights are written once
        tokenizer.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps({"gguf_file": gguf.name, "sha256": sha256}) + "\n")
        os.rename(tmp, folder)  # another process may have stored it first: then its entry stays
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

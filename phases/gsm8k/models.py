"""Loading the model under evaluation: a hub id, a local folder or a .gguf file, in the chosen dtype, with peft
LoRA adapters, and the identity that metrics.json records (what exactly was evaluated).

Everything here that can be the user's mistake (a path that does not exist, a folder without a model, an adapter
made for another base) raises InputError before any run folder is created."""

from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from phases.core.errors import InputError
from phases.core.jsonio import read_json
from phases.gsm8k.config import DTYPES

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "gguf", "folder" or "hub"
    location: str  # the folder holding the files, or the hub id
    gguf_file: str | None = None


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    dtype: str
    identity: dict
    adapters: list[dict] = field(default_factory=list)


def resolve_source(model: str) -> ModelSource:
    path = Path(model).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise InputError(f"--model {model}: no such .gguf file", "check the path")
        return ModelSource("gguf", str(path.resolve().parent), path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            hint = (f"pass the .gguf file itself, e.g. --model {path / ggufs[0]}" if ggufs else
                    "pass a folder saved with save_pretrained (config.json and weights), a .gguf file or a hub id")
            raise InputError(f"--model {model}: the folder holds no model (no config.json)", hint)
        return ModelSource("folder", str(path.resolve()))
    if path.exists():
        raise InputError(f"--model {model}: not a model (expected a folder, a .gguf file or a hub id)",
                         "pass a model folder, a .gguf file or a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct")
    if _HUB_ID.match(model):
        return ModelSource("hub", model)
    raise InputError(f"--model {model}: no such file or folder, and not a hub id (owner/name)", "check the path")


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic (AVX512-BF16 or AMX) on this CPU; without it bf16 is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def resolve_dtype(dtype: str, device) -> str:
    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype!r}: unknown", f"use one of: {', '.join(DTYPES)}")
    if dtype != "auto":
        return dtype
    import torch

    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device.type == "cpu":
        return "bfloat16" if cpu_has_bf16() else "float32"
    return "float32"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def _quiet_transformers():
    """transformers' progress bars and load-time notes would land in our stderr between our own lines (its GGUF
    reader uses tqdm directly, so that one bar is switched off where it is created)."""
    import transformers

    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        gguf_utils = None
    bar = getattr(gguf_utils, "tqdm", None)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if bar is not None:
        gguf_utils.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.utils.logging.enable_progress_bar()
        if bar is not None:
            gguf_utils.tqdm = bar


def identity(source: ModelSource, model, sha256: str | None = None) -> dict:
    out = {"kind": source.kind, "location": source.location}
    if source.kind == "gguf":
        out.update(gguf_file=source.gguf_file, sha256=sha256 or sha256_file(Path(source.location) / source.gguf_file))
    elif source.kind == "hub":
        out["revision"] = getattr(model.config, "_commit_hash", None)
    else:
        out["config_sha256"] = sha256_file(Path(source.location) / "config.json")
    out["architecture"] = (getattr(model.config, "architectures", None) or [type(model).__name__])[0]
    out["parameters"] = sum(p.numel() for p in model.parameters())
    return out


@contextmanager
def _load_errors(spec: str):
    """A model or tokenizer that cannot be loaded is the user's input error, named by its --model."""
    try:
        with _quiet_transformers():
            yield
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"--model {spec}: could not load a causal LM ({first})",
                         "check the id or path; hub ids need the network or a local cache") from None


def _gguf(source: ModelSource) -> tuple[Path, str, Path | None]:
    """A .gguf source's file, its sha256 and its conversion cache folder (phases/gsm8k/gguf_cache.py)."""
    from phases.gsm8k import gguf_cache

    path = Path(source.location) / source.gguf_file
    sha = sha256_file(path)
    return path, sha, gguf_cache.entry(path, sha)


def _tokenizer(location: str, **kwargs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(spec: str):
    """The model's tokenizer alone (from a .gguf file: the one transformers rebuilds from its metadata, or its
    cached conversion)."""
    from phases.gsm8k import gguf_cache

    source = resolve_source(spec)
    with _load_errors(spec):
        if source.kind == "gguf":
            _, _, cached = _gguf(source)
            if gguf_cache.ready(cached):
                try:
                    return _tokenizer(str(cached))
                except Exception:  # noqa: BLE001 - a damaged entry (any reader error): the file's own tokenizer
                    pass
            return _tokenizer(source.location, gguf_file=source.gguf_file)
        return _tokenizer(source.location)


def load_model(spec: str, dtype: str, device) -> LoadedModel:
    """The model in `dtype` on `device`, its tokenizer and identity. A .gguf file is converted by transformers
    (dequantized to float32) the first time and read from the conversion cache afterwards; the weights are the
    same either way (tested)."""
    import torch
    from transformers import AutoModelForCausalLM

    from phases.gsm8k import gguf_cache

    source = resolve_source(spec)
    resolved = resolve_dtype(dtype, device)
    sha = None
    with _load_errors(spec):
        if source.kind != "gguf":
            tokenizer = _tokenizer(source.location)
            model = AutoModelForCausalLM.from_pretrained(source.location, dtype=getattr(torch, resolved))
        else:
            path, sha, cached = _gguf(source)
            model = None
            if gguf_cache.ready(cached):
                try:
                    tokenizer = _tokenizer(str(cached))
                    model = AutoModelForCausalLM.from_pretrained(str(cached), dtype=getattr(torch, resolved))
                except Exception:  # noqa: BLE001 - a damaged entry (any reader error): convert the file again
                    model, cached = None, None
            if model is None:
                tokenizer = _tokenizer(source.location, gguf_file=source.gguf_file)
                # converted in float32 when it is to be cached (cast afterwards: the same weights as a direct load)
                model = AutoModelForCausalLM.from_pretrained(
                    source.location, gguf_file=source.gguf_file,
                    dtype=torch.float32 if cached is not None else getattr(torch, resolved))
                if cached is not None:
                    gguf_cache.store(cached, model, tokenizer, path, sha)
                    model = model.to(getattr(torch, resolved))
    model.to(device).eval()
    return LoadedModel(model, tokenizer, resolved, identity(source, model, sha))


def parse_adapters(specs: list[str]) -> list[tuple[str, Path]]:
    """`PATH` or `NAME=PATH` for each --adapter; the name defaults to the folder's name."""
    out: list[tuple[str, Path]] = []
    for s in specs:
        name, sep, path = s.partition("=")
        if not sep:
            name, path = Path(s).name, s
        p = Path(path).expanduser()
        if not (p / "adapter_config.json").is_file():
            raise InputError(f"--adapter {s}: {p} is not a peft adapter folder (no adapter_config.json)",
                             "pass a folder written by peft's save_pretrained")
        if not re.match(r"^[A-Za-z0-9][\w.-]*$", name) or name in [n for n, _ in out]:
            raise InputError(f"--adapter {s}: adapter name {name!r} is not a usable, unique name",
                             "give each adapter its own name with NAME=PATH (letters, digits, '.', '_', '-')")
        out.append((name, p.resolve()))
    return out


def _adapter_weights(path: Path) -> Path | None:
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if (path / name).is_file():
            return path / name
    return None


def apply_adapters(loaded: LoadedModel, adapters: list[tuple[str, Path]], use: str | None) -> str | None:
    """Load every adapter onto the model (peft), activate the one named `use` (or the only one), and record
    each adapter's identity. An adapter whose modules or shapes do not fit the model is rejected (exit 2)."""
    if not adapters:
        if use is not None:
            raise InputError(f"--use-adapter {use}: no --adapter was given", "add --adapter NAME=PATH")
        return None
    names = [n for n, _ in adapters]
    if use is None and len(adapters) > 1:
        raise InputError(f"{len(adapters)} adapters given ({', '.join(names)}) but none chosen",
                         "choose one with --use-adapter NAME")
    use = use if use is not None else names[0]
    if use not in names:
        raise InputError(f"--use-adapter {use}: no adapter of that name", f"choose one of: {', '.join(names)}")
    from peft import PeftModel

    model = loaded.model
    base_name = loaded.identity.get("location")
    for i, (name, path) in enumerate(adapters):
        cfg = read_json(path / "adapter_config.json", "--adapter config")
        weights = _adapter_weights(path)
        if weights is None:
            raise InputError(f"--adapter {path}: no adapter_model.safetensors or adapter_model.bin",
                             "pass a complete folder written by peft's save_pretrained")
        try:
            with _quiet_transformers(), _peft_errors_as_exceptions():
                if i == 0:
                    model = PeftModel.from_pretrained(model, str(path), adapter_name=name, is_trainable=False)
                else:
                    model.load_adapter(str(path), adapter_name=name, is_trainable=False)
        except (RuntimeError, ValueError, KeyError, UserWarning) as e:
            first = str(e).strip().splitlines()[0][:300]
            raise InputError(f"--adapter {path}: it does not fit the model {loaded.identity.get('location')} "
                             f"(its base: {cfg.get('base_model_name_or_path')}): {first}",
                             "use an adapter trained on this base model") from None
        loaded.adapters.append({"name": name, "path": str(path), "weights_sha256": sha256_file(weights),
                                "base_model": cfg.get("base_model_name_or_path"), "r": cfg.get("r"),
                                "target_modules": sorted(cfg.get("target_modules") or []), "active": name == use,
                                "same_base_name": cfg.get("base_model_name_or_path") in (base_name, None)})
    model.set_adapter(use)
    model.eval()
    loaded.model = model
    return use


@contextmanager
def _peft_errors_as_exceptions():
    """peft only warns when the model has LoRA slots the adapter has no weights for (an adapter made on a
    model of the same width but another depth); for an evaluation that is an adapter that does not fit."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("error", message="Found missing adapter keys", category=UserWarning)
        yield

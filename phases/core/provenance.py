"""What a result was obtained with: the locked dependency set, the CPU and the kernels torch dispatches to.

`make setup` installs a lock file from `locks/` and records it (`python -m phases.core.provenance record LOCK`),
which writes `<venv>/nlab-lock.json` and fails when the environment differs from the lock. Every run's manifest
then carries `environment()`: the lock's name and sha256 and whether the installed versions still equal it, the
CPU model and flags that change numerics (AVX-512, bf16, AMX) and `torch.backends.cpu.get_cpu_capability()`.
Two runs with the same lock hash and the same capability share a dependency set and a numeric path."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

RECORD = "nlab-lock.json"
# Installed outside the hashed locks (see locks/lock.sh), or the installers themselves.
OUTSIDE_LOCK = {"nlab", "torch", "llama-cpp-python", "pip"}
# CPU flags that decide which kernels (and so which float rounding) torch and llama.cpp use.
NUMERIC_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile",
                 "amx_bf16", "amx_int8")

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(lock: Path) -> dict[str, str]:
    """{normalised name: version} of every `name==version` line of a lock file."""
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        m = _PIN.match(line)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def installed() -> dict[str, str]:
    return {_norm(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def lock_differences(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    """Human-readable differences between a lock's pins and the installed packages (empty when they agree)."""
    out = [f"{n}: locked {v}, installed {have.get(n) or 'nothing'}" for n, v in sorted(pins.items())
           if have.get(n) != v]
    out += [f"{n}: installed {v}, not in the lock" for n, v in sorted(have.items())
            if n not in pins and n not in OUTSIDE_LOCK]
    return out


def _record_path() -> Path:
    return Path(sys.prefix) / RECORD


def lock_record() -> dict | None:
    """The lock `make setup` installed into this environment, and whether the environment still equals it."""
    try:
        rec = json.loads(_record_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    rec["matches"] = not lock_differences(rec.get("pins", {}), installed())
    rec.pop("pins", None)
    return rec


def cpu() -> dict:
    """CPU model, the flags that change numerics, and the instruction set torch's CPU kernels dispatch to."""
    model, flags = platform.processor() or None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    out = {"model": model, "machine": platform.machine(), "flags": [f for f in NUMERIC_FLAGS if f in flags],
           "amx": "amx_bf16" in flags}
    # Only once torch is loaded (phases that compute call Run.set_device, which records it again): importing
    # torch just for this would cost a second in the phases that never use it.
    torch = sys.modules.get("torch")
    out["torch_capability"] = torch.backends.cpu.get_cpu_capability() if torch is not None else None
    return out


def environment() -> dict:
    """The manifest's record of the dependency set and the numeric path of a run."""
    return {"lock": lock_record(), "cpu": cpu()}


def record(locks: list[Path]) -> None:
    """Write `<venv>/nlab-lock.json` for the locks just installed; exit 1 when the environment differs from them.
    The recorded sha256 covers the lock files in the order given."""
    pins, digest = {}, hashlib.sha256()
    for lock in locks:
        pins.update(lock_pins(lock))
        digest.update(lock.read_bytes())
    problems = lock_differences(pins, installed())
    if problems:
        print(f"the environment {sys.prefix} differs from {', '.join(map(str, locks))}:", *problems[:20],
              sep="\n  ", file=sys.stderr)
        print("recreate it: make clean, then make setup (or make setup-test)", file=sys.stderr)
        raise SystemExit(1)
    rec = {"files": [f"{p.parent.name}/{p.name}" for p in locks], "sha256": digest.hexdigest(),
           "packages": len(pins), "pins": pins}
    _record_path().write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
    print(f"environment equals {' + '.join(rec['files'])} ({len(pins)} locked packages, sha256 "
          f"{rec['sha256'][:12]})", file=sys.stderr)


def diff(locks: list[Path]) -> None:
    """Print how this environment differs from the locks (`make test-latest`); never fails."""
    pins = {k: v for lock in locks for k, v in lock_pins(lock).items()}
    problems = lock_differences(pins, installed())
    print(f"{len(problems)} difference(s) from {' + '.join(map(str, locks))}", *problems, sep="\n  ")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("record", "diff"):
        raise SystemExit("usage: python -m phases.core.provenance record|diff LOCKFILE...")
    (record if sys.argv[1] == "record" else diff)([Path(a) for a in sys.argv[2:]])

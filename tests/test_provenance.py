"""The lock files, the environment they install, and the provenance every run's manifest records."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from phases.core import provenance

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "locks"
# installed outside the hashed locks, from pins of their own (locks/lock.sh says why)
OWN_PINS = {"torch", "torchvision", "llama-cpp-python"}


def _requirements(extras: list[str]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


@pytest.mark.parametrize("lock, extras", [("default.txt", []), ("test.txt", ["test", "distributed", "llamacpp"])])
def test_lock_pins_every_requirement_within_pyproject_bounds(lock, extras):
    pins = provenance.lock_pins(LOCKS / lock)
    for req in _requirements(extras):
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in OWN_PINS:
            continue
        assert name in pins, f"{req.name} is in pyproject.toml but not in locks/{lock}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"locks/{lock} pins {name}=={pins[name]}, outside pyproject's {req.specifier}: run `make lock`"
    assert not OWN_PINS & set(pins)  # torch's build is the machine's; llama-cpp-python is built from its source lock


def test_every_locked_package_has_a_hash_and_default_is_a_subset_of_test():
    for lock in ("default.txt", "test.txt", "llamacpp-source.txt", "build-llamacpp.txt"):
        text = (LOCKS / lock).read_text()
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
        pinned = [b for b in blocks if provenance._PIN.match(b)]
        assert pinned and all("--hash=sha256:" in b for b in pinned), lock
    default, test = provenance.lock_pins(LOCKS / "default.txt"), provenance.lock_pins(LOCKS / "test.txt")
    assert {k: test.get(k) for k in default} == default


def test_lock_differences_names_each_mismatch():
    pins = {"numpy": "2.0.0", "rich": "15.0.0"}
    have = {"numpy": "2.1.0", "rich": "15.0.0", "torch": "2.13.0", "stray": "1.0", "nlab": "0.1.0"}
    assert provenance.lock_differences(pins, have) == ["numpy: locked 2.0.0, installed 2.1.0",
                                                       "stray: installed 1.0, not in the lock"]
    assert provenance.lock_differences({"gone": "1"}, {}) == ["gone: locked 1, installed nothing"]
    assert provenance.lock_differences(pins, {"numpy": "2.0.0", "rich": "15.0.0"}) == []


def _recorded() -> dict:
    path = Path(sys.prefix) / provenance.RECORD
    if not path.is_file():
        pytest.fail(f"{path} is missing: this environment was not set up from the locks (run `make test`)")
    return json.loads(path.read_text())


def test_this_environment_equals_the_recorded_lock():
    rec = _recorded()
    digest = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in rec["files"])).hexdigest()
    assert rec["sha256"] == digest, "the locks changed since .venv was set up: run `make test` again"
    assert provenance.lock_differences(rec["pins"], provenance.installed()) == []
    assert provenance.lock_record()["matches"] is True


def test_llama_cpp_is_the_portable_build():
    rec = _recorded()
    if "locks/test.txt" not in rec["files"]:
        pytest.fail("the test extras are not installed: run `make test`")
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    # portable flags (see the Makefile): AVX2 and FMA compiled in, nothing of AVX-512 or AMX, whatever CPU built it
    assert re.search(r"AVX2 = 1", info) and re.search(r"FMA = 1", info), info
    assert not re.search(r"(AVX512\w* = 1|AMX\w* = 1)", info), info


def test_manifest_records_lock_cpu_and_dispatch(cli, nlab_home):
    code, stdout, stderr = cli("train-moe", "--epochs", "1", "--train-limit", "200", "--json")
    assert code == 0, stderr
    manifest = json.loads((Path(json.loads(stdout)["run_dir"]) / "manifest.json").read_text())
    env = manifest["environment"]
    assert env["lock"]["sha256"] == _recorded()["sha256"] and env["lock"]["matches"] is True
    import torch

    assert env["cpu"]["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    flags = Path("/proc/cpuinfo").read_text().split()
    assert env["cpu"]["amx"] == ("amx_bf16" in flags)
    assert set(env["cpu"]["flags"]) == {f for f in provenance.NUMERIC_FLAGS if f in flags}

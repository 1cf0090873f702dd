#!/usr/bin/env bash
# Regenerates the lock files with uv (`make lock`). Each lock pins every package of one install set, transitive
# ones included, to an exact version with hashes, for Linux x86-64 and Python 3.11 (the machines nlab is tested
# on). Two packages are installed outside the hashed locks, each from a pin kept here:
#  - torch: its wheel depends on the machine (the CPU build here, a CUDA build elsewhere); constraints.txt pins
#    the version, and the locks are resolved against the CPU wheel's metadata so that no CUDA package enters;
#  - llama-cpp-python: built from its hash-checked source with portable CPU flags (see the Makefile), so its
#    source has a lock of its own, llamacpp-source.txt, and its build tools another, build-llamacpp.txt.
set -euo pipefail
cd "$(dirname "$0")"
UV=${UV:-uv}
TORCH=$(sed -n 's/^torch==//p' ../constraints.txt)
# Where the CPU wheel of torch is found: pip's find-links on machines that keep it on disk, else PyTorch's CPU index.
TORCH_FIND_LINKS=${TORCH_FIND_LINKS:-$(pip config get global.find-links 2>/dev/null || echo https://download.pytorch.org/whl/cpu/torch/)}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# uv keeps the pins of an existing output file where they still satisfy pyproject.toml, so adding a package does
# not move every other one; `make lock UPGRADE=1` starts from nothing and takes the newest releases.
if [ -z "${UPGRADE:-}" ]; then cp test.txt default.txt llamacpp-source.txt build-llamacpp.txt "$tmp"/ 2>/dev/null || true; fi
# Replace a lock only when its content changed: make rebuilds .venv (and llama.cpp) from the locks' timestamps.
keep() { cmp -s "$tmp/$1" "$1" || mv "$tmp/$1" "$1"; }
echo "torch==$TORCH+cpu" > "$tmp/torch-cpu.txt"
common=(--python-version 3.11 --python-platform x86_64-unknown-linux-gnu --generate-hashes --quiet
        --find-links "$TORCH_FIND_LINKS" --constraint "$tmp/torch-cpu.txt"
        --custom-compile-command "make lock")
"$UV" pip compile ../pyproject.toml --extra test --extra distributed --extra llamacpp \
  --extra tensorboard --extra mlflow --extra wandb --extra report "${common[@]}" \
  --no-emit-package torch --no-emit-package llama-cpp-python -o "$tmp/test.txt"
keep test.txt
# The default install, constrained by the test lock so that every package it shares with it has the same pin.
"$UV" pip compile ../pyproject.toml "${common[@]}" --constraint test.txt --no-emit-package torch -o "$tmp/default.txt"
keep default.txt
# The llama-cpp-python release the test lock resolved, as a source distribution with its hash.
llama=$("$UV" pip compile ../pyproject.toml --extra llamacpp "${common[@]}" --no-header --no-annotate \
        --constraint test.txt | sed -n 's/^\(llama-cpp-python==[^ ]*\).*/\1/p')
echo "$llama" > "$tmp/llamacpp.in"
"$UV" pip compile "$tmp/llamacpp.in" --no-deps "${common[@]}" --no-annotate --no-binary llama-cpp-python -o "$tmp/llamacpp-source.txt"
keep llamacpp-source.txt
"$UV" pip compile build-llamacpp.in "${common[@]}" -o "$tmp/build-llamacpp.txt"
keep build-llamacpp.txt
echo "locked: default.txt test.txt llamacpp-source.txt build-llamacpp.txt ($llama, torch $TORCH)"

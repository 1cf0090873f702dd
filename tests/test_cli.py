"""The CLI skeleton through the installed `nlab`: version, help without heavy imports, exit codes, streams."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from nlab_cli import __version__


def test_version_and_help(nlab):
    r = nlab("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"nlab {__version__}"
    r = nlab("--help")
    assert r.returncode == 0 and "analyze-history" in r.stdout
    r = nlab("analyze-history", "--help")
    assert r.returncode == 0 and "--spike-threshold" in r.stdout and "--json" in r.stdout


def test_help_imports_no_heavy_library():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom nlab_cli.main import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0\n"
            "for name in app.registered_commands:\n    CliRunner().invoke(app, [name.name, '--help'])\n"
            "for g in app.registered_groups:\n    for c in g.typer_instance.registered_commands:\n"
            "        assert CliRunner().invoke(app, [g.name, c.name, '--help']).exit_code == 0\n"
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'matplotlib', 'scipy', 'sklearn') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_usage_errors_exit_2(nlab):
    r = nlab("no-such-command")
    assert r.returncode == 2 and r.stdout == ""
    r = nlab("analyze-history")  # missing argument
    assert r.returncode == 2
    r = nlab("analyze-history", "x.jsonl", "--window", "many")
    assert r.returncode == 2 and "--window" in r.stderr


def test_default_install_has_no_cuda_packages():
    names = {(d.metadata["Name"] or "").lower() for d in metadata.distributions()}
    assert not [n for n in names if n.startswith("nvidia") or n in ("triton",)]
    import torch

    assert torch.__version__.startswith("2.13.0") and not torch.version.cuda


def test_shell_completion():
    """`nlab --show-completion SHELL` prints the script `--install-completion` installs; the installed `nlab`
    answers the shell's completion requests (bash's protocol here) with subcommands and options."""
    import os

    from conftest import nlab_executable

    script = subprocess.run([nlab_executable(), "--show-completion", "bash"], capture_output=True, text=True)
    assert script.returncode == 0 and "_NLAB_COMPLETE=complete_bash" in script.stdout
    for words, cword, expected in (("nlab runs rep", "2", "report"), ("nlab train-moe --track", "2", "--tracker")):
        r = subprocess.run([nlab_executable()], capture_output=True, text=True,
                           env={**os.environ, "_NLAB_COMPLETE": "complete_bash", "COMP_WORDS": words,
                                "COMP_CWORD": cword})
        assert expected in r.stdout.split(), (words, r.stdout, r.stderr)

"""Faults around a run folder: a second writer, a copied folder resumed, temporaries left by a kill."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from phases.core.errors import InputError
from phases.core.runs import Run


def test_second_writer_refused_naming_pid(nlab_home, tmp_path):
    with Run.create("demo", {}, out=tmp_path / "r") as run:
        pass
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from phases.core.runs import Run
        r = Run.resume({str(run.dir)!r}, "demo")
        print("held", flush=True)
        time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"PID {holder.pid}"):
            Run.resume(run.dir, "demo")
    finally:
        holder.kill()
        holder.wait()
    Run.resume(run.dir, "demo")  # released by the OS when the holder died


def test_copied_folder_resumed_never_touches_original(nlab_home, tmp_path):
    with Run.create("demo", {}, out=tmp_path / "a") as run:
        run.checkpoint_dir.mkdir()
        (run.checkpoint_dir / "last.pt").write_bytes(b"original")
    assert json.loads((run.dir / "manifest.json").read_text())["checkpoint_dir"] == "checkpoints"
    copy = shutil.copytree(run.dir, tmp_path / "b")
    resumed = Run.resume(copy, "demo")
    assert resumed.checkpoint_dir == copy / "checkpoints"
    with resumed:
        (resumed.checkpoint_dir / "last.pt").write_bytes(b"copy")
    assert (run.dir / "checkpoints" / "last.pt").read_bytes() == b"original"
    assert str(tmp_path / "a") not in (copy / "manifest.json").read_text()


def test_no_temporary_file_after_resume(nlab_home, tmp_path):
    with Run.create("demo", {}, out=tmp_path / "r") as run:
        run.checkpoint_dir.mkdir()
    left = [run.dir / ".metrics.json.x1.tmp", run.checkpoint_dir / ".last.pt.x2.tmp"]
    for p in left:
        p.write_bytes(b"partial write of a killed process")
    with Run.resume(run.dir, "demo"):
        assert not any(p.exists() for p in left)


def test_damaged_checkpoint_says_start_again_not_delete(nlab_home, tmp_path):
    """The old hint ('delete it') led to a resume refused as 'stopped before its first evaluation': the message
    for a damaged checkpoint now says what is true and what to do, and never suggests deleting it."""
    with Run.create("demo", {}, out=tmp_path / "r") as run:
        run.checkpoint_dir.mkdir()
        (run.checkpoint_dir / "last.pt").write_bytes(b"truncated by a full disk")
    resumed = Run.resume(run.dir, "demo")
    with pytest.raises(InputError) as e:
        resumed.load_checkpoint("last.pt", "its first evaluation")
    assert "last.pt" in e.value.message and "not a readable nlab checkpoint" in e.value.message
    assert "stopped before" not in e.value.message and "delete" not in e.value.hint
    assert "start a new run" in e.value.hint
    Run.resume(run.dir, "demo")  # the refusal released the lock

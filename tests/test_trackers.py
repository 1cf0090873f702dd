"""Experiment trackers (`--tracker`, NLAB_TRACKER, `nlab runs export`) on real train-moe runs made here, read back
with each library's own reader: TensorBoard's EventAccumulator, MLflow's MlflowClient, and W&B's protobuf records
of its offline run file; each must match the run's history.jsonl and metrics.json."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import kill_after_first_checkpoint, nlab_executable
from phases.core.jsonio import read_jsonl
from phases.core.trackers import finals_of, points_of

QUICK = ("train-moe", "--epochs", "2", "--train-limit", "200")


def _invoke(*args: str):
    from nlab_cli.main import app

    r = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def _expected(run_dir: Path, prefix: str = "") -> dict[str, list[tuple[int, float]]]:
    """history.jsonl as tracker series: {"val/acc": [(step, value), ...]}."""
    out: dict[str, list] = {}
    for rec in read_jsonl(run_dir / "history.jsonl"):
        for k, v in points_of(rec, prefix).items():
            out.setdefault(k, []).append((rec["step"], v))
    return out


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One quick train-moe run streamed to TensorBoard and MLflow as it went."""
    home = tmp_path_factory.mktemp("tracked")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLAB_HOME", str(home))
        rc, out, err = _invoke(*QUICK, "--tracker", "tensorboard", "--tracker", "mlflow", "--json")
        assert rc == 0, err
    return home, Path(json.loads(out)["run_dir"])


def _mlflow_run(home: Path, run_id: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'logs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("nlab/train-moe")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`nlab.run_id` = '{run_id}'")
    assert len(runs) == 1
    return client, runs[0]


def test_tensorboard_event_files_match_history(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir = tracked
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    expected = _expected(run_dir)
    assert expected and "val/acc" in expected and "train/loss" in expected
    for key, series in expected.items():
        got = [(e.step, e.value) for e in acc.Scalars(key)]
        assert [s for s, _ in got] == [s for s, _ in series], key
        assert all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7) for (_, a), (_, b) in zip(got, series)), key
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert math.isclose(acc.Scalars("test_acc")[-1].value, metrics["test_acc"], rel_tol=1e-6)
    assert "config/text_summary" in acc.Tags()["tensors"]  # the config as text
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["trackers"]["tensorboard"] == {"logdir": "tb"}


def test_mlflow_store_matches_history_config_and_metrics(tracked):
    home, run_dir = tracked
    client, run = _mlflow_run(home, run_dir.name)
    assert run.info.run_name == run_dir.name and run.info.status == "FINISHED"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["trackers"]["mlflow"]["run_id"] == run.info.run_id
    for key, series in _expected(run_dir).items():
        got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert got == sorted(series), key
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert run.data.metrics["test_acc"] == metrics["test_acc"]
    assert set(finals_of(metrics)) <= set(run.data.metrics)
    config = json.loads((run_dir / "config.json").read_text())
    assert run.data.params["experts"] == str(config["experts"]) and run.data.params["epochs"] == "2"
    assert run.data.params["data_paths.digits"] == str(config["data_paths"]["digits"])


def _wandb_records(path: Path):
    """The protobuf records of a W&B run file (its LevelDB-style log: a 7-byte header, 32 KiB blocks, records of
    checksum, length, type), parsed with wandb's own Record message."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, buf = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, or the last piece of a record
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def test_wandb_offline_run_holds_history_and_final_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("NLAB_HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")  # never online from a test, whoever runs it
    monkeypatch.setenv("NLAB_TRACKER", "wandb")  # the environment variable instead of --tracker
    rc, out, err = _invoke(*QUICK, "--json")
    assert rc == 0, err
    run_dir = Path(json.loads(out)["run_dir"])
    state = json.loads((run_dir / "manifest.json").read_text())["trackers"]["wandb"]
    assert state["mode"] == "offline"
    [file] = list((run_dir / "wandb").glob(f"offline-run-*-{state['id']}/run-{state['id']}.wandb"))
    logged: dict[str, list] = {}
    summary: dict[str, float] = {}
    for rec in _wandb_records(file):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            row = {it.key or "/".join(it.nested_key): json.loads(it.value_json) for it in rec.history.item}
            for k, v in row.items():
                if not k.startswith("_") and k != "step":
                    logged.setdefault(k, []).append((row["step"], v))
        elif kind == "summary":
            summary.update({it.key or "/".join(it.nested_key): json.loads(it.value_json) for it in rec.summary.update})
    expected = _expected(run_dir)
    assert {k: [(s, pytest.approx(v)) for s, v in series] for k, series in expected.items()} == logged
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert summary["test_acc"] == pytest.approx(metrics["test_acc"])


def test_resumed_run_continues_its_mlflow_run(tmp_path):
    """A run killed with kill -9 after its first epoch, resumed without --tracker: the manifest's tracker goes on,
    in the same MLflow run, which ends FINISHED with every step of history.jsonl."""
    env = {**os.environ, "NLAB_HOME": str(tmp_path)}
    run_dir = kill_after_first_checkpoint(tmp_path, "--epochs", "4", "--tracker", "mlflow")
    first = json.loads((run_dir / "manifest.json").read_text())["trackers"]["mlflow"]["run_id"]
    r = subprocess.run([nlab_executable(), "train-moe", "--resume", str(run_dir)], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, r.stderr
    client, run = _mlflow_run(tmp_path, run_dir.name)
    assert run.info.run_id == first and run.info.status == "FINISHED"
    for key, series in _expected(run_dir).items():  # every logged step is there (re-run steps may repeat)
        assert {s for s, _ in series} == {m.step for m in client.get_metric_history(run.info.run_id, key)}, key


def test_missing_tracker_library_is_exit_2_naming_the_extra(tmp_path):
    """A real environment where `import tensorboard` fails: exit 2, the extra named, no run folder written."""
    fake = tmp_path / "shadow"
    (fake / "tensorboard").mkdir(parents=True)
    (fake / "tensorboard" / "__init__.py").write_text("raise ImportError('No module named tensorboard')\n")
    env = {**os.environ, "NLAB_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([str(fake), *filter(None, [os.environ.get("PYTHONPATH")])])}
    r = subprocess.run([nlab_executable(), *QUICK, "--tracker", "tensorboard"], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 2, r.stderr
    assert "pip install 'nlab[tensorboard]'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "home" / "logs").exists()


def test_unknown_tracker_is_exit_2_listing_the_trackers(tmp_path, monkeypatch):
    monkeypatch.setenv("NLAB_HOME", str(tmp_path))
    rc, _, err = _invoke(*QUICK, "--tracker", "neptune")
    assert rc == 2 and "tensorboard, mlflow, wandb" in err
    monkeypatch.setenv("NLAB_TRACKER", "tensorboard,comet")
    rc, _, err = _invoke(*QUICK)
    assert rc == 2 and "NLAB_TRACKER comet" in err
    assert not (tmp_path / "logs").exists()

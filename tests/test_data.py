"""The data registry on the real datasets of ../shared/data, CIFAR on files in the real pickle format that the
tests write, the lookup order, the errors, and downloads from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import pickle
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from phases.core.data import load, locate
from phases.core.data.download import download_url
from phases.core.errors import InputError


def test_digits_fixed_split():
    d = load("digits")
    assert d.train_x.shape == (1437, 1, 8, 8) and d.test_x.shape == (360, 1, 8, 8)
    assert d.train_x.dtype == np.uint8 and d.train_x.max() == 16 and d.pixel_max == 16
    assert np.bincount(d.test_y).min() >= 35 and d.num_classes == 10  # stratified: every class ~36 times
    again = load("digits")
    assert np.array_equal(again.test_x, d.test_x) and np.array_equal(again.test_y, d.test_y)


def test_tinyshakespeare_nanogpt_split():
    c = load("tinyshakespeare")
    assert c.vocab.size == 65
    assert len(c.train_text) == 1003854 and len(c.val_text) == 111540  # int(1115394 * 0.9)
    ids = c.val_ids()
    assert ids.dtype == np.uint16 and c.vocab.decode(ids[:200]) == c.val_text[:200]


def test_wikitext2_valid_test(data_root):
    c = load("wikitext2")
    assert c.splits == ("valid.txt", "test.txt")  # no train.txt here: train on valid, hold out test
    assert c.train_text == (data_root / "wikitext2" / "valid.txt").read_text(encoding="utf-8")
    assert c.val_text == (data_root / "wikitext2" / "test.txt").read_text(encoding="utf-8")
    assert len(c.val_text.encode("utf-8")) == 1256449  # the file's size in bytes (SOURCE.md)
    assert set(c.val_text) <= set(c.vocab.chars)


def test_sst2_gsm8k_scan_counts():
    s = load("sst2")
    assert (len(s.train_x), len(s.test_x)) == (67349, 872) and s.test_split == "dev"
    assert np.bincount(s.test_y).tolist() == [428, 444]
    assert s.test_x[0] == "it 's a charming and often affecting journey ."
    g = load("gsm8k")
    assert (len(g["train"]), len(g["test"])) == (7473, 1319)
    assert g["test"][0].final == "18" and g["test"][0].id == 0
    sc = load("scan")
    assert {k: len(v) for k, v in sc.items()} == {"simple_train": 16728, "simple_test": 4182,
                                                  "addprim_jump_train": 14670, "addprim_jump_test": 7706}
    cmd, act = sc["simple_train"][0]
    assert cmd.startswith("jump opposite right") and act.startswith("I_TURN_RIGHT")


def _write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _batch(n, rng, labels_key=b"labels", classes=10, extra=None):
    b = {b"batch_label": b"test", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
         labels_key: rng.integers(0, classes, n).tolist(), b"filenames": [b"x.png"] * n}
    b.update(extra or {})
    return b


def test_cifar10_and_cifar100_real_format(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar10" / "cifar-10-batches-py"
    for i in range(1, 6):
        _write_pickle(root / f"data_batch_{i}", _batch(4, rng))
    test = _batch(3, rng)
    _write_pickle(root / "test_batch", test)
    _write_pickle(root / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)],
                                          b"num_vis": 3072})
    d = load("cifar10", data_dir=tmp_path)
    assert d.train_x.shape == (20, 3, 32, 32) and d.test_x.shape == (3, 3, 32, 32)
    assert np.array_equal(d.test_x[1], test[b"data"][1].reshape(3, 32, 32))  # channel-major, as CIFAR stores it
    assert d.test_y.tolist() == test[b"labels"] and d.classes[3] == "c3"

    root = tmp_path / "cifar100" / "cifar-100-python"
    for split, n in (("train", 6), ("test", 2)):
        _write_pickle(root / split, _batch(n, rng, b"fine_labels", 100,
                                           {b"coarse_labels": rng.integers(0, 20, n).tolist()}))
    _write_pickle(root / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                  b"coarse_label_names": [f"g{i}".encode() for i in range(20)]})
    d = load("cifar100", data_dir=tmp_path)
    assert d.num_classes == 100 and d.train_x.shape == (6, 3, 32, 32)
    assert len(d.extra["coarse_names"]) == 20 and d.extra["test_coarse"].shape == (2,)


def test_cifar_refuses_foreign_pickles(tmp_path):
    root = tmp_path / "cifar10" / "cifar-10-batches-py"
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        _write_pickle(root / name, _batch(2, rng))
    _write_pickle(root / "data_batch_3", {"evil": shutil.rmtree})  # a pickle that names a callable
    with pytest.raises(InputError, match=r"data_batch_3: not a CIFAR python pickle batch.*refusing"):
        load("cifar10", data_dir=tmp_path)


def test_lookup_order_and_errors(tmp_path, monkeypatch, nlab_home, data_root):
    # NLAB_DATA_DIR first, then the project's data/ folder
    project = nlab_home / "data" / "gsm8k"
    project.mkdir(parents=True)
    for f in ("train.jsonl", "test.jsonl"):
        shutil.copy(data_root / "gsm8k" / f, project / f)
    assert locate("gsm8k") == data_root / "gsm8k"
    monkeypatch.delenv("NLAB_DATA_DIR")
    assert locate("gsm8k") == project
    # --data-dir wins, and is the only place looked when given
    assert locate("gsm8k", data_dir=data_root) == data_root / "gsm8k"
    with pytest.raises(InputError, match=r"--data-dir .*missing scan/tasks_train_simple\.txt"):
        locate("scan", data_dir=tmp_path)
    # nothing anywhere, downloads off: the error lists the expected files and every place looked at
    with pytest.raises(InputError) as e:
        locate("tinyshakespeare")
    msg = str(e.value)
    assert "tinyshakespeare/input.txt" in msg and "project data/" in msg and "NLAB_NO_DOWNLOAD" in msg
    with pytest.raises(InputError, match="(?s)unknown dataset.*choose one of: cifar10"):
        load("mnist")


def test_download_failure_is_reported(monkeypatch, nlab_home):
    """With downloads allowed and no route to the source, the error says so and leaves no partial file."""
    monkeypatch.delenv("NLAB_DATA_DIR")
    monkeypatch.delenv("NLAB_NO_DOWNLOAD")
    monkeypatch.setattr("phases.core.data.text.SHAKESPEARE_URL", "http://127.0.0.1:9/input.txt")  # closed port
    with pytest.raises(InputError, match=r"download from .*URLError"):
        locate("tinyshakespeare")
    assert not list((nlab_home / "data").rglob("*.txt"))


def test_malformed_dataset_lines_name_file_and_line(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text('{"question": "q", "answer": "a #### 1"}\n')
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "q", "answer": "a #### 1"}\n{"question": 1}\n')
    with pytest.raises(InputError, match=r"test\.jsonl:2: not a question/answer record"):
        load("gsm8k", data_dir=tmp_path)
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.tsv").write_text("sentence\tlabel\ngood \t1\nbad \t7\n")
    (tmp_path / "sst2" / "dev.tsv").write_text("sentence\tlabel\nok \t1\n")
    with pytest.raises(InputError, match=r"train\.tsv:3: expected 'sentence<TAB>0\|1'"):
        load("sst2", data_dir=tmp_path)


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(www), **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_from_a_real_server(http_server, tmp_path, monkeypatch, nlab_home, data_root):
    www, base = http_server
    shutil.copy(data_root / "tinyshakespeare" / "input.txt", www / "input.txt")
    digest = hashlib.sha256((www / "input.txt").read_bytes()).hexdigest()
    dest = download_url(f"{base}/input.txt", tmp_path / "dl" / "input.txt", sha256=digest)
    assert dest.read_bytes() == (www / "input.txt").read_bytes()
    with pytest.raises(ValueError, match="checksum mismatch"):
        download_url(f"{base}/input.txt", tmp_path / "dl2" / "input.txt", sha256="0" * 64)
    assert not list((tmp_path / "dl2").iterdir())  # no partial or unverified file left
    # the registry's last resort: a download into the project's data/ folder
    monkeypatch.delenv("NLAB_DATA_DIR")
    monkeypatch.delenv("NLAB_NO_DOWNLOAD")
    monkeypatch.setattr("phases.core.data.text.SHAKESPEARE_URL", f"{base}/input.txt")
    assert locate("tinyshakespeare") == nlab_home / "data" / "tinyshakespeare"
    assert load("tinyshakespeare").vocab.size == 65

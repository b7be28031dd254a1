"""The TinyDB store: round trips, table names, atomic writes, thread safety, and the data root."""
from __future__ import annotations

import json
import os
import threading

import pytest

from core.base import config, files, store
from waits import PAGE_S, RUN_S


def _store_json(table: str = "models") -> dict:
    """A table's store file parsed as JSON (fails the test if it is not valid JSON)."""
    return json.loads(store.table_path(table).read_text(encoding="utf-8"))


def test_round_trip_insert_get_update_modify_remove(data_root):
    doc_id = store.insert("models", {"name": "m1", "acc": 0.5, "tags": ["a"]})
    assert isinstance(doc_id, int)
    _store_json()
    store.insert("models", {"name": "m2", "acc": 0.7})
    _store_json()

    assert store.get("models", key="name", value="m1") == {"name": "m1", "acc": 0.5, "tags": ["a"]}
    assert store.get("models", key="name", value="nope") is None

    assert store.update("models", {"acc": 0.9}, key="name", value="m1") == 1
    assert store.update("models", {"acc": 0.1}, key="name", value="nope") == 0
    assert store.get("models", key="name", value="m1")["acc"] == 0.9
    _store_json()

    def bump(doc: dict) -> dict:
        doc["acc"] += 0.05
        doc["seen"] = True
        return doc

    new = store.modify("models", bump, key="name", value="m2")
    assert new["seen"] is True and new["acc"] == pytest.approx(0.75)
    assert store.get("models", key="name", value="m2") == {"name": "m2", "acc": pytest.approx(0.75), "seen": True}
    assert store.modify("models", bump, key="name", value="nope") is None
    # fn returning None leaves the record alone
    assert store.modify("models", lambda d: None, key="name", value="m2") is None
    assert store.get("models", key="name", value="m2")["acc"] == pytest.approx(0.75)
    _store_json()

    store.upsert("models", {"name": "m2", "acc": 1.0}, key="name")
    store.upsert("models", {"name": "m3", "acc": 0.0}, key="name")
    names = sorted(r["name"] for r in store.all_records("models"))
    assert names == ["m1", "m2", "m3"]
    assert store.get("models", key="name", value="m2")["acc"] == 1.0

    assert store.remove("models", key="name", value="m1") == 1
    assert store.remove("models", key="name", value="m1") == 0
    assert sorted(r["name"] for r in store.all_records("models")) == ["m2", "m3"]
    assert store.all_records("runs") == []

    on_disk = _store_json()
    assert sorted(r["name"] for r in on_disk["models"].values()) == ["m2", "m3"]
    assert store.table_path("models").parent == data_root.resolve() / "store"


def test_records_returned_are_copies():
    store.insert("runs", {"name": "j", "n": 1})
    rec = store.get("runs", key="name", value="j")
    rec["n"] = 99
    assert store.get("runs", key="name", value="j")["n"] == 1


@pytest.mark.parametrize("call", [
    lambda: store.insert("nope", {"a": 1}),
    lambda: store.upsert("nope", {"a": 1}, key="a"),
    lambda: store.update("nope", {"a": 1}, key="a", value=1),
    lambda: store.modify("nope", lambda d: d, key="a", value=1),
    lambda: store.get("nope", key="a", value=1),
    lambda: store.all_records("nope"),
    lambda: store.remove("nope", key="a", value=1),
], ids=["insert", "upsert", "update", "modify", "get", "all_records", "remove"])
def test_unknown_table_is_a_value_error(call):
    with pytest.raises(ValueError, match="unknown store table 'nope'"):
        call()
    assert not (config.store_dir() / "nope.json").exists()


def test_atomic_write_bytes_writes_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    files.atomic_write_bytes(target, b"one")
    files.atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]


def test_atomic_write_bytes_keeps_old_content_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    files.atomic_write_bytes(target, b'{"old": true}')

    def boom(src, dst):
        raise OSError("disk full (simulated)")

    with monkeypatch.context() as m:  # scoped: undo() would also undo the data_root fixture
        m.setattr(os, "replace", boom)
        with pytest.raises(OSError, match="simulated"):
            files.atomic_write_bytes(target, b'{"new": true, "padding": "' + b"x" * 10000 + b'"}')
    assert target.read_bytes() == b'{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_failed_store_write_keeps_the_previous_store(monkeypatch):
    store.insert("reports", {"name": "a"})
    before = store.table_path("reports").read_bytes()
    with monkeypatch.context() as m:
        m.setattr(os, "replace", lambda s, d: (_ for _ in ()).throw(OSError("simulated crash")))
        with pytest.raises(OSError, match="simulated crash"):
            store.insert("reports", {"name": "b"})
    assert store.table_path("reports").read_bytes() == before
    assert [r["name"] for r in store.all_records("reports")] == ["a"]
    assert not [p for p in config.store_dir().iterdir() if p.name.endswith(".tmp")]


def test_concurrent_modify_from_threads_loses_no_update():
    store.insert("runs", {"name": "counter", "n": 0})
    errors = []

    def work():
        try:
            for _ in range(25):
                store.modify("runs", lambda d: {**d, "n": d["n"] + 1}, key="name", value="counter")
        except Exception as e:  # pragma: no cover - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=RUN_S)
    assert not any(t.is_alive() for t in threads), f"writers still at work after {RUN_S:.0f} s"
    assert not errors
    assert store.get("runs", key="name", value="counter")["n"] == 200
    assert _store_json("runs")["runs"]["1"]["n"] == 200


def test_the_store_moves_with_the_data_root(tmp_path, monkeypatch, data_root):
    store.insert("reports", {"name": "first"})
    assert (data_root / "store" / "reports.json").is_file()

    other = tmp_path / "elsewhere"
    monkeypatch.setenv("TSW_DATA_ROOT", str(other))
    assert config.data_root() == other.resolve()
    assert store.table_path("reports") == other.resolve() / "store" / "reports.json"
    assert store.all_records("reports") == []
    store.insert("reports", {"name": "second"})
    assert (other / "store" / "reports.json").is_file()

    monkeypatch.setenv("TSW_DATA_ROOT", str(data_root))
    assert [r["name"] for r in store.all_records("reports")] == ["first"]


def test_atomic_write_bytes_makes_an_ordinary_file_not_a_private_one(tmp_path):
    target = tmp_path / "f.bin"
    files.atomic_write_bytes(target, b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_each_table_has_its_own_file_so_a_write_leaves_other_tables_alone():
    store.insert("models", {"name": "m"})
    models_before = store.table_path("models").read_bytes()
    store.insert_many("runs", [{"id": f"r{i}"} for i in range(3)])
    assert store.table_path("models").read_bytes() == models_before
    assert [r["id"] for r in store.all_records("runs")] == ["r0", "r1", "r2"]


def test_a_single_file_store_of_an_earlier_version_is_migrated(data_root):
    data_root.mkdir(parents=True, exist_ok=True)
    (data_root / "store.json").write_text(json.dumps({
        "jobs": {"1": {"id": "train-1", "status": "done"}}, "models": {"1": {"name": "old"}},
        "classes": {"1": {"name": "unused table"}}}))
    assert [r["id"] for r in store.all_records("runs")] == ["train-1"]
    assert [r["name"] for r in store.all_records("models")] == ["old"]
    assert store.all_records("reports") == []
    store.insert("runs", {"id": "train-2"})  # the migrated table is now the one in use
    assert [r["id"] for r in store.all_records("runs")] == ["train-1", "train-2"]


def test_file_lock_is_reentrant_in_a_thread_and_excludes_other_threads(tmp_path):
    lock = tmp_path / "x.lock"
    order = []

    def other():
        with files.file_lock(lock):
            order.append("other")

    with files.file_lock(lock):
        with files.file_lock(lock):  # nested in one thread: no deadlock
            t = threading.Thread(target=other)
            t.start()
            t.join(0.3)  # a chance for a broken lock to let it in (a correct one passes however long this is)
            assert t.is_alive() and order == []  # the other thread waits
            order.append("owner")
    t.join(PAGE_S)
    assert order == ["owner", "other"]

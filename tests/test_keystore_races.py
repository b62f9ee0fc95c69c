"""Issue 23, classes 1–3 and the audit tail: live shards, writers during rotation, indexes that
are missing or not accounted for, cut lines, a cut audit log. Real processes hold the locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from keras_dkg.errors import KeyMaterialError  # noqa: E402
from keras_dkg.runtime.cli.keys import main as keys_main
from keras_dkg.runtime.keystore import admin, sealing
from keras_dkg.runtime.keystore import locks as keystore_locks
from keras_dkg.runtime.keystore.custody import Credentials
from keras_dkg.runtime.keystore.store import SHARDS_FOLDER, KeyStore
from tests.test_custody import NEW_PASS, PASS, random_key, snapshot  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch):
    monkeypatch.setattr(sealing, "ARGON2_DEFAULTS", {"name": "argon2id", "iterations": 1, "lanes": 1, "memory_kib": 64})
    monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", PASS)
    monkeypatch.delenv("DKG_KEYSTORE_KEY_FILE", raising=False)


def creds(passphrase: str = PASS) -> Credentials:
    return Credentials(passphrase=passphrase)


def filled(folder: Path, n: int = 3) -> list:
    admin.init_store(folder, creds())
    store = KeyStore(folder, credentials=creds())
    keys = [random_key(i) for i in range(n)]
    for i, key in enumerate(keys):
        store.add(key, f"{i:064x}", f"/archive/{i}.png")
    return keys


class Holder:
    """Another process that opens the store as a writer (or a shard writer) and holds it until stopped."""

    def __init__(self, folder: Path, shard: str | None = None, create: bool = True):
        code = textwrap.dedent(f"""
            import sys
            from keras_dkg.runtime.keystore import sealing
            sealing.ARGON2_DEFAULTS = {{"name": "argon2id", "iterations": 1, "lanes": 1, "memory_kib": 64}}
            from keras_dkg.runtime.keystore.custody import Credentials
            from keras_dkg.runtime.keystore.store import KeyStore
            store = KeyStore({str(folder)!r}, create={create!r}, shard={shard!r},
                             credentials=Credentials(passphrase={PASS!r}))
            print("ready", flush=True)
            for line in sys.stdin:
                if line.strip() == "add":
                    import numpy as np
                    from keras_dkg.runtime.keys.artifact import Key, make_record
                    n = len(store.entries())
                    pixels = np.random.default_rng(1000 + n).integers(0, 256, (8, 8, 3), dtype=np.uint8)
                    store.add(Key(pixels, make_record(pixels, nonce=str(n))), f"{{n:064x}}", f"/live/{{n}}.png")
                    print("added", flush=True)
        """)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        assert self.process.stdout.readline().strip() == "ready"

    def add(self) -> None:
        self.process.stdin.write("add\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "added"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def test_merge_takes_only_finished_shards(tmp_path):
    """Class 1: a merge leaves a live writer's shard alone; lines it appends later are never lost."""
    keys = filled(tmp_path / "ks", 1)
    live = Holder(tmp_path / "ks", shard="live-0")
    try:
        live.add()
        done = KeyStore(tmp_path / "ks", shard="done-0", credentials=creds())
        done.add(random_key(50), "f" * 64, "/done/0.png")
        done.close()
        store = KeyStore(tmp_path / "ks", credentials=creds())
        assert store.merge_shards() == 1 and store.live_shards == ["live-0"]
        assert (tmp_path / "ks" / SHARDS_FOLDER / "live-0.jsonl").exists()
        live.add()  # appended after the merge read the folder: still there
    finally:
        live.kill()
    store = KeyStore(tmp_path / "ks", credentials=creds())
    assert store.merge_shards() == 2 and store.live_shards == []
    assert len(store.entries()) == len(keys) + 3
    assert admin.verify_store(store).errors == [] and admin.audit_store(store)[0] == []


@pytest.mark.parametrize("shard", [None, "ray-x-0"])
def test_rotate_waits_for_writers_and_refuses_in_one_line(tmp_path, shard, capfd):
    """Class 2: rotate/protect exclude every writer (a batch's worker or a Ray shard) with a bounded wait."""
    keys = filled(tmp_path / "ks")
    writer = Holder(tmp_path / "ks", shard=shard)
    try:
        writer.add()
        before = snapshot(tmp_path / "ks")
        with pytest.raises(KeyMaterialError, match="cannot rotate while writers are using the key store"):
            admin.rotate_store(tmp_path / "ks", creds(), creds(NEW_PASS), wait_s=0.3)
        os.environ["DKG_KEYSTORE_NEW_PASSPHRASE"] = NEW_PASS
        try:
            assert keys_main(["rotate", str(tmp_path / "ks"), "--wait", "0.2"]) == 2
        finally:
            del os.environ["DKG_KEYSTORE_NEW_PASSPHRASE"]
        err = capfd.readouterr().err
        assert err.count("\n") == 1 and "waited 0.2 s" in err
        after = snapshot(tmp_path / "ks")
        assert {k: v for k, v in after.items() if k != "audit.jsonl"} == \
            {k: v for k, v in before.items() if k != "audit.jsonl"}
        writer.add()
    finally:
        writer.kill()
    admin.rotate_store(tmp_path / "ks", creds(), creds(NEW_PASS))
    store = KeyStore(tmp_path / "ks", credentials=creds(NEW_PASS))
    assert len(store.entries()) == len(keys) + 2 and not list((tmp_path / "ks" / SHARDS_FOLDER).glob("*.jsonl"))
    for key in keys:
        assert store.load(key.fingerprint).fingerprint == key.fingerprint
    assert admin.verify_store(store).errors == [] and admin.audit_store(store)[0] == []


def test_a_writer_waits_while_rotation_holds_the_store(tmp_path):
    filled(tmp_path / "ks")
    with keystore_locks.exclusive(tmp_path / "ks"):
        code = ("from keras_dkg.runtime.keystore.store import KeyStore\n"
                f"KeyStore({str(tmp_path / 'ks')!r}, create=True, wait_s=0.2)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode != 0 and "being rotated or protected by another process" in done.stderr


def test_restored_old_store_json_is_an_error_not_an_empty_store(tmp_path):
    """Class 3: store.json from before a rotation, beside the rotated index: nothing reads as empty or is deleted."""
    filled(tmp_path / "ks")
    old_manifest = (tmp_path / "ks" / "store.json").read_bytes()
    admin.rotate_store(tmp_path / "ks", creds(), creds(NEW_PASS))
    (tmp_path / "ks" / "store.json").write_bytes(old_manifest)
    before = snapshot(tmp_path / "ks")
    for attempt in (lambda: KeyStore(tmp_path / "ks", credentials=creds()),
                    lambda: admin.rotate_store(tmp_path / "ks", creds(), creds("third one"))):
        with pytest.raises(KeyMaterialError, match=r"index\.1\.jsonl: the index store\.json names is missing .*"
                                                   r"index\.2\.jsonl is here: store\.json may be an older copy"):
            attempt()
    assert snapshot(tmp_path / "ks") == before


def test_old_store_json_and_old_index_restored_beside_the_new_one(tmp_path):
    """Both files of generation 1 restored, generation 2's index still there: verify fails, rotate refuses."""
    filled(tmp_path / "ks")
    saved = {name: (tmp_path / "ks" / name).read_bytes() for name in ("store.json", "index.1.jsonl")}
    admin.rotate_store(tmp_path / "ks", creds(), creds(NEW_PASS))
    for name, data in saved.items():
        (tmp_path / "ks" / name).write_bytes(data)
    store = KeyStore(tmp_path / "ks", credentials=creds())
    errors = admin.verify_store(store).errors
    assert any("index.2.jsonl: an index file store.json does not account for" in e for e in errors)
    with pytest.raises(KeyMaterialError, match="index.2.jsonl: an index file store.json does not account for"):
        admin.rotate_store(tmp_path / "ks", creds(), creds("third one"))
    assert (tmp_path / "ks" / "index.2.jsonl").exists()


def test_missing_index_and_index_pointing_elsewhere(tmp_path):
    filled(tmp_path / "ks")
    os.replace(tmp_path / "ks" / "index.1.jsonl", tmp_path / "index.moved")
    with pytest.raises(KeyMaterialError, match="the index store.json names is missing"):
        KeyStore(tmp_path / "ks", credentials=creds())
    os.replace(tmp_path / "index.moved", tmp_path / "ks" / "index.1.jsonl")
    manifest = json.loads((tmp_path / "ks" / "store.json").read_text())
    (tmp_path / "ks" / "other.jsonl").write_bytes(b"")
    (tmp_path / "ks" / "store.json").write_text(json.dumps({**manifest, "index": "other.jsonl"}))
    with pytest.raises(KeyMaterialError, match="names index 'other.jsonl', but generation 1's index is index.1.jsonl"):
        KeyStore(tmp_path / "ks", credentials=creds())


def test_plain_store_with_its_index_moved_is_not_recreated_empty(tmp_path):
    plain = KeyStore(tmp_path / "ks", create=True)
    plain.add(random_key(1), "a" * 64, "/a.png")
    plain.close()
    os.replace(tmp_path / "ks" / "index.jsonl", tmp_path / "index.moved")
    with pytest.raises(KeyMaterialError, match="keys/ holds keys but index.jsonl is missing"):
        KeyStore(tmp_path / "ks", create=True)
    assert not (tmp_path / "ks" / "index.jsonl").exists()


def test_sealed_key_in_no_index_line_fails_verify(tmp_path):
    filled(tmp_path / "ks", 2)
    index = tmp_path / "ks" / "index.1.jsonl"
    index.write_bytes(index.read_bytes().splitlines(keepends=True)[0])  # the second key's line lost
    found = admin.verify_store(KeyStore(tmp_path / "ks", credentials=creds()))
    assert any("a sealed key in no index line" in e for e in found.errors)


def test_a_killed_writers_pending_key_is_a_note(tmp_path):
    filled(tmp_path / "ks", 1)
    pending = tmp_path / "ks" / "keys" / ".pending.0123456789abcdef0123456789abcdef.sealed"
    pending.write_bytes(b"DKGKEY2\nwhatever")
    found = admin.verify_store(KeyStore(tmp_path / "ks", credentials=creds()))
    assert found.errors == [] and any("run killed before its index line" in n for n in found.notes)


def test_cut_last_line_is_an_error_and_never_trimmed(tmp_path):
    filled(tmp_path / "ks", 2)
    index = tmp_path / "ks" / "index.1.jsonl"
    index.write_bytes(index.read_bytes()[:-40])
    cut = index.read_bytes()
    store = KeyStore(tmp_path / "ks", credentials=creds())
    assert any("the last index line is cut" in e for e in admin.verify_store(store).errors)
    with pytest.raises(KeyMaterialError, match="the last index line is cut"):
        store.add(random_key(9), "9" * 64, "/9.png")
    assert index.read_bytes() == cut


def test_a_torn_append_is_cut_by_the_next_writer(tmp_path):
    """A writer killed inside its append left half a line: the intent proves it, the next writer removes it."""
    filled(tmp_path / "ks", 1)
    index = tmp_path / "ks" / "index.1.jsonl"
    whole = index.stat().st_size
    keystore_locks.begin_append(index, whole, 500)
    with open(index, "ab") as handle:
        handle.write(b'{"sealed": "AAAA')
    store = KeyStore(tmp_path / "ks", credentials=creds())
    assert admin.verify_store(store).errors == []
    store.add(random_key(9), "9" * 64, "/9.png")
    assert len(KeyStore(tmp_path / "ks", credentials=creds()).entries()) == 2
    assert admin.verify_store(store).errors == []


@pytest.mark.parametrize("cut", ["last", "all"])
def test_audit_tail_truncation_is_detected(tmp_path, cut, capfd):
    """Class 10: deleting the newest audit records, or the whole log, no longer reads as "chain intact"."""
    filled(tmp_path / "ks", 3)
    log = tmp_path / "ks" / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    if cut == "last":
        log.write_bytes(b"".join(lines[:-1]))
    else:
        log.unlink()
    assert keys_main(["audit", str(tmp_path / "ks")]) == 1
    err = capfd.readouterr().err
    assert "is missing: the audit log was cut or deleted" in err
    assert keys_main(["verify", str(tmp_path / "ks")]) == 1


def test_plain_store_key_in_no_line_is_an_error_and_pending_is_finished(tmp_path):
    """A plain store too: keys under .pending. names until their line is durable; a key under its own name
    with no line is a lost line (exit 1); a line whose key is still pending is finished by verify."""
    plain = KeyStore(tmp_path / "ks", create=True)
    entry = plain.add(random_key(1), "a" * 64, "/a.png")
    plain.add(random_key(2), "b" * 64, "/b.png")
    plain.close()
    assert not list((tmp_path / "ks" / "keys").glob(".pending.*"))
    index = tmp_path / "ks" / "index.jsonl"
    first, second = index.read_bytes().splitlines(keepends=True)
    # a writer killed after its line, before the rename: readers and verify find the key
    key_file = tmp_path / "ks" / entry["key_file"]
    for path in (key_file, key_file.with_suffix(".json")):
        os.replace(path, path.with_name(".pending." + path.name))
    store = KeyStore(tmp_path / "ks")
    assert store.load(entry["fingerprint"]).fingerprint == entry["fingerprint"]
    found = admin.verify_store(store)
    assert found.errors == [] and key_file.is_file()
    index.write_bytes(first)  # the second key's line lost
    found = admin.verify_store(KeyStore(tmp_path / "ks"))
    assert len(found.errors) == 2 and all("a key file in no index line" in e for e in found.errors)


def test_a_reader_that_races_a_rotations_commit_opens_the_new_index(tmp_path, monkeypatch):
    """A reader holds no lock: store.json read, then a rotation commits and removes the index it named.

    The reader must open the rotated store (same passphrase), not report a missing index and
    advise putting back an older store.json (found by tests/test_keystore_stress.py, `dkg-keys list`).
    """
    from keras_dkg.runtime.keystore import custody
    from keras_dkg.runtime.keystore import store as keystore

    keys = filled(tmp_path / "ks")
    real_unlock, calls = custody.unlock, []

    def unlock_then_rotation_commits(folder, credentials=None, manifest=None):
        vault = real_unlock(folder, credentials, manifest)
        calls.append(vault.manifest["index"])
        if len(calls) == 1:  # between this reader's unlock and its look at the index
            monkeypatch.setattr(keystore.custody, "unlock", real_unlock)
            admin.rotate_store(tmp_path / "ks", creds(), creds())
            monkeypatch.setattr(keystore.custody, "unlock", unlock_then_rotation_commits)
        return vault

    monkeypatch.setattr(keystore.custody, "unlock", unlock_then_rotation_commits)
    reader = KeyStore(tmp_path / "ks", credentials=creds())
    assert calls == ["index.1.jsonl", "index.2.jsonl"]
    assert {e["fingerprint"] for e in reader.entries()} == {k.fingerprint for k in keys}

"""Protected key stores (issue 16): envelope encryption, dkg-keys, rotation and protection kill-points, audit chain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cryptography")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from keras_dkg.errors import KeyMaterialError  # noqa: E402
from keras_dkg.runtime.batch.driver import decrypt_folder, encrypt_folder
from keras_dkg.runtime.ciphers.metadata import plaintext_digest
from keras_dkg.runtime.cli.encrypt import decrypt_main, encrypt_main
from keras_dkg.runtime.cli.keys import main as keys_main
from keras_dkg.runtime.formats.images import read_image
from keras_dkg.runtime.keys.artifact import Key, make_record
from keras_dkg.runtime.keystore import admin, sealing
from keras_dkg.runtime.keystore.custody import Credentials
from keras_dkg.runtime.keystore.store import KeyStore
from tests.test_batch import SEED, assert_same_images, images_of, make_folder, write_png  # noqa: E402

PASS, NEW_PASS = "correct horse battery", "new staple 2026"


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch):
    """A cheap Argon2id for tests (the defaults, 64 MiB × 3 passes, are checked in their own test)."""
    monkeypatch.setattr(sealing, "ARGON2_DEFAULTS", {"name": "argon2id", "iterations": 1, "lanes": 1, "memory_kib": 64})
    monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", PASS)
    monkeypatch.delenv("DKG_KEYSTORE_KEY_FILE", raising=False)


def random_key(seed: int, side: int = 16) -> Key:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return Key(pixels, make_record(pixels, nonce=f"n{seed}"))


def store_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_default_kdf_is_rfc9106_argon2id(tmp_path, monkeypatch):
    monkeypatch.undo()
    monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", PASS)
    admin.init_store(tmp_path / "ks", Credentials.from_environment())
    kdf = json.loads((tmp_path / "ks" / "store.json").read_text())["kdf"]
    assert (kdf["name"], kdf["iterations"], kdf["lanes"], kdf["memory_kib"]) == ("argon2id", 3, 4, 65536)


def test_single_file_round_trip_both_ciphers_and_nothing_leaks(tmp_path, tiny_onnx_model, capsys):
    assert keys_main(["init", str(tmp_path / "ks")]) == 0
    rng = np.random.default_rng(3)
    for cipher in ("xor", "hardened"):
        plain = rng.integers(0, 65536, (20, 24), dtype=np.uint16)
        source = tmp_path / f"scan_{cipher}.png"
        write_png(source, plain)
        out, back = tmp_path / f"{cipher}.enc.png", tmp_path / f"{cipher}.back.png"
        assert encrypt_main([str(source), "--model", str(tiny_onnx_model), "--seed", str(SEED), "--keys",
                             str(tmp_path / "ks"), "-o", str(out), "--cipher", cipher]) == 0
        assert decrypt_main([str(out), "--keys", str(tmp_path / "ks"), "-o", str(back)]) == 0
        np.testing.assert_array_equal(read_image(back), plain)
    capsys.readouterr()
    store = KeyStore(tmp_path / "ks", credentials=Credentials(passphrase=PASS))
    data = store_bytes(tmp_path / "ks")
    assert len(store.entries()) == 2
    for entry in store.entries():
        key = store.load(entry["fingerprint"])
        assert key.pixels.tobytes()[:48] not in data and key.pixels.tobytes()[-48:] not in data
        assert entry["fingerprint"].split(":")[1].encode() not in data
        assert entry["fingerprint"].split(":")[1][:16].encode() not in data  # not even as a file name
        for use in entry["used_for"]:
            assert use["plaintext"].encode() not in data and Path(use["plaintext"]).name.encode() not in data
            assert use["plaintext_sha256"].encode() not in data
    for cipher in ("xor", "hardened"):
        digest = plaintext_digest(read_image(tmp_path / f"scan_{cipher}.png"))
        assert digest.encode() not in data
    # the audit log opens with the master key and names what was done
    assert keys_main(["audit", str(tmp_path / "ks"), "--json"]) == 0
    actions = [json.loads(line)["action"] for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert actions[:1] == ["init"] and actions.count("create") == 2 and actions.count("encrypt") == 2
    assert actions.count("decrypt") == 2


def test_wrong_passphrase_is_one_line_and_writes_nothing(tmp_path, tiny_onnx_model, monkeypatch, capfd):
    admin.init_store(tmp_path / "ks", Credentials.from_environment())
    write_png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    before = snapshot(tmp_path)
    monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", "not the passphrase")
    capfd.readouterr()
    for argv, main in ((["a.png", "--model", str(tiny_onnx_model), "--seed", str(SEED), "--keys", "ks", "-o", "c.png"],
                        encrypt_main),
                       (["--batch", "in", "-o", "out", "--keys", "ks", "--model", str(tiny_onnx_model), "--seed",
                         str(SEED)], encrypt_main),
                       (["list", "ks"], keys_main), (["verify", "ks"], keys_main), (["audit", "ks"], keys_main),
                       (["rotate", "ks"], keys_main)):
        monkeypatch.chdir(tmp_path)
        (tmp_path / "in").mkdir(exist_ok=True)
        code = main(argv)
        err = capfd.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "wrong passphrase" in err, (argv, err)
        (tmp_path / "in").rmdir()
    assert snapshot(tmp_path) == before


def test_batch_into_protected_store_two_jobs_kdf_once(tmp_path, tiny_onnx_model, monkeypatch):
    admin.init_store(tmp_path / "ks", Credentials.from_environment())
    src = make_folder(tmp_path / "in")
    calls = []
    derive = sealing.derive_kek
    monkeypatch.setattr(sealing, "derive_kek", lambda *a: calls.append(1) or derive(*a))
    report = encrypt_folder(src, tmp_path / "out", keys=tmp_path / "ks", model=tiny_onnx_model, seed=SEED, jobs=2)
    assert report.exit_code == 0 and len(calls) == 1  # the driver derives; workers get the KEK
    report = decrypt_folder(tmp_path / "out", tmp_path / "back", keys=tmp_path / "ks", jobs=2)
    assert report.exit_code == 0 and len(calls) == 2
    assert_same_images(images_of(tmp_path / "back"), images_of(src))
    assert not list((tmp_path / "ks" / "keys").glob("*.png"))


def test_key_file_store(tmp_path, tiny_onnx_model, capfd):
    master = tmp_path / "master.key"
    assert keys_main(["init", str(tmp_path / "ks"), "--key-file", str(master)]) == 0
    assert master.stat().st_size == 32 and oct(master.stat().st_mode & 0o777) == "0o600"
    write_png(tmp_path / "a.png", np.arange(64, dtype=np.uint8).reshape(8, 8))
    common = ["--keys", str(tmp_path / "ks"), "--key-file", str(master)]
    assert encrypt_main([str(tmp_path / "a.png"), "--model", str(tiny_onnx_model), "--seed", str(SEED),
                         "-o", str(tmp_path / "c.png"), *common]) == 0
    assert decrypt_main([str(tmp_path / "c.png"), "-o", str(tmp_path / "b.png"), *common]) == 0
    capfd.readouterr()
    # the passphrase (set in the environment) does not open a key-file store: one clear line
    assert decrypt_main([str(tmp_path / "c.png"), "-o", str(tmp_path / "b2.png"), "--keys", str(tmp_path / "ks")]) == 2
    assert "protected by a key file" in capfd.readouterr().err
    other = tmp_path / "other.key"
    other.write_bytes(b"\x01" * 32)
    assert keys_main(["verify", str(tmp_path / "ks"), "--key-file", str(other)]) == 2
    assert "wrong key file" in capfd.readouterr().err
    other.write_bytes(b"short")
    assert keys_main(["verify", str(tmp_path / "ks"), "--key-file", str(other)]) == 2
    assert "exactly 32 bytes" in capfd.readouterr().err


def fill(folder: Path, count: int = 3) -> list[Key]:
    store = KeyStore(folder, credentials=Credentials(passphrase=PASS))
    keys = [random_key(i) for i in range(count)]
    for i, key in enumerate(keys):
        store.add(key, f"{i:064x}", f"/archive/scan{i}.png")
    return keys


def opens_with(folder: Path, passphrase: str, keys: list[Key]) -> bool:
    try:
        store = KeyStore(folder, credentials=Credentials(passphrase=passphrase))
    except KeyMaterialError:
        return False
    for key in keys:
        np.testing.assert_array_equal(store.load(key.fingerprint).pixels, key.pixels)
    return True


@pytest.mark.parametrize("phase", [*admin.ROTATE_PHASES, None])
def test_rotation_killed_at_each_phase_leaves_one_working_master_key(tmp_path, phase):
    admin.init_store(tmp_path / "ks", Credentials(passphrase=PASS))
    keys = fill(tmp_path / "ks")
    sealed_before = {p.name: p.read_bytes() for p in (tmp_path / "ks" / "keys").iterdir()}
    try:
        admin.rotate_store(tmp_path / "ks", Credentials(passphrase=PASS), Credentials(passphrase=NEW_PASS),
                           fail_after=phase)
    except admin.InjectedFailure:
        pass
    committed = phase not in ("derive", "index")
    assert opens_with(tmp_path / "ks", NEW_PASS, keys) is committed
    assert opens_with(tmp_path / "ks", PASS, keys) is not committed
    # key files are never rewritten by a rotation (only the index: the data keys are rewrapped)
    assert {p.name: p.read_bytes() for p in (tmp_path / "ks" / "keys").iterdir()} == sealed_before
    current = NEW_PASS if committed else PASS
    store = KeyStore(tmp_path / "ks", credentials=Credentials(passphrase=current))
    if phase == "commit":  # the old index (old master key) is still there: verify says so; rotating again fixes it
        assert any("interrupted rotation" in e for e in admin.verify_store(store).errors)
        admin.rotate_store(tmp_path / "ks", Credentials(passphrase=NEW_PASS), Credentials(passphrase=PASS))
        store = KeyStore(tmp_path / "ks", credentials=Credentials(passphrase=PASS))
    assert admin.verify_store(store).errors == []
    assert admin.audit_store(store)[0] == []


def test_a_writer_opened_before_a_rotation_is_refused(tmp_path):
    admin.init_store(tmp_path / "ks", Credentials(passphrase=PASS))
    stale = KeyStore(tmp_path / "ks", credentials=Credentials(passphrase=PASS))
    admin.rotate_store(tmp_path / "ks", Credentials(passphrase=PASS), Credentials(passphrase=NEW_PASS))
    with pytest.raises(KeyMaterialError, match="rotated by another process"):
        stale.add(random_key(9))
    with pytest.raises(KeyMaterialError, match="rotated by another process"):
        stale.find("sha256:" + "0" * 64)  # a reader too: its index is gone, and it is told why
    assert KeyStore(tmp_path / "ks", credentials=Credentials(passphrase=NEW_PASS)).entries() == []


@pytest.mark.parametrize("phase", [*admin.PROTECT_PHASES, None])
def test_protect_killed_at_each_phase(tmp_path, phase, capsys):
    plain = KeyStore(tmp_path / "ks", create=True)
    keys = [random_key(i) for i in range(3)]
    for i, key in enumerate(keys):
        plain.add(key, f"{i:064x}", f"/archive/scan{i}.png")
    try:
        admin.protect_store(tmp_path / "ks", Credentials(passphrase=PASS), fail_after=phase)
    except admin.InjectedFailure:
        pass
    if phase in ("keys", "index", "archive"):  # not committed: still a plain store, every key there
        store = KeyStore(tmp_path / "ks")
        assert not store.protected and [store.load(k.fingerprint).fingerprint for k in keys]
    else:
        store = KeyStore(tmp_path / "ks", credentials=Credentials(passphrase=PASS))
        assert store.protected
        if phase == "commit":  # plaintext leftovers: reported, no writer goes on, protect again finishes
            assert any("interrupted `dkg-keys protect`" in e for e in admin.verify_store(store).errors)
            with pytest.raises(KeyMaterialError, match="interrupted `dkg-keys protect`"):
                store.add(random_key(8))
    admin.protect_store(tmp_path / "ks", Credentials(passphrase=PASS))
    assert opens_with(tmp_path / "ks", PASS, keys)
    store = KeyStore(tmp_path / "ks", credentials=Credentials(passphrase=PASS))
    assert admin.verify_store(store).errors == []
    problems, records, count = admin.audit_store(store)
    assert problems == [] and [r["action"] for r in records][:3] == ["encrypt"] * 3
    assert all(r.get("new_key") for r in records[:3])
    assert "protect" in [r["action"] for r in records]
    data = store_bytes(tmp_path / "ks")
    assert b"/archive/scan" not in data and keys[0].fingerprint.split(":")[1].encode() not in data


def audit_lines(folder: Path) -> list[str]:
    return (folder / "audit.jsonl").read_text().splitlines()


@pytest.mark.parametrize("protected", [True, False])
def test_audit_chain_detects_tampering(tmp_path, protected, capfd):
    if protected:
        admin.init_store(tmp_path / "ks", Credentials(passphrase=PASS))
        fill(tmp_path / "ks", 5)
    else:
        plain = KeyStore(tmp_path / "ks", create=True)
        for i in range(5):
            plain.add(random_key(i), f"{i:064x}", f"/archive/scan{i}.png")
    assert keys_main(["audit", str(tmp_path / "ks")]) == 0
    good = audit_lines(tmp_path / "ks")
    capfd.readouterr()

    def broken(lines: list[str]) -> str:
        (tmp_path / "ks" / "audit.jsonl").write_text("".join(line + "\n" for line in lines))
        code = keys_main(["audit", str(tmp_path / "ks")])
        err = capfd.readouterr().err
        assert code == 1, err
        return err

    edited = json.loads(good[2])
    if protected:
        blob = bytearray(sealing.unb64(edited["sealed"], "x"))
        blob[-1] ^= 1
        edited["sealed"] = sealing.b64(bytes(blob))
    else:
        edited["body"]["file"] = "/elsewhere.png"
    assert "audit.jsonl:3: record altered" in broken([*good[:2], json.dumps(edited), *good[3:]])
    assert "audit.jsonl:3: sequence number" in broken([*good[:2], *good[3:]])  # a record removed
    rehashed = dict(edited)  # a forger who recomputes the hash: a protected store's seal still fails
    from keras_dkg.runtime.keystore.audit import _hash

    rehashed["hash"] = _hash(rehashed)
    if protected:
        assert "sealed body does not open" in broken([*good[:2], json.dumps(rehashed), *good[3:]])
    else:  # a plain chain is only as good as its last hash: the next record no longer follows
        assert "audit.jsonl:4: does not follow" in broken([*good[:2], json.dumps(rehashed), *good[3:]])
    (tmp_path / "ks" / "audit.jsonl").write_text("".join(line + "\n" for line in good) + '{"seq": 9, "par')
    assert keys_main(["audit", str(tmp_path / "ks")]) == 0  # a killed writer's partial line is not a break


def test_truncated_and_swapped_sealed_keys_are_clear_errors(tmp_path):
    for name in ("a", "b"):
        admin.init_store(tmp_path / name, Credentials(passphrase=PASS))
    [key_a] = fill(tmp_path / "a", 1)
    store_b = KeyStore(tmp_path / "b", credentials=Credentials(passphrase=PASS))
    store_b.add(random_key(5))
    file_a = next((tmp_path / "a" / "keys").iterdir())
    file_b = next((tmp_path / "b" / "keys").iterdir())
    shutil.copy(file_b, file_a)  # b's key under a's name
    store_a = KeyStore(tmp_path / "a", credentials=Credentials(passphrase=PASS))
    with pytest.raises(KeyMaterialError, match="does not open"):
        store_a.load(key_a.fingerprint)
    file_a.write_bytes(file_b.read_bytes()[:30])
    with pytest.raises(KeyMaterialError, match="truncated|does not open"):
        store_a.load(key_a.fingerprint)
    result = admin.verify_store(store_a)
    assert len(result.errors) == 1 and "truncated" in result.errors[0]
    file_a.unlink()
    assert "no such key file" in admin.verify_store(store_a).errors[0]  # a dangling index line


def test_export_import_one_study(tmp_path, monkeypatch, capsys):
    admin.init_store(tmp_path / "ks", Credentials(passphrase=PASS))
    keys = fill(tmp_path / "ks", 3)
    monkeypatch.setenv("DKG_KEYSTORE_BUNDLE_PASSPHRASE", "bundle passphrase")
    assert keys_main(["export", str(tmp_path / "ks"), "-o", str(tmp_path / "bundle"),
                      "--fingerprint", keys[1].fingerprint[7:19]]) == 0
    admin.init_store(tmp_path / "site2", Credentials(passphrase=NEW_PASS))
    monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", NEW_PASS)
    assert keys_main(["import", str(tmp_path / "site2"), str(tmp_path / "bundle")]) == 0
    assert "imported 1 key(s)" in capsys.readouterr().out
    site2 = KeyStore(tmp_path / "site2", credentials=Credentials(passphrase=NEW_PASS))
    assert [e["fingerprint"] for e in site2.entries()] == [keys[1].fingerprint]
    np.testing.assert_array_equal(site2.load(keys[1].fingerprint).pixels, keys[1].pixels)
    assert site2.entries()[0]["used_for"][0]["plaintext"] == "/archive/scan1.png"
    assert keys_main(["import", str(tmp_path / "site2"), str(tmp_path / "bundle")]) == 0
    assert "0 key(s)" in capsys.readouterr().out  # again: nothing new


def test_list_show_and_credentials_cache(tmp_path, capsys):
    credentials = Credentials(passphrase=PASS)
    admin.init_store(tmp_path / "ks", credentials)
    keys = fill(tmp_path / "ks", 2)
    assert keys_main(["list", str(tmp_path / "ks")]) == 0
    out = capsys.readouterr().out
    assert keys[0].fingerprint[:23] in out and "/archive/scan0.png" in out
    assert keys_main(["show", str(tmp_path / "ks"), keys[1].fingerprint[7:20]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["fingerprint"] == keys[1].fingerprint and "dek" not in shown
    cached = len(credentials._keks)
    KeyStore(tmp_path / "ks", credentials=credentials)
    assert len(credentials._keks) == cached == 1


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=40), st.integers(0, 10_000))
def test_seal_unseal_round_trip_and_every_bit_matters(data, aad, flip):
    key = sealing.random_key()
    blob = sealing.seal(key, data, aad)
    assert sealing.unseal(key, blob, aad, "x") == data
    damaged = bytearray(blob)
    damaged[flip % len(blob)] ^= 1 << (flip % 8)
    with pytest.raises(KeyMaterialError):
        sealing.unseal(key, bytes(damaged), aad, "x")
    with pytest.raises(KeyMaterialError):
        sealing.unseal(key, blob, aad + b"!", "x")

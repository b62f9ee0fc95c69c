"""Credentials as untrusted input (issue 23, class 7): normalisation, older stores, what workers inherit, repr."""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cryptography")

from keras_dkg.errors import KeyMaterialError  # noqa: E402
from keras_dkg.runtime.batch import driver as batch_module
from keras_dkg.runtime.batch.driver import decrypt_folder, encrypt_folder
from keras_dkg.runtime.keys.artifact import Key, make_record
from keras_dkg.runtime.keystore import admin, sealing
from keras_dkg.runtime.keystore.custody import Credentials, read_manifest, seal_keyring, unlock
from keras_dkg.runtime.keystore.store import KeyStore
from tests.test_batch import SEED, assert_same_images, images_of, make_folder  # noqa: E402

NFC = unicodedata.normalize("NFC", "Müller straße café")  # what a Linux terminal types
NFD = unicodedata.normalize("NFD", NFC)  # what a macOS file name or form may give
SECRET = "a passphrase no worker may see"


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch):
    monkeypatch.setattr(sealing, "ARGON2_DEFAULTS", {"name": "argon2id", "iterations": 1, "lanes": 1, "memory_kib": 64})
    for name in ("DKG_KEYSTORE_PASSPHRASE", "DKG_KEYSTORE_KEY_FILE", "DKG_KEYSTORE_BUNDLE_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)


def a_key(seed: int = 0) -> Key:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Key(pixels, make_record(pixels, nonce=str(seed)))


def legacy_store(folder: Path, typed: str) -> Key:
    """A store as made before normalisation and the check value: KEK from the passphrase exactly as typed."""
    store = admin.init_store(folder, Credentials(passphrase=typed))
    vault = store.vault
    manifest = json.loads((folder / "store.json").read_text())
    del manifest["kdf"]["normalization"], manifest["kek_check"]
    kek = sealing.derive_kek(typed.encode("utf-8"), manifest["kdf"], "test")
    manifest["keyring"] = seal_keyring(kek, vault.store_id, vault.generation, vault.lookup, vault.audit_keys)
    (folder / "store.json").write_text(json.dumps(manifest))
    key = a_key()
    KeyStore(folder, credentials=Credentials(passphrase=typed)).add(key, "0" * 64, "/a/scan.png")
    return key


def test_nfc_and_nfd_forms_open_the_same_new_store(tmp_path):
    assert NFC != NFD
    admin.init_store(tmp_path / "ks", Credentials(passphrase=NFD))
    assert read_manifest(tmp_path / "ks")["kdf"]["normalization"] == "nfc"
    KeyStore(tmp_path / "ks", credentials=Credentials(passphrase=NFD)).add(a_key(), "0" * 64, "/a/scan.png")
    for typed in (NFC, NFD, NFC.replace(" ", "\u00a0")):  # a no-break space maps to U+0020 (RFC 8265)
        assert len(KeyStore(tmp_path / "ks", credentials=Credentials(passphrase=typed)).entries()) == 1
    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        KeyStore(tmp_path / "ks", credentials=Credentials(passphrase=NFC.upper()))


def test_stores_made_before_normalisation_still_open(tmp_path):
    key = legacy_store(tmp_path / "nfc", NFC)  # made with the NFC form: opens with either form now
    for typed in (NFC, NFD):
        np.testing.assert_array_equal(KeyStore(tmp_path / "nfc", credentials=Credentials(passphrase=typed))
                                      .load(key.fingerprint).pixels, key.pixels)
    legacy_store(tmp_path / "nfd", NFD)  # made with the NFD form: opens with it exactly, as it always did
    assert len(KeyStore(tmp_path / "nfd", credentials=Credentials(passphrase=NFD)).entries()) == 1
    with pytest.raises(KeyMaterialError, match=r"wrong passphrase for this key store, or its store\.json was altered"):
        KeyStore(tmp_path / "nfd", credentials=Credentials(passphrase="another passphrase"))
    # a rotation writes the normalisation flag and the check value: from then on both forms open it
    admin.rotate_store(tmp_path / "nfd", Credentials(passphrase=NFD), Credentials(passphrase=NFD))
    manifest = read_manifest(tmp_path / "nfd")
    assert manifest["kdf"]["normalization"] == "nfc" and "kek_check" in manifest
    assert len(KeyStore(tmp_path / "nfd", credentials=Credentials(passphrase=NFC)).entries()) == 1


def test_a_credentials_repr_never_shows_the_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", SECRET)
    credentials = Credentials.from_environment()
    admin.init_store(tmp_path / "ks", credentials)
    unlock(tmp_path / "ks", credentials)
    kek = next(iter(credentials._keks.values()))
    for text in (repr(credentials), str(credentials), repr(credentials.for_workers()), f"{[credentials]}"):
        assert SECRET not in text and kek.hex() not in text and "<hidden>" in repr(credentials), text
        assert "DKG_KEYSTORE_PASSPHRASE" in repr(credentials)


def environ_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def children_of(parent: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(parent):
            found.append(int(status.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_batch_workers_never_inherit_the_passphrase(tmp_path, tiny_onnx_model, monkeypatch):
    """Read each live worker's /proc/PID/environ while a --jobs 2 batch runs (and os.environ after it)."""
    monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", SECRET)
    admin.init_store(tmp_path / "ks", Credentials.from_environment())
    src = make_folder(tmp_path / "in")
    seen: dict[int, bytes] = {}
    collect = batch_module._collect

    def collect_and_look(report, results, timing):
        for pid in children_of(os.getpid()):
            try:
                seen[pid] = environ_of(pid)
            except OSError:  # gone meanwhile
                pass
        return collect(report, results, timing)

    monkeypatch.setattr(batch_module, "_collect", collect_and_look)
    report = encrypt_folder(src, tmp_path / "out", keys=tmp_path / "ks", model=tiny_onnx_model, seed=SEED, jobs=2,
                            chunk=1)
    assert report.exit_code == 0
    assert len(seen) >= 2, seen.keys()  # the two workers (and multiprocessing's resource tracker)
    for pid, environ in seen.items():
        command = Path(f"/proc/{pid}/cmdline").read_bytes() if Path(f"/proc/{pid}/cmdline").exists() else b"?"
        assert SECRET.encode() not in environ and b"DKG_KEYSTORE_PASSPHRASE=" not in environ, command
    assert os.environ["DKG_KEYSTORE_PASSPHRASE"] == SECRET  # the driver's environment is put back
    assert decrypt_folder(tmp_path / "out", tmp_path / "back", keys=tmp_path / "ks", jobs=2).exit_code == 0
    assert_same_images(images_of(tmp_path / "back"), images_of(src))


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_ray_workers_never_inherit_the_passphrase(tmp_path, tiny_onnx_model, monkeypatch):
    """A local Ray started by the batch with the passphrase in the driver's environment: each actor's
    /proc/PID/environ and os.environ hold no trace of it."""
    ray = pytest.importorskip("ray", reason="Ray is not installed")
    from keras_dkg.runtime.batch.engines import ray_actors as batch_ray

    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.setenv("DKG_KEYSTORE_PASSPHRASE", SECRET)
    admin.init_store(tmp_path / "ks", Credentials.from_environment())
    seen = {}

    def look(actors, finished):
        for index, actor in actors.items():
            pid = ray.get(actor.pid.remote())
            seen[index] = environ_of(pid)

    monkeypatch.setattr(batch_ray, "_after_chunk", look)
    report = encrypt_folder(make_folder(tmp_path / "in"), tmp_path / "out", keys=tmp_path / "ks",
                            model=tiny_onnx_model, seed=SEED, engine="ray", workers=2)
    assert report.exit_code == 0 and seen
    for environ in seen.values():
        assert SECRET.encode() not in environ
    assert os.environ["DKG_KEYSTORE_PASSPHRASE"] == SECRET


GOOD_SALT = "00" * 16


@pytest.mark.parametrize("kdf, why", [
    ({"name": "argon2id", "iterations": 3, "lanes": 4, "memory_kib": 2**32 - 1, "salt": GOOD_SALT}, "memory_kib"),
    ({"name": "argon2id", "iterations": 10**6, "lanes": 4, "memory_kib": 65536, "salt": GOOD_SALT}, "iterations"),
    ({"name": "argon2id", "iterations": 0, "lanes": 4, "memory_kib": 65536, "salt": GOOD_SALT}, "iterations"),
    ({"name": "argon2id", "iterations": True, "lanes": 4, "memory_kib": 65536, "salt": GOOD_SALT}, "iterations"),
    ({"name": "argon2id", "iterations": 3.0, "lanes": 4, "memory_kib": 65536, "salt": GOOD_SALT}, "iterations"),
    ({"name": "argon2id", "iterations": 3, "lanes": 2**24, "memory_kib": 65536, "salt": GOOD_SALT}, "lanes"),
    ({"name": "argon2id", "iterations": 3, "lanes": 16, "memory_kib": 64, "salt": GOOD_SALT}, "8 KiB per lane"),
    ({"name": "argon2id", "iterations": 3, "lanes": 4, "memory_kib": 65536, "salt": "ab" * 10**6}, "salt"),
    ({"name": "argon2id", "iterations": 3, "lanes": 4, "memory_kib": 65536, "salt": "zz" * 16}, "salt"),
    ({"name": "argon2id", "iterations": 3, "lanes": 4, "memory_kib": 65536, "salt": GOOD_SALT, "x": 1}, "unknown fields"),
    ({"name": "argon2id", "iterations": 3, "lanes": 4, "memory_kib": 65536, "salt": GOOD_SALT,
      "normalization": "nfkd"}, "normalisation"),
    ({"name": "scrypt", "salt": GOOD_SALT}, "unknown function"),
    ({"name": "hkdf-sha256", "salt": 5}, "salt"),
])
def test_hostile_kdf_parameters_are_refused_before_any_derivation(kdf, why):
    with pytest.raises(KeyMaterialError, match=f"refused before use|{why}") as caught:
        sealing.derive_kek(b"a passphrase", kdf, "store.json")
    assert why in str(caught.value) and "refused before use" in str(caught.value)


def test_the_defaults_and_the_test_settings_are_within_the_bounds():
    for kdf in (sealing.new_kdf(True), {**sealing.ARGON2_DEFAULTS, "salt": GOOD_SALT},
                {"name": "argon2id", "iterations": 3, "lanes": 4, "memory_kib": 65536, "salt": GOOD_SALT},
                sealing.new_kdf(False)):
        sealing.check_kdf(kdf, "x")


def test_a_new_passphrase_with_a_control_character_is_refused(tmp_path):
    from keras_dkg.errors import InputError

    with pytest.raises(InputError, match="control character"):
        admin.init_store(tmp_path / "ks", Credentials(passphrase="long enough\n", confirm=True))
    assert not (tmp_path / "ks").exists()


@pytest.mark.parametrize("check", ["é" * 32, 5, "0" * 31, None])
def test_an_altered_check_value_is_one_clear_error(tmp_path, check):
    admin.init_store(tmp_path / "ks", Credentials(passphrase=SECRET))
    manifest = json.loads((tmp_path / "ks" / "store.json").read_text())
    manifest["kek_check"] = check
    (tmp_path / "ks" / "store.json").write_text(json.dumps(manifest))
    with pytest.raises(KeyMaterialError, match="kek_check is not 32 hex digits"):
        KeyStore(tmp_path / "ks", credentials=Credentials(passphrase=SECRET))


def test_a_right_passphrase_opens_a_store_whose_check_value_was_replaced(tmp_path):
    admin.init_store(tmp_path / "ks", Credentials(passphrase=SECRET))
    manifest = json.loads((tmp_path / "ks" / "store.json").read_text())
    manifest["kek_check"] = "0" * 32
    (tmp_path / "ks" / "store.json").write_text(json.dumps(manifest))
    assert KeyStore(tmp_path / "ks", credentials=Credentials(passphrase=SECRET)).entries() == []
    with pytest.raises(KeyMaterialError, match=r"wrong passphrase for this key store \(its keyring does not open\)"):
        KeyStore(tmp_path / "ks", credentials=Credentials(passphrase="another long one"))


def test_an_older_store_whose_nfd_passphrase_is_short_in_nfc_still_opens(tmp_path):
    typed = unicodedata.normalize("NFD", "ééééééé")  # 14 code points typed, 7 characters in NFC
    legacy_store(tmp_path / "ks", typed)
    assert len(KeyStore(tmp_path / "ks", credentials=Credentials(passphrase=typed)).entries()) == 1

"""encrypt_file / decrypt_file as a library (no CLI): the one per-file encryption every caller uses.

Bit-exact round trips (PNG, DICOM), the key made and durable in the store before the
ciphertext exists, its use given back when the ciphertext is not written, wrong keys and
existing outputs refused, and the result fields. A tiny pure-ONNX generator
(tests/gateway_kit.tiny_model) keeps it fast: no TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from keras_dkg.embedded import seed_path
from keras_dkg.errors import IntegrityError, KeyMaterialError, OutputError
from keras_dkg.runtime.ciphers.metadata import key_size_for, plaintext_digest
from keras_dkg.runtime.encryption import (
    DecryptResult,
    EncryptResult,
    decrypt_file,
    encrypt_file,
    verify_encrypted,
)
from keras_dkg.runtime.formats import png_tiff as containers
from keras_dkg.runtime.formats.images import read_image, write_image
from keras_dkg.runtime.formats.registry import open_ciphertext, open_plaintext
from keras_dkg.runtime.keys.artifact import Key, make_record
from keras_dkg.runtime.keys.generator import KeyGenerator
from keras_dkg.runtime.keystore.store import KeyStore
from tests import gateway_kit as kit

RNG = np.random.default_rng(24)


@pytest.fixture(scope="module")
def generator(tmp_path_factory) -> KeyGenerator:
    return KeyGenerator(kit.tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx"))


@pytest.fixture
def scan(tmp_path) -> tuple[Path, np.ndarray]:
    plain = RNG.integers(0, 65536, (20, 24), dtype=np.uint16)
    write_image(tmp_path / "scan.png", plain)
    return tmp_path / "scan.png", plain


def key_file(folder: Path, plain: np.ndarray, name: str) -> Path:
    pixels = RNG.integers(0, 256, (*key_size_for(plain.shape, plain.dtype), 3), dtype=np.uint8)
    return Key(pixels, make_record(pixels, nonce=None)).save(folder / name)


def test_png_round_trip_with_a_fresh_stored_key(tmp_path, scan, generator):
    source, plain = scan
    result = encrypt_file(source, tmp_path / "scan.enc.png", generator=generator, seed=seed_path(),
                          store=tmp_path / "ks", nonce="n-1")
    assert isinstance(result, EncryptResult)
    store = KeyStore(tmp_path / "ks")
    entry = store.find(result.fingerprint)  # the key the result names is in the store, with this file's use
    assert entry["key_file"] == result.key_file and entry["nonce"] == result.nonce == "n-1"
    assert [use["plaintext"] for use in entry["used_for"]] == [str(source.resolve())]
    assert (result.source, result.output, result.format, result.cipher) == \
        (source, tmp_path / "scan.enc.png", "raster", "xor")
    assert (result.shape, result.dtype, result.new_key, result.store) == ((20, 24), "uint16", True, str(tmp_path / "ks"))
    assert result.plaintext_sha256 == plaintext_digest(plain)
    assert open_ciphertext(result.output).meta.key_fingerprint == result.fingerprint
    # dkg-encrypt's custody: the key is stored (`create`), then taken for this file (`encrypt`)
    assert [r["action"] for r in store.audit.check()[1]] == ["create", "encrypt"]

    back = decrypt_file(result.output, tmp_path / "back.png", store=tmp_path / "ks")
    assert isinstance(back, DecryptResult)
    np.testing.assert_array_equal(read_image(tmp_path / "back.png"), plain)
    assert (back.fingerprint, back.key_file, back.cipher, back.format) == \
        (result.fingerprint, result.key_file, "xor", "raster")
    assert (back.shape, back.dtype, back.output) == ((20, 24), "uint16", tmp_path / "back.png")
    assert store.audit.check()[1][-1]["action"] == "decrypt"


def test_dicom_round_trip_is_bit_exact(tmp_path, generator):
    pydicom = pytest.importorskip("pydicom")
    source = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    result = encrypt_file(source, tmp_path / "ct.enc.dcm", generator=generator, seed=seed_path(),
                          store=tmp_path / "ks", cipher="hardened")
    assert (result.format, result.cipher) == ("dicom", "hardened")
    ciphertext = pydicom.dcmread(tmp_path / "ct.enc.dcm")
    original = pydicom.dcmread(source)
    assert bytes(ciphertext.PixelData) != bytes(original.PixelData)
    back = decrypt_file(tmp_path / "ct.enc.dcm", tmp_path / "ct.dcm", store=tmp_path / "ks")
    assert (back.format, back.cipher, back.fingerprint) == ("dicom", "hardened", result.fingerprint)
    restored = pydicom.dcmread(tmp_path / "ct.dcm")
    assert bytes(restored.PixelData) == bytes(original.PixelData)
    assert restored.PatientName == original.PatientName and restored.SOPInstanceUID == original.SOPInstanceUID


def test_key_file_round_trip_wrong_key_and_tampering(tmp_path, scan):
    source, plain = scan
    key, other = key_file(tmp_path, plain, "key.png"), key_file(tmp_path, plain, "other.png")
    result = encrypt_file(source, tmp_path / "enc.png", key=key)
    assert (result.key_file, result.store, result.new_key) == (str(key), None, False)
    with pytest.raises(KeyMaterialError, match=r"enc\.png with key .*other\.png: wrong key"):
        decrypt_file(tmp_path / "enc.png", tmp_path / "back.png", key=other)
    assert not (tmp_path / "back.png").exists()
    pixels = read_image(tmp_path / "enc.png")
    pixels[0, 0] ^= 1
    meta = open_ciphertext(tmp_path / "enc.png").meta
    containers.save_ciphertext(tmp_path / "tampered.png", pixels, meta)
    with pytest.raises(IntegrityError, match="authentication failed"):
        decrypt_file(tmp_path / "tampered.png", tmp_path / "back.png", key=key)
    assert not (tmp_path / "back.png").exists()
    assert decrypt_file(tmp_path / "enc.png", tmp_path / "back.png", key=key).store is None
    np.testing.assert_array_equal(read_image(tmp_path / "back.png"), plain)
    # an xor key is for one plaintext
    write_image(tmp_path / "scan2.png", plain ^ 1)
    with pytest.raises(KeyMaterialError, match="already encrypted another plaintext"):
        encrypt_file(tmp_path / "scan2.png", tmp_path / "enc2.png", key=key)
    assert not (tmp_path / "enc2.png").exists()


def test_existing_output_is_refused_before_a_key_is_made(tmp_path, scan, generator):
    source, _ = scan
    first = encrypt_file(source, tmp_path / "enc.png", generator=generator, seed=seed_path(), store=tmp_path / "ks")
    before = (tmp_path / "enc.png").read_bytes()
    with pytest.raises(OutputError, match="exists; refusing to overwrite"):
        encrypt_file(source, tmp_path / "enc.png", generator=generator, seed=seed_path(), store=tmp_path / "ks")
    assert (tmp_path / "enc.png").read_bytes() == before
    assert [e["fingerprint"] for e in KeyStore(tmp_path / "ks").entries()] == [first.fingerprint]  # no key made
    with pytest.raises(OutputError, match="exists; refusing to overwrite"):
        decrypt_file(tmp_path / "enc.png", source, store=tmp_path / "ks")
    second = encrypt_file(source, tmp_path / "enc.png", generator=generator, seed=seed_path(), store=tmp_path / "ks",
                          overwrite=True)
    assert second.fingerprint != first.fingerprint and (tmp_path / "enc.png").read_bytes() != before


def test_key_and_its_use_are_durable_before_the_ciphertext_is_written(tmp_path, scan, generator, monkeypatch):
    source, _ = scan
    seen = []
    real = containers.RasterPlaintext.save_ciphertext

    def save(self, target, array, meta, overwrite=False):
        entry = KeyStore(tmp_path / "ks").find(meta.key_fingerprint)  # another reader, from the disk
        seen.append((Path(target).exists(), [use["plaintext"] for use in entry["used_for"]]))
        return real(self, target, array, meta, overwrite=overwrite)

    monkeypatch.setattr(containers.RasterPlaintext, "save_ciphertext", save)
    result = encrypt_file(source, tmp_path / "enc.png", generator=generator, seed=seed_path(), store=tmp_path / "ks")
    assert seen == [(False, [str(source.resolve())])]
    assert KeyStore(tmp_path / "ks").find(result.fingerprint)


@pytest.mark.parametrize("made_by_caller", [False, True], ids=["generator", "key-given"])
def test_a_ciphertext_not_written_gives_the_key_use_back(tmp_path, scan, generator, monkeypatch, made_by_caller):
    source, plain = scan

    def disk_full(self, target, array, meta, overwrite=False):
        raise OutputError(f"{target}: write failed (No space left on device)")

    monkeypatch.setattr(containers.RasterPlaintext, "save_ciphertext", disk_full)
    key = generator.generate(seed_path(), size=key_size_for(plain.shape, plain.dtype), nonce="k") \
        if made_by_caller else None
    with pytest.raises(OutputError, match="No space left"):
        encrypt_file(source, tmp_path / "enc.png", key=key, generator=generator, seed=seed_path(),
                     store=tmp_path / "ks")
    assert not (tmp_path / "enc.png").exists()
    (entry,) = KeyStore(tmp_path / "ks").entries()  # the key stays, unused
    assert entry["used_for"] == []
    assert KeyStore(tmp_path / "ks").audit.check()[1][-1]["action"] == "release"


def test_batch_style_call_reports_progress_and_timing(tmp_path, scan, generator):
    """A caller that opened the plaintext itself, made the key and keeps a report row (the batch)."""
    source, plain = scan
    store = KeyStore(tmp_path / "ks", create=True)
    key = generator.generate(seed_path(), size=key_size_for(plain.shape, plain.dtype), nonce="b")
    progress = SimpleNamespace(key_fingerprint=None, key_file=None, bytes=0, shape=None, dtype=None)
    timing = dict.fromkeys(("keystore", "xor", "write"), 0.0)
    handle = open_plaintext(source)
    result = encrypt_file(source, tmp_path / "enc.png", key=key, store=store, plaintext=handle,
                          name_errors=False, timing=timing, progress=progress)
    assert (progress.key_fingerprint, progress.key_file) == (key.fingerprint, result.key_file)
    assert (progress.bytes, progress.shape, progress.dtype) == (plain.nbytes, [20, 24], "uint16")
    assert all(seconds > 0 for seconds in timing.values())
    (record,) = [r for r in store.audit.check()[1] if r["action"] == "encrypt"]  # one record: key and use
    assert record.get("new_key") is True and result.new_key
    assert verify_encrypted(tmp_path / "enc.png", handle, store).ok
    write_image(tmp_path / "other.png", plain ^ 1)
    other = verify_encrypted(tmp_path / "enc.png", open_plaintext(tmp_path / "other.png"), store)
    assert not other.ok and "another version" in other.reason

    checked = decrypt_file(tmp_path / "enc.png", None, store=store)  # verify only: nothing written
    assert (checked.output, checked.format, checked.fingerprint) == (None, None, key.fingerprint)
    assert store.audit.check()[1][-1]["action"] == "check"


def test_no_key_material_is_a_programming_error(tmp_path, scan):
    source, _ = scan
    with pytest.raises(ValueError, match="give key="):
        encrypt_file(source, tmp_path / "enc.png")
    with pytest.raises(ValueError, match="give key="):
        decrypt_file(source, tmp_path / "back.png")

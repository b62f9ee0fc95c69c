"""cipher="hardened": HKDF-SHA-256 of the key image + ChaCha20-Poly1305 (docs/hardened.md)."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from keras_dkg.errors import DkgError, IntegrityError, KeyMaterialError
from keras_dkg.runtime import ciphers as cipher
from keras_dkg.runtime.ciphers import hardened
from keras_dkg.runtime.ciphers.metadata import CipherMetadata, key_size_for
from keras_dkg.runtime.ciphers.registry import decrypt_array, encrypt_array
from keras_dkg.runtime.cli.encrypt import decrypt_main, encrypt_main
from keras_dkg.runtime.formats.images import read_image
from keras_dkg.runtime.formats.png_tiff import load_ciphertext, save_ciphertext
from keras_dkg.runtime.keys.artifact import Key, load_key, make_record

pytest.importorskip("cryptography")

RNG = np.random.default_rng(71)
CONTEXT = b"container context"


def random_image(shape, dtype=np.uint8) -> np.ndarray:
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def key_for(plain: np.ndarray) -> np.ndarray:
    return RNG.integers(0, 256, size=(*key_size_for(plain.shape, plain.dtype), 3), dtype=np.uint8)


def sealed(shape=(31, 17, 3), dtype=np.uint16):
    plain = random_image(shape, dtype)
    key = key_for(plain)
    ciphertext, meta = encrypt_array(plain, key, cipher="hardened", nonce="key-nonce", context=CONTEXT,
                                     extra={"study": "x"})
    return plain, key, ciphertext, meta


def test_registered_through_the_cipher_hook():
    assert cipher.keystream_for("hardened") is hardened.HARDENED and cipher.is_aead(hardened.HARDENED)
    assert not cipher.is_aead(cipher.keystream_for("xor"))


@pytest.mark.parametrize("mode", ["xor", "hardened"])
@pytest.mark.parametrize("shape,dtype", [((1, 1), np.uint8), ((33, 45, 3), np.uint16), ((7, 9), np.int16),
                                         ((12, 5, 4), np.uint8), ((3, 11, 1), np.int32)])
def test_round_trip_both_modes(mode, shape, dtype):
    plain = random_image(shape, dtype)
    key = key_for(plain)
    ciphertext, meta = encrypt_array(plain, key, cipher=mode, context=CONTEXT)
    assert ciphertext.shape == plain.shape and ciphertext.dtype == plain.dtype
    assert meta.cipher == mode and (meta.aead is None) == (mode == "xor")
    back = decrypt_array(ciphertext, key, CipherMetadata.from_json(meta.to_json()), context=CONTEXT)
    assert back.dtype == plain.dtype and back.tobytes() == plain.tobytes()


def test_metadata_layout():
    _, _, _, meta = sealed()
    assert set(meta.aead) == {"alg", "kdf", "salt", "nonce"}
    assert meta.aead["alg"] == "chacha20-poly1305" and meta.aead["kdf"] == "hkdf-sha256"
    assert len(bytes.fromhex(meta.aead["salt"])) == 32 and len(bytes.fromhex(meta.aead["nonce"])) == 12
    assert len(bytes.fromhex(meta.tag)) == 16  # the Poly1305 tag is the only tag (no HMAC)
    assert json.loads(meta.to_json())["aead"] == meta.aead
    assert b'"aead"' in meta.canonical_bytes() and b'"tag"' not in meta.canonical_bytes()
    # XOR metadata is unchanged: no aead field at all
    _, xor_meta = encrypt_array(random_image((4, 4)), np.zeros((4, 4, 3), np.uint8))
    assert "aead" not in json.loads(xor_meta.to_json())


def test_ciphertext_is_the_aead_output():
    """C ‖ T = ChaCha20-Poly1305(HKDF(key image, salt)).encrypt(nonce, P, aad), done by hand."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    plain, key, ciphertext, meta = sealed()
    salt, nonce = bytes.fromhex(meta.aead["salt"]), bytes.fromhex(meta.aead["nonce"])
    subkey = HKDF(SHA256(), 32, salt, b"keras_dkg/hardened/v1/chacha20-poly1305 key").derive(key.tobytes())
    aad = hardened.associated_data(meta, CONTEXT)
    assert aad.startswith(b"keras_dkg/hardened/v1/aad") and aad.endswith(CONTEXT)
    expected = ChaCha20Poly1305(subkey).encrypt(nonce, plain.astype("<u2").tobytes(), aad)
    assert ciphertext.astype("<u2").tobytes() + bytes.fromhex(meta.tag) == expected


def _with(meta: CipherMetadata, params: dict | None = None, **fields) -> CipherMetadata:
    """The metadata with some AEAD parameters and/or top-level fields replaced (parsed like a file's)."""
    data = meta.to_dict()
    if params:
        data["aead"] = {**data["aead"], **params}
    data.update(fields)
    return CipherMetadata.from_json(data)


def _flip_hex(text: str, bit: int = 0) -> str:
    raw = bytearray(bytes.fromhex(text))
    raw[bit // 8] ^= 1 << (bit % 8)
    return raw.hex()


def test_any_altered_byte_field_or_context_is_detected():
    plain, key, ciphertext, meta = sealed()
    # pixel bytes: every byte position class (first, middle, last; high and low byte)
    raw = ciphertext.astype("<u2").view(np.uint8).reshape(-1)
    for index in (0, 1, raw.size // 2, raw.size - 1):
        altered = raw.copy()
        altered[index] ^= 0x80
        with pytest.raises(IntegrityError, match="authentication failed"):
            decrypt_array(altered.view("<u2").reshape(plain.shape), key, meta, context=CONTEXT)
    altered_metadata = [
        _with(meta, tag=_flip_hex(meta.tag, 0)), _with(meta, tag=_flip_hex(meta.tag, 127)),
        _with(meta, tag=meta.tag[:-2]), _with(meta, tag=meta.tag.upper()), _with(meta, tag=""),
        _with(meta, params={"nonce": _flip_hex(meta.aead["nonce"], 5)}),
        _with(meta, params={"salt": _flip_hex(meta.aead["salt"], 200)}),
        _with(meta, params={"nonce": None}), _with(meta, params={"alg": "aes-256-gcm"}),
        _with(meta, params={"kdf": "hkdf-sha512"}), _with(meta, params={"extra_field": 1}), _with(meta, aead=None),
        _with(meta, extra={"study": "y"}), _with(meta, extra={}), _with(meta, nonce="another-key-nonce"),
        _with(meta, nonce=None), _with(meta, cipher="xor"), _with(meta, shape=list(reversed(meta.shape))),
        _with(meta, dtype="int16"),
    ]
    dropped = meta.to_dict()
    del dropped["aead"]
    altered_metadata.append(CipherMetadata.from_json(dropped))
    for altered in altered_metadata:
        with pytest.raises(IntegrityError):
            decrypt_array(ciphertext, key, altered, context=CONTEXT)
    with pytest.raises(IntegrityError, match="format_version"):
        _with(meta, format_version=2)
    for context in (b"", CONTEXT + b"!", b"container contexT"):
        with pytest.raises(IntegrityError, match="authentication failed"):
            decrypt_array(ciphertext, key, meta, context=context)
    # the untouched ciphertext still decrypts
    assert decrypt_array(ciphertext, key, meta, context=CONTEXT).tobytes() == plain.tobytes()


def test_wrong_key_is_a_key_error_and_a_forged_fingerprint_an_integrity_error():
    plain, key, ciphertext, meta = sealed()
    other = key.copy()
    other[0, 0, 0] ^= 1
    with pytest.raises(KeyMaterialError, match="wrong key"):
        decrypt_array(ciphertext, other, meta, context=CONTEXT)
    # a fingerprint edited to match another key: the AEAD (bound to the fingerprint and the key) refuses
    with pytest.raises(IntegrityError):
        decrypt_array(ciphertext, other, _with(meta, key_fingerprint=cipher.fingerprint(other)), context=CONTEXT)


def test_key_reuse_gives_unrelated_ciphertexts():
    plain1, plain2 = random_image((64, 64, 3)), random_image((64, 64, 3))
    key = key_for(plain1)
    c1, m1 = encrypt_array(plain1, key, cipher="hardened")
    c2, m2 = encrypt_array(plain2, key, cipher="hardened")
    c1_again, m1_again = encrypt_array(plain1, key, cipher="hardened")
    assert len({m1.aead["salt"], m2.aead["salt"], m1_again.aead["salt"]}) == 3
    assert len({m1.aead["nonce"], m2.aead["nonce"], m1_again.aead["nonce"]}) == 3
    leak, truth = np.bitwise_xor(c1, c2), np.bitwise_xor(plain1, plain2)
    assert np.mean(leak == truth) < 0.02  # XOR: 1.0
    assert np.mean(c1 == c1_again) < 0.02  # XOR: 1.0 (deterministic)
    # known plaintext: K' = P1 ^ C1 says nothing about C2
    from keras_dkg.analysis import attacks

    recovered = attacks.known_plaintext_attack(plain1, c1)
    assert attacks.apply_recovered_key(c2, recovered, true_plain=plain2).exact_share < 0.02
    assert np.mean(recovered == key.reshape(-1)[:recovered.size].reshape(recovered.shape)) < 0.02
    for c, m, p in ((c1, m1, plain1), (c2, m2, plain2), (c1_again, m1_again, plain1)):
        assert np.array_equal(decrypt_array(c, key, m), p)


def test_key_size_rules():
    plain = random_image((64, 64, 3))
    small = RNG.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)  # 48 bytes << 12288
    ciphertext, meta = encrypt_array(plain, small, cipher="hardened")
    assert np.array_equal(decrypt_array(ciphertext, small, meta), plain)
    with pytest.raises(KeyMaterialError, match="never tiled"):
        encrypt_array(plain, small, cipher="xor")
    with pytest.raises(KeyMaterialError, match="at least 32"):
        encrypt_array(plain, np.zeros((2, 4, 3), np.uint8), cipher="hardened")


def test_reproducible_variant_is_for_analysis_and_decrypts_normally():
    from keras_dkg.analysis.modes import encrypt_reproducibly

    plain = random_image((16, 16))
    key = key_for(plain)
    a, meta_a = encrypt_reproducibly(plain, key, 5)
    b, meta_b = encrypt_reproducibly(plain, key, 5)
    c, _ = encrypt_reproducibly(plain, key, 6)
    assert np.array_equal(a, b) and meta_a.to_json() == meta_b.to_json() and not np.array_equal(a, c)
    assert np.array_equal(decrypt_array(a, key, meta_a), plain)


def test_missing_cryptography_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(DkgError, match=r"pip install 'keras-dkg\[hardened\]'"):
        encrypt_array(random_image((8, 8)), np.zeros((8, 8, 3), np.uint8), cipher="hardened")
    assert not hardened.available()


# --------------------------------------------------------------------------- containers


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("shape,dtype", [((37, 23), np.uint16), ((20, 28, 3), np.uint8), ((9, 13, 4), np.uint8)])
def test_png_and_tiff_containers(tmp_path, suffix, shape, dtype):
    plain = random_image(shape, dtype)
    key = key_for(plain)
    ciphertext, meta = encrypt_array(plain, key, cipher="hardened", nonce="n")
    path = save_ciphertext(tmp_path / f"c{suffix}", ciphertext, meta)
    loaded, loaded_meta = load_ciphertext(path)
    assert loaded_meta == meta and np.array_equal(read_image(path), ciphertext)
    assert decrypt_array(loaded, key, loaded_meta).tobytes() == plain.tobytes()


def test_dicom_container(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from keras_dkg.runtime.formats import dicom

    source = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    plain = dicom.read_dicom(source)
    key = RNG.integers(0, 256, size=(*plain.key_size(), 3), dtype=np.uint8)
    data, meta = dicom.encrypt_dicom(plain, key, cipher="hardened", nonce="n")
    assert meta.cipher == "hardened" and meta.aead is not None
    encrypted = pydicom.dcmread(io.BytesIO(data))
    assert encrypted.PatientName == pydicom.dcmread(source).PatientName
    assert dicom.plaintext_bytes(dicom.decrypt_dicom(data, key)) == source.read_bytes()
    # a header element is bound through the context (the AEAD's associated data)
    encrypted.PatientName = "Someone^Else"
    buffer = io.BytesIO()
    encrypted.save_as(buffer, enforce_file_format=True)
    with pytest.raises(IntegrityError, match="authentication failed"):
        dicom.decrypt_dicom(buffer.getvalue(), key)


# --------------------------------------------------------------------------- CLI and batch


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array)
    return path


def test_cli_with_a_key_file_reuses_it_only_in_hardened_mode(tmp_path, capsys):
    first = write_png(tmp_path / "a.png", random_image((24, 30), np.uint16))
    second = write_png(tmp_path / "b.png", random_image((24, 30), np.uint16))
    plain = read_image(first)
    pixels = key_for(plain)
    key = Key(pixels, make_record(pixels, nonce=None)).save(tmp_path / "key.png")
    for source in (first, second):
        out = tmp_path / f"{source.stem}.enc.png"
        assert encrypt_main([str(source), "--key", str(key), "-o", str(out), "--cipher", "hardened"]) == 0
        assert "cipher hardened" in capsys.readouterr().out
        assert load_ciphertext(out)[1].cipher == "hardened"
        back = tmp_path / f"{source.stem}.back.png"
        assert decrypt_main([str(out), "--key", str(key), "-o", str(back)]) == 0
        assert "cipher hardened; tag verified" in capsys.readouterr().out
        assert np.array_equal(read_image(back), read_image(source))
    assert len(load_key(key).record["used_for"]) == 2  # both uses recorded
    # the paper's XOR still refuses a used key
    third = write_png(tmp_path / "c.png", random_image((24, 30), np.uint16))
    assert encrypt_main([str(third), "--key", str(key), "-o", str(tmp_path / "c.enc.png")]) == 2
    assert "key already encrypted another plaintext" in capsys.readouterr().err
    # tampering with the file is exit code 3
    out = tmp_path / "a.enc.png"
    array, meta = load_ciphertext(out)
    array = array.copy()
    array[0, 0] ^= 1
    save_ciphertext(tmp_path / "t.png", array, meta)
    assert decrypt_main([str(tmp_path / "t.png"), "--key", str(key), "-o", str(tmp_path / "t.back.png")]) == 3
    assert "authentication failed" in capsys.readouterr().err
    assert not (tmp_path / "t.back.png").exists()


def test_cli_and_batch_with_fresh_keys(tmp_path, tiny_onnx_model, capsys):
    pydicom = pytest.importorskip("pydicom")
    from keras_dkg.runtime.batch.driver import decrypt_folder, encrypt_folder
    from keras_dkg.runtime.keystore.store import KeyStore

    test_files = Path(pydicom.__file__).parent / "data" / "test_files"
    seed = test_files / "CT_small.dcm"
    source = write_png(tmp_path / "in" / "rgb.png", random_image((20, 28, 3)))
    write_png(tmp_path / "in" / "sub" / "gray16.tif", random_image((12, 16), np.uint16))
    shutil.copy(test_files / "MR_small.dcm", tmp_path / "in" / "mr.dcm")
    keys = tmp_path / "keys"
    # single file, fresh key in a key store
    out = tmp_path / "single.enc.png"
    assert encrypt_main([str(source), "-o", str(out), "--model", str(tiny_onnx_model), "--seed", str(seed),
                         "--keys", str(keys), "--cipher", "hardened"]) == 0
    capsys.readouterr()
    assert decrypt_main([str(out), "-o", str(tmp_path / "single.back.png"), "--keys", str(keys)]) == 0
    assert np.array_equal(read_image(tmp_path / "single.back.png"), read_image(source))
    # whole folder through the CLI
    assert encrypt_main(["--batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--keys", str(keys),
                         "--model", str(tiny_onnx_model), "--seed", str(seed), "--cipher", "hardened",
                         "--no-progress"]) == 0
    report = json.loads((tmp_path / "out" / "dkg-report.json").read_text())
    assert report["options"]["cipher"] == "hardened"
    assert sorted(f["status"] for f in report["files"]) == ["encrypted"] * 3
    for relative in ("rgb.png", "sub/gray16.tif"):
        assert load_ciphertext(tmp_path / "out" / relative)[1].cipher == "hardened"
    from keras_dkg.runtime.formats import dicom

    assert dicom.load_dicom_ciphertext(tmp_path / "out" / "mr.dcm").meta.cipher == "hardened"
    assert decrypt_main(["--batch", str(tmp_path / "out"), "-o", str(tmp_path / "back"), "--keys", str(keys),
                         "--no-progress"]) == 0
    assert np.array_equal(read_image(tmp_path / "back" / "rgb.png"), read_image(source))
    assert (tmp_path / "back" / "mr.dcm").read_bytes() == (tmp_path / "in" / "mr.dcm").read_bytes()
    assert len(KeyStore(keys).entries()) == 4  # one fresh key per file, as in XOR mode
    # resuming with the other cipher does not keep the hardened outputs
    again = encrypt_folder(tmp_path / "in", tmp_path / "out", keys=keys, model=tiny_onnx_model, seed=seed,
                           resume=True, cipher="xor")
    assert {f.status for f in again.files} == {"failed"}
    assert all("cipher 'hardened'" in f.reason for f in again.files)
    assert decrypt_folder(tmp_path / "out", None, keys=keys, verify_only=True).exit_code == 0


def test_the_cipher_registry_loads_the_hardened_module_on_first_use():
    """One registry (ciphers.registry.CIPHERS, "module:object"), no import cycle: the registry does not import hardened.py."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from keras_dkg.runtime.ciphers import registry as cipher\n"
            "assert 'keras_dkg.runtime.ciphers.hardened' not in sys.modules\n"
            "assert cipher.KNOWN_CIPHERS == tuple(cipher.CIPHERS) == ('xor', 'hardened')\n"
            "plain = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)\n"
            "key = np.full((4, 4, 3), 7, np.uint8)\n"
            "data, meta = cipher.encrypt_array(plain, key, cipher='hardened')\n"
            "assert 'keras_dkg.runtime.ciphers.hardened' in sys.modules\n"
            "assert (cipher.decrypt_array(data, key, meta) == plain).all()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

"""The XOR cipher, its containers and the encrypt/decrypt CLIs (no TensorFlow needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_dkg.errors import IntegrityError, KeyMaterialError, OutputError
from keras_dkg.runtime.ciphers.metadata import CipherMetadata, fingerprint, key_size_for
from keras_dkg.runtime.ciphers.registry import decrypt_array, encrypt_array
from keras_dkg.runtime.ciphers.xor import xor_bytes
from keras_dkg.runtime.cli import encrypt as cipher_cli
from keras_dkg.runtime.formats.images import read_image, write_image
from keras_dkg.runtime.formats.png_tiff import load_ciphertext, png_text, save_ciphertext
from keras_dkg.runtime.keys.artifact import Key, load_key, make_record
from keras_dkg.runtime.keystore.store import KeyStore

RNG = np.random.default_rng(20211)

PLAINTEXTS = {
    "gray8 317x211": ((317, 211), np.uint8),
    "rgb8 211x317": ((211, 317, 3), np.uint8),
    "gray16 97x61": ((97, 61), np.uint16),
    "rgb16 33x45": ((33, 45, 3), np.uint16),
    "rgba8 17x23": ((17, 23, 4), np.uint8),
    "gray8 hxwx1 9x7": ((9, 7, 1), np.uint8),
}


def random_image(shape, dtype) -> np.ndarray:
    return RNG.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)


def key_for(plain: np.ndarray, extra_rows: int = 0) -> np.ndarray:
    height, width = key_size_for(plain.shape, plain.dtype)
    return RNG.integers(0, 256, size=(height + extra_rows, width, 3), dtype=np.uint8)


def make_key_file(folder: Path, plain: np.ndarray, name: str = "key.png") -> Path:
    pixels = key_for(plain)
    return Key(pixels, make_record(pixels, nonce=None)).save(folder / name)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("name", sorted(PLAINTEXTS))
def test_round_trip_through_container_is_bit_exact(tmp_path, name, suffix):
    shape, dtype = PLAINTEXTS[name]
    plain = random_image(shape, dtype)
    key = key_for(plain)
    ciphertext, meta = encrypt_array(plain, key, nonce="n1")
    assert ciphertext.shape == plain.shape and ciphertext.dtype == plain.dtype
    assert not np.array_equal(ciphertext, plain)
    path = save_ciphertext(tmp_path / f"c{suffix}", ciphertext, meta)
    loaded, loaded_meta = load_ciphertext(path)
    assert loaded_meta == meta
    back = decrypt_array(loaded, key, loaded_meta)
    assert back.dtype == plain.dtype and back.shape == plain.shape
    assert np.array_equal(back, plain)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 40), width=st.integers(1, 40), channels=st.sampled_from([0, 1, 3, 4]),
    dtype=st.sampled_from([np.uint8, np.uint16, np.int16]), seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_in_memory_any_shape(height, width, channels, dtype, seed):
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 0 else (height, width, channels)
    info = np.iinfo(dtype)
    plain = rng.integers(info.min, info.max + 1, size=shape, dtype=dtype)
    key_h, key_w = key_size_for(shape, dtype)
    assert key_h % 4 == 0 and key_w % 4 == 0 and key_h * key_w * 3 >= plain.nbytes
    assert key_h * (key_w - 4) * 3 < plain.nbytes  # smallest width that covers
    key = rng.integers(0, 256, size=(key_h, key_w, 3), dtype=np.uint8)
    ciphertext, meta = encrypt_array(plain, key)
    assert np.array_equal(decrypt_array(ciphertext, key, CipherMetadata.from_json(meta.to_json())), plain)


def test_xor_uses_first_key_bytes_without_tiling():
    plain = np.arange(24, dtype=np.uint8).reshape(4, 6)
    key = RNG.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    ciphertext, _ = encrypt_array(plain, key)
    assert np.array_equal(ciphertext.reshape(-1), plain.reshape(-1) ^ key.reshape(-1)[:24])


def test_16_bit_xor_is_on_little_endian_bytes():
    plain = np.array([[0x0102, 0xA0B0]], dtype=np.uint16)
    key = np.zeros((4, 4, 3), dtype=np.uint8)
    key.reshape(-1)[:4] = [0xFF, 0x00, 0x00, 0xFF]
    ciphertext, _ = encrypt_array(plain, key)
    assert ciphertext.tolist() == [[0x01FD, 0x5FB0]]


def test_xor_bytes_allocating_and_in_place_agree():
    a = RNG.integers(0, 256, 10_001, dtype=np.uint8)
    b = RNG.integers(0, 256, 10_001, dtype=np.uint8)
    expected = np.array([x ^ y for x, y in zip(a.tolist(), b.tolist(), strict=True)], np.uint8)
    fresh = xor_bytes(a, b)
    assert np.array_equal(fresh, expected) and not np.shares_memory(fresh, a)
    inside = a.copy()
    assert xor_bytes(inside, b, out=inside) is inside and np.array_equal(inside, expected)


@settings(max_examples=40, deadline=None)
@given(shape=st.sampled_from([(3, 5), (4, 6, 3), (2, 2, 4), (7, 1)]),
       dtype=st.sampled_from(["uint8", "uint16", "int16", "uint32", "int32"]),
       big_endian=st.booleans(), in_place=st.booleans(), seed=st.integers(0, 2**16))
def test_decrypt_in_place_equals_the_allocating_decrypt(shape, dtype, big_endian, in_place, seed):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    plain = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    if big_endian:  # a copy inside _raw_bytes: reused without the flag
        plain = plain.astype(plain.dtype.newbyteorder(">"))
    key = rng.integers(0, 256, (*key_size_for(plain.shape, plain.dtype), 3), dtype=np.uint8)
    ciphertext, meta = encrypt_array(plain, key)
    kept = ciphertext.copy()
    reference = decrypt_array(ciphertext, key, meta)
    assert np.array_equal(ciphertext, kept), "without in_place the ciphertext is untouched"
    result = decrypt_array(ciphertext, key, meta, in_place=in_place)
    assert np.array_equal(result, reference) and np.array_equal(result, plain.astype(plain.dtype.newbyteorder("=")))
    if not in_place:
        assert np.array_equal(ciphertext, kept)


def test_fingerprint_is_sha256_of_raw_bytes():
    key = np.zeros((4, 4, 3), dtype=np.uint8)
    assert fingerprint(key) == "sha256:" + __import__("hashlib").sha256(bytes(48)).hexdigest()


def test_wrong_key_is_refused():
    plain = random_image((20, 30), np.uint8)
    ciphertext, meta = encrypt_array(plain, key_for(plain))
    with pytest.raises(KeyMaterialError, match="wrong key"):
        decrypt_array(ciphertext, key_for(plain), meta)


def test_short_key_is_refused_not_tiled():
    plain = random_image((64, 64, 3), np.uint16)
    height, width = key_size_for(plain.shape, plain.dtype)
    short = RNG.integers(0, 256, size=(height, width - 4, 3), dtype=np.uint8)
    with pytest.raises(KeyMaterialError, match="never tiled"):
        encrypt_array(plain, short)


def test_tampered_pixel_is_detected(tmp_path):
    plain = random_image((40, 30, 3), np.uint8)
    key = key_for(plain)
    ciphertext, meta = encrypt_array(plain, key)
    tampered = ciphertext.copy()
    tampered[5, 7, 1] ^= 1
    loaded, loaded_meta = load_ciphertext(save_ciphertext(tmp_path / "c.png", tampered, meta))
    with pytest.raises(IntegrityError, match="tag mismatch"):
        decrypt_array(loaded, key, loaded_meta)


@pytest.mark.parametrize(
    "change", [{"nonce": "other"}, {"extra": {"x": 1}}, {"shape": [30, 40, 3]}, {"dtype": "int8"}, {"cipher": "rot13"}]
)
def test_tampered_metadata_is_detected(change):
    plain = random_image((40, 30, 3), np.uint8)
    key = key_for(plain)
    ciphertext, meta = encrypt_array(plain, key, nonce="abc")
    fields = {**meta.to_dict(), **change}
    with pytest.raises(IntegrityError):
        decrypt_array(ciphertext, key, CipherMetadata.from_json(fields))


def test_tampered_metadata_chunk_in_file_is_detected(tmp_path):
    plain = random_image((16, 16), np.uint8)
    key = key_for(plain)
    path = save_ciphertext(tmp_path / "c.png", *encrypt_array(plain, key, nonce="abc"))
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"nonce":"abc"', b'"nonce":"abd"'))
    with pytest.raises(IntegrityError, match="CRC"):
        load_ciphertext(path)


def test_context_is_bound_into_the_tag():
    plain = random_image((16, 16), np.uint8)
    key = key_for(plain)
    ciphertext, meta = encrypt_array(plain, key, context=b"dicom header hash")
    assert np.array_equal(decrypt_array(ciphertext, key, meta, context=b"dicom header hash"), plain)
    with pytest.raises(IntegrityError):
        decrypt_array(ciphertext, key, meta, context=b"another header")


def test_metadata_json_round_trip_and_damage():
    _, meta = encrypt_array(random_image((8, 8), np.uint8), np.zeros((8, 4, 3), np.uint8), nonce="7")
    assert CipherMetadata.from_json(meta.to_json()) == meta
    with pytest.raises(IntegrityError):
        CipherMetadata.from_json("{not json")
    with pytest.raises(IntegrityError, match="format_version"):
        CipherMetadata.from_json({**meta.to_dict(), "format_version": 99})


def test_hardened_cipher_is_available():  # (was "not available yet"; tests/test_hardened.py covers it)
    pytest.importorskip("cryptography")
    plain, key = random_image((8, 8), np.uint8), RNG.integers(0, 256, (8, 4, 3), dtype=np.uint8)
    ciphertext, meta = encrypt_array(plain, key, cipher="hardened")
    assert meta.cipher == "hardened" and np.array_equal(decrypt_array(ciphertext, key, meta), plain)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp", ".xyz"])
def test_lossy_or_unknown_output_is_refused(tmp_path, suffix):
    plain = random_image((8, 8), np.uint8)
    with pytest.raises(OutputError):
        save_ciphertext(tmp_path / f"c{suffix}", *encrypt_array(plain, key_for(plain)))


def test_png_metadata_is_a_valid_itxt_chunk(tmp_path):
    plain = random_image((8, 8), np.uint16)
    path = save_ciphertext(tmp_path / "c.png", *encrypt_array(plain, key_for(plain)))
    assert json.loads(png_text(path.read_bytes(), "keras_dkg.cipher", path))["dtype"] == "uint16"
    assert read_image(path).dtype == np.uint16  # still an ordinary image for viewers


# ---- CLI ------------------------------------------------------------------------------

@pytest.fixture
def gray16_image(tmp_path) -> Path:
    return write_image(tmp_path / "ct.png", random_image((45, 37), np.uint16))


def test_cli_encrypt_decrypt_with_key_file(tmp_path, gray16_image, capsys):
    key_path = make_key_file(tmp_path, read_image(gray16_image))
    out, back = tmp_path / "ct.enc.tif", tmp_path / "ct.back.png"
    assert cipher_cli.encrypt_main([str(gray16_image), "--key", str(key_path), "-o", str(out)]) == 0
    assert cipher_cli.decrypt_main([str(out), "--key", str(key_path), "-o", str(back)]) == 0
    assert np.array_equal(read_image(back), read_image(gray16_image))
    assert read_image(back).dtype == np.uint16
    record = json.loads(key_path.with_suffix(".json").read_text())
    assert [u["plaintext"] for u in record["used_for"]] == [str(gray16_image.resolve())]


def test_cli_key_reuse_refused_without_flag(tmp_path, gray16_image, capsys):
    key_path = make_key_file(tmp_path, read_image(gray16_image))
    other = write_image(tmp_path / "other.png", random_image((45, 37), np.uint16))
    assert cipher_cli.encrypt_main([str(gray16_image), "--key", str(key_path), "-o", str(tmp_path / "a.png")]) == 0
    # the same plaintext again is not reuse (identical ciphertext)
    assert cipher_cli.encrypt_main([str(gray16_image), "--key", str(key_path), "-o", str(tmp_path / "a2.png")]) == 0
    capsys.readouterr()
    assert cipher_cli.encrypt_main([str(other), "--key", str(key_path), "-o", str(tmp_path / "b.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dkg-encrypt: error:") and "already encrypted" in err and err.count("\n") == 1
    assert not (tmp_path / "b.png").exists()
    assert cipher_cli.encrypt_main(
        [str(other), "--key", str(key_path), "-o", str(tmp_path / "b.png"), "--allow-key-reuse"]
    ) == 0


def test_cli_refuses_wrong_key_short_key_and_bad_outputs(tmp_path, gray16_image, capsys):
    plain = read_image(gray16_image)
    key_path = make_key_file(tmp_path, plain)
    wrong = make_key_file(tmp_path, plain, "wrong.png")
    small = Key(np.zeros((4, 4, 3), np.uint8), make_record(np.zeros((4, 4, 3), np.uint8)))
    small_path = small.save(tmp_path / "small.png")
    out = tmp_path / "enc.png"
    encrypt = cipher_cli.encrypt_main
    assert encrypt([str(gray16_image), "--key", str(small_path), "-o", str(out)]) == 2
    assert "too small" in capsys.readouterr().err and not out.exists()
    assert encrypt([str(gray16_image), "--key", str(key_path), "-o", str(gray16_image)]) == 2
    assert "is an input" in capsys.readouterr().err
    assert encrypt([str(gray16_image), "--key", str(key_path), "-o", str(key_path), "--overwrite"]) == 2
    assert "never replaces an input" in capsys.readouterr().err and load_key(key_path)
    assert encrypt([str(gray16_image), "--key", str(key_path), "-o", str(tmp_path / "enc.jpg")]) == 2
    assert "lossy" in capsys.readouterr().err
    assert encrypt([str(gray16_image), "--key", str(key_path), "-o", str(out)]) == 0
    assert encrypt([str(gray16_image), "--key", str(key_path), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    back = tmp_path / "back.png"
    assert cipher_cli.decrypt_main([str(out), "--key", str(wrong), "-o", str(back)]) == 2
    assert "wrong key" in capsys.readouterr().err and not back.exists()


def test_cli_tampered_ciphertext_exit_code_3(tmp_path, gray16_image, capsys):
    key_path = make_key_file(tmp_path, read_image(gray16_image))
    out = tmp_path / "enc.png"
    assert cipher_cli.encrypt_main([str(gray16_image), "--key", str(key_path), "-o", str(out)]) == 0
    ciphertext, meta = load_ciphertext(out)
    ciphertext[0, 0] ^= 0x100
    save_ciphertext(out, ciphertext, meta, overwrite=True)
    assert cipher_cli.decrypt_main([str(out), "--key", str(key_path), "-o", str(tmp_path / "b.png")]) == 3
    assert "authentication failed" in capsys.readouterr().err


def test_key_file_tampering_is_detected(tmp_path):
    key_path = make_key_file(tmp_path, random_image((8, 8), np.uint8))
    pixels = read_image(key_path)
    pixels[0, 0, 0] ^= 1
    write_image(key_path, pixels, overwrite=True)
    with pytest.raises(KeyMaterialError, match="altered or swapped"):
        load_key(key_path)


def test_keystore_marks_use_and_finds_by_fingerprint(tmp_path):
    store = KeyStore(tmp_path / "keys", create=True)
    pixels = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    key = Key(pixels, make_record(pixels, nonce="n"))
    entry = store.add(key)
    assert store.add(key) == entry  # idempotent
    assert entry["key_file"] == f"keys/{key.fingerprint[7:23]}.png"
    store.mark_used(key.fingerprint, "sha256:aa", "/a.png")
    with pytest.raises(KeyMaterialError, match="already encrypted"):
        store.mark_used(key.fingerprint, "sha256:bb", "/b.png")
    assert np.array_equal(store.load(key.fingerprint).pixels, pixels)
    lines = (tmp_path / "keys" / "index.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["used_for"][0]["plaintext_sha256"] == "sha256:aa"
    assert load_key(tmp_path / "keys" / entry["key_file"]).record["used_for"][0]["plaintext"] == "/a.png"
    with pytest.raises(KeyMaterialError):
        store.load("sha256:" + "0" * 64)


def test_cli_fresh_key_per_file_from_model(tiny_onnx_model, tmp_path, capsys):
    from keras_dkg.embedded import seed_path

    store = tmp_path / "store"
    images = {
        "rgb.png": random_image((50, 70, 3), np.uint8),
        "odd.tif": random_image((317, 211), np.uint8),
    }
    for name, pixels in images.items():
        plain = write_image(tmp_path / name, pixels)
        out, back = tmp_path / f"enc_{name}", tmp_path / f"back_{name}"
        assert cipher_cli.encrypt_main([
            str(plain), "--model", str(tiny_onnx_model), "--seed", str(seed_path()),
            "--keys", str(store), "-o", str(out), "--provider", "cpu",
        ]) == 0
        assert cipher_cli.decrypt_main([str(out), "--keys", str(store), "-o", str(back)]) == 0
        assert np.array_equal(read_image(back), pixels)
    entries = KeyStore(store).entries()
    assert len({e["fingerprint"] for e in entries}) == 2 and len({e["nonce"] for e in entries}) == 2
    assert [tuple(e["shape"][:2]) for e in entries] == [key_size_for((50, 70, 3), np.uint8), key_size_for((317, 211), np.uint8)]
    assert all(len(e["used_for"]) == 1 for e in entries)
    _, meta = load_ciphertext(tmp_path / "enc_rgb.png")
    assert meta.nonce == entries[0]["nonce"] and meta.key_fingerprint == entries[0]["fingerprint"]

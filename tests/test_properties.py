"""Property tests (hypothesis) of both cipher modes and fuzzing of the metadata parsers.

* random shapes (odd sizes 1..64), dtypes uint8/uint16/int16, gray/RGB, random contents:
  decrypt(encrypt(x)) == x bit-exact, through encrypt_array/decrypt_array, in both modes;
* flipping any ciphertext byte, or any bit of the tag (or of the hardened nonce/salt), is
  detected: IntegrityError, never a wrong image;
* `CipherMetadata.from_json`, the PNG iTXt reader and the TIFF description reader fed random
  bytes / random JSON / mutated valid metadata raise only DkgError subclasses.

Example counts are bounded (settings below) so the file runs in well under 40 s.
"""

from __future__ import annotations

import json
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_dkg.errors import DkgError, IntegrityError
from keras_dkg.runtime.ciphers.metadata import CipherMetadata, key_size_for
from keras_dkg.runtime.ciphers.registry import decrypt_array, encrypt_array
from keras_dkg.runtime.formats.images import encode_lossless
from keras_dkg.runtime.formats.png_tiff import (
    META_KEYWORD,
    PNG_SIGNATURE,
    load_ciphertext,
    png_text,
    png_with_text,
    save_ciphertext,
    tiff_description,
)

pytest.importorskip("cryptography")

MODES = ("xor", "hardened")
DTYPES = (np.uint8, np.uint16, np.int16)
ROUND_TRIP = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TAMPER = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def images(draw):
    """(plaintext, key): odd and even sizes 1..64, gray/RGB, 8/16-bit, random or extreme contents."""
    height, width = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    channels = draw(st.sampled_from([None, 1, 3]))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = (height, width) if channels is None else (height, width, channels)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    info = np.iinfo(dtype)
    contents = draw(st.sampled_from(["random", "zeros", "min", "max", "ramp"]))
    if contents == "random":
        plain = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    elif contents == "ramp":
        plain = (np.arange(np.prod(shape)) % (int(info.max) + 1)).astype(dtype).reshape(shape)
    else:
        plain = np.full(shape, {"zeros": 0, "min": info.min, "max": info.max}[contents], dtype=dtype)
    key_h, key_w = key_size_for(shape, dtype)
    key = rng.integers(0, 256, size=(key_h, key_w, 3), dtype=np.uint8)
    return plain, key


@ROUND_TRIP
@given(data=images(), mode=st.sampled_from(MODES), context=st.binary(max_size=40))
def test_round_trip_is_bit_exact(data, mode, context):
    plain, key = data
    ciphertext, meta = encrypt_array(plain, key, cipher=mode, context=context, nonce="n")
    assert ciphertext.shape == plain.shape and ciphertext.dtype == plain.dtype
    back = decrypt_array(ciphertext, key, CipherMetadata.from_json(meta.to_json()), context=context)
    assert back.dtype == plain.dtype and back.shape == plain.shape
    assert back.tobytes() == plain.tobytes()


@TAMPER
@given(data=images(), mode=st.sampled_from(MODES), where=st.integers(0, 2**31), bit=st.integers(0, 7))
def test_flipped_ciphertext_byte_is_detected(data, mode, where, bit):
    plain, key = data
    ciphertext, meta = encrypt_array(plain, key, cipher=mode)
    raw = bytearray(ciphertext.tobytes())
    raw[where % len(raw)] ^= 1 << bit
    altered = np.frombuffer(bytes(raw), dtype=ciphertext.dtype).reshape(ciphertext.shape)
    with pytest.raises(IntegrityError):
        decrypt_array(altered, key, meta)


@TAMPER
@given(data=images(), mode=st.sampled_from(MODES), field=st.sampled_from(["tag", "nonce", "salt"]),
       where=st.integers(0, 2**31))
def test_flipped_tag_nonce_or_salt_bit_is_detected(data, mode, field, where):
    plain, key = data
    ciphertext, meta = encrypt_array(plain, key, cipher=mode)
    if field != "tag" and mode == "xor":
        field = "tag"  # XOR has no AEAD nonce/salt (the key nonce is covered by the tag: test_cipher.py)
    value = meta.tag if field == "tag" else meta.aead[field]
    raw = bytearray(bytes.fromhex(value))
    position = where % (8 * len(raw))
    raw[position // 8] ^= 1 << (position % 8)
    fields = meta.to_dict()
    if field == "tag":
        fields["tag"] = raw.hex()
    else:
        fields["aead"] = {**fields["aead"], field: raw.hex()}
    with pytest.raises(IntegrityError):
        decrypt_array(ciphertext, key, CipherMetadata.from_json(fields))


# --------------------------------------------------------------------------- metadata fuzzing

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _valid_meta(mode: str) -> tuple[np.ndarray, np.ndarray, CipherMetadata]:
    rng = np.random.default_rng(5)
    plain = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    key = rng.integers(0, 256, size=(8, 12, 3), dtype=np.uint8)
    ciphertext, meta = encrypt_array(plain, key, cipher=mode, nonce="k", extra={"a": [1, 2]})
    return plain, key, ciphertext, meta


VALID = {mode: _valid_meta(mode) for mode in MODES}


def _parse(text):
    try:
        return CipherMetadata.from_json(text)
    except DkgError:
        return None


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_from_json_random_input_raises_only_dkg_errors(text):
    _parse(text)


@FUZZ
@given(JSON_VALUES)
def test_from_json_random_json_raises_only_dkg_errors(value):
    _parse(json.dumps(value))
    if isinstance(value, dict):
        _parse(value)


def test_from_json_pathological_inputs():
    deep = "[" * 100_000 + "]" * 100_000
    for text in (deep, '{"a":' * 50_000 + "1" + "}" * 50_000, "9" * 10_000, b"\xff\xfe", "\ud800", "[1e999]", "",
                 json.dumps({**VALID["xor"][3].to_dict(), "shape": [1e999]}).replace("Infinity", "1e999"),
                 json.dumps({**VALID["xor"][3].to_dict(), "tag": "\ud800"}),
                 json.dumps({**VALID["xor"][3].to_dict(), "format_version": True})):
        with pytest.raises(IntegrityError):
            CipherMetadata.from_json(text)


@FUZZ
@given(mode=st.sampled_from(MODES), field=st.sampled_from(sorted(VALID["hardened"][3].to_dict())),
       value=JSON_VALUES, drop=st.booleans())
def test_mutated_metadata_never_yields_a_wrong_image(mode, field, value, drop):
    """Any change to any field: a DkgError, or (the value was unchanged) the right plaintext."""
    plain, key, ciphertext, meta = VALID[mode]
    fields = meta.to_dict()
    if drop:
        fields.pop(field, None)
    else:
        fields[field] = value
    try:
        parsed = CipherMetadata.from_json(json.dumps(fields))
        back = decrypt_array(ciphertext, key, parsed)
    except DkgError:
        return
    assert back.tobytes() == plain.tobytes() and parsed.to_json() == meta.to_json()


# --------------------------------------------------------------------------- container fuzzing

PNG_BASE = encode_lossless(VALID["hardened"][2], ".png")
TIFF_BASE = encode_lossless(VALID["hardened"][2], ".tif")


def _itxt_png(body: bytes) -> bytes:
    """A valid PNG with one iTXt chunk (correct CRC) holding `body`."""
    cut = 8 + 12 + struct.unpack(">I", PNG_BASE[8:12])[0]
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    return PNG_BASE[:cut] + chunk + PNG_BASE[cut:]


@FUZZ
@given(st.binary(max_size=400))
def test_png_reader_random_bytes(data):
    for blob in (data, PNG_SIGNATURE + data):
        try:
            png_text(blob, META_KEYWORD, Path("fuzz.png"))
        except DkgError:
            pass


@FUZZ
@given(tail=st.binary(max_size=200), text=st.text(max_size=100))
def test_png_itxt_chunk_random_bodies(tail, text):
    prefix = META_KEYWORD.encode("latin-1") + b"\0"
    for body in (prefix + tail, prefix + b"\0\0\0\0" + text.encode("utf-8", "surrogatepass"), tail):
        try:
            found = png_text(_itxt_png(body), META_KEYWORD, Path("fuzz.png"))
            if found is not None:
                CipherMetadata.from_json(found)
        except DkgError:
            pass


@FUZZ
@given(st.binary(max_size=300))
def test_tiff_reader_random_bytes(data):
    for blob in (data, b"II*\0" + data, b"MM\0*" + data, TIFF_BASE[:len(data) % len(TIFF_BASE)] + data):
        try:
            tiff_description(blob, "fuzz.tif")
        except DkgError:
            pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(0, 2**31), value=st.integers(0, 255), suffix=st.sampled_from([".png", ".tif"]))
def test_damaged_ciphertext_files_raise_only_dkg_errors(position, value, suffix):
    """A byte of a ciphertext file (pixels, chunks, metadata) changed: a DkgError or the right image."""
    plain, key, ciphertext, meta = VALID["hardened"]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"c{suffix}"
        save_ciphertext(path, ciphertext, meta)
        data = bytearray(path.read_bytes())
        data[position % len(data)] = value
        path.write_bytes(bytes(data))
        try:
            array, loaded = load_ciphertext(path)
            back = decrypt_array(array, key, loaded)
        except DkgError:
            return
        assert back.tobytes() == plain.tobytes()


def test_png_with_metadata_text_round_trip():
    meta = VALID["hardened"][3]
    png = png_with_text(PNG_BASE, META_KEYWORD, meta.to_json())
    assert CipherMetadata.from_json(png_text(png, META_KEYWORD, Path("x.png"))) == meta

"""The bad-input matrix, first round (issue 7): every bad input gives one clear line, a
non-zero exit, and loses nothing. The kit (`tests/badinput_kit.py`) says what each case
checks; `tests/test_bad_inputs_*.py` hold the later rounds' cases.

Cases that need a process kill, two processes or a training run are separate tests
below; they add their rows to the same table.

Covered elsewhere and referenced in the table: tests/test_batch.py (batch disk full,
kill + resume, corrupt file mid-batch, tampered archive, wrong key store) and
tests/test_fit.py (resume = uninterrupted, NaN loss message).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from badinput_kit import (
    DICOM_FILES,
    PLAIN_DTYPE,
    PLAIN_SHAPE,
    REPO,
    Case,
    Env,
    Matrix,
    check_case,
    dicom_copy,
    disk_full_after,
    encrypt_argv,
    encrypted,
    image,
    key_file,
    png_bytes,
    pydicom,
    random_image,
    read_only,
    record_row,
)

from keras_dkg.runtime.ciphers.metadata import key_size_for
from keras_dkg.runtime.cli import encrypt as cipher_cli
from keras_dkg.runtime.cli import keygen as keygen_cli
from keras_dkg.runtime.formats.images import read_image, write_image
from keras_dkg.runtime.formats.png_tiff import load_ciphertext, save_ciphertext
from keras_dkg.runtime.formats.raster_headers import MAX_PIXELS
from keras_dkg.runtime.keys.artifact import Key, load_key, make_record

MATRIX = Matrix()
CASES = MATRIX.cases
case = MATRIX.case


# ---- dkg-encrypt: plaintexts -----------------------------------------------------------

@case("zero-byte-png", "dkg-encrypt", "plaintext PNG of 0 bytes", 2, r"in/empty\.png: file is empty \(0 bytes\)")
def _(env):
    key_file(env)
    env.folder("out")
    return encrypt_argv(env.write("in/empty.png", b""))


@case("truncated-png", "dkg-encrypt", "first half of a valid PNG", 2,
      r"in/trunc\.png: not a readable image \(damaged, truncated")
def _(env):
    key_file(env)
    env.folder("out")
    data = png_bytes(random_image())
    return encrypt_argv(env.write("in/trunc.png", data[: len(data) // 2]))


@case("truncated-tiff", "dkg-encrypt", "first half of a valid TIFF", 2,
      r"in/trunc\.tif: not a readable image \(damaged, truncated")
def _(env):
    key_file(env)
    env.folder("out")
    data = png_bytes(random_image(), ".tif")
    return encrypt_argv(env.write("in/trunc.tif", data[: len(data) // 2]))


@case("text-as-png", "dkg-encrypt", "a text file named .png", 2, r"in/notes\.png: not a readable image")
def _(env):
    key_file(env)
    env.folder("out")
    return encrypt_argv(env.write("in/notes.png", b"these are my notes, not an image\n" * 20))


@case("png-bomb", "dkg-encrypt", "PNG header declaring 100000x100000 pixels", 2,
      rf"in/bomb\.png: declares 100000x100000 pixels, over the {MAX_PIXELS} pixel limit \(possible decompression bomb\)")
def _(env):
    key_file(env)
    env.folder("out")
    data = bytearray(png_bytes(np.zeros((8, 8), np.uint8)))
    data[16:24] = (100000).to_bytes(4, "big") * 2  # IHDR width, height (CRC left stale: never decoded)
    return encrypt_argv(env.write("in/bomb.png", bytes(data)))


@case("tiff-bomb", "dkg-encrypt", "TIFF header declaring 70000x70000 pixels", 2,
      r"in/bomb\.tif: declares 70000x70000 pixels, .*decompression bomb")
def _(env):
    key_file(env)
    env.folder("out")
    entries = b"".join(tag.to_bytes(2, "little") + (4).to_bytes(2, "little") + (1).to_bytes(4, "little")
                       + (70000).to_bytes(4, "little") for tag in (256, 257))
    data = b"II*\x00" + (8).to_bytes(4, "little") + (2).to_bytes(2, "little") + entries + b"\x00" * 4
    return encrypt_argv(env.write("in/bomb.tif", data))


@case("zero-byte-dicom", "dkg-encrypt", "DICOM file of 0 bytes", 2, r"in/empty\.dcm: file is empty \(0 bytes\)")
def _(env):
    key_file(env)
    env.folder("out")
    return encrypt_argv(env.write("in/empty.dcm", b""), "out/enc.dcm")


@case("truncated-dicom", "dkg-encrypt", "DICOM whose pixel data is cut short (pydicom's MR_truncated.dcm)", 2,
      r"in/mr\.dcm: Pixel Data holds 8130 bytes but the image needs 8192 \(truncated or damaged\)")
def _(env):
    key_file(env, shape=(64, 64))
    env.folder("out")
    return encrypt_argv(dicom_copy(env, "MR_truncated.dcm", "in/mr.dcm"), "out/enc.dcm")


@case("half-dicom-file", "dkg-encrypt", "the first 40 % of a DICOM file's bytes", 2,
      r"in/ct\.dcm: (not a readable DICOM file|Pixel Data holds|not a DICOM file|damaged)")
def _(env):
    key_file(env, shape=(128, 128))
    env.folder("out")
    data = (DICOM_FILES / "CT_small.dcm").read_bytes()
    return encrypt_argv(env.write("in/ct.dcm", data[: len(data) * 2 // 5]), "out/enc.dcm")


@case("dicom-without-pixels", "dkg-encrypt", "DICOM without Pixel Data (an RT plan)", 2,
      r"in/plan\.dcm: no Pixel Data \(7FE0,0010\) element; not an image")
def _(env):
    key_file(env)
    env.folder("out")
    return encrypt_argv(dicom_copy(env, "rtplan.dcm", "in/plan.dcm"), "out/enc.dcm")


@case("compressed-dicom-no-decoder", "dkg-encrypt", "JPEG-LS DICOM with no JPEG-LS decoder installed", 2,
      r"in/jls\.dcm: pixel data is compressed as JPEG-LS Lossless .* no decoder for it is installed")
def _(env):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    key_file(env, shape=(64, 64))
    env.folder("out")
    return encrypt_argv(dicom_copy(env, "MR_small_jpeg_ls_lossless.dcm", "in/jls.dcm"), "out/enc.dcm")


@case("dicom-bomb", "dkg-encrypt", "RLE DICOM declaring 60000x60000 pixels", 2,
      r"in/bomb\.dcm: declares 1 frame\(s\) of 60000x60000 pixels, .*decompression bomb")
def _(env):
    key_file(env)
    env.folder("out")
    dataset = pydicom.dcmread(DICOM_FILES / "MR_small_RLE.dcm")
    dataset.Rows = dataset.Columns = 60000
    dataset.save_as(env.path("in/bomb.dcm"), enforce_file_format=False)
    return encrypt_argv("in/bomb.dcm", "out/enc.dcm")


@case("text-as-dicom", "dkg-encrypt", "a text file named .dcm", 2,
      r"in/notes\.dcm: not a DICOM file \(no DICM header and no image dataset\)")
def _(env):
    key_file(env)
    env.folder("out")
    return encrypt_argv(env.write("in/notes.dcm", b"not a dicom file at all\n" * 10), "out/enc.dcm")


@case("float-tiff", "dkg-encrypt", "32-bit float TIFF plaintext", 2,
      r"in/f\.tif: cannot encrypt float32 pixels")
def _(env):
    key_file(env)
    env.folder("out")
    env.write("in/f.tif", png_bytes(np.random.default_rng(0).random((24, 20)).astype(np.float32), ".tif"))
    return encrypt_argv("in/f.tif")


@case("missing-plaintext", "dkg-encrypt", "plaintext path that does not exist", 2, r"in/gone\.png: no such file")
def _(env):
    key_file(env)
    env.folder("out")
    return encrypt_argv("in/gone.png")


# ---- dkg-encrypt: keys -----------------------------------------------------------------

@case("key-too-small", "dkg-encrypt", "4x4 key for a 24x20 16-bit image", 2,
      r"in/ct\.png with key k/small\.png: key too small: 4x4 key has 48 bytes, .* never tiled")
def _(env):
    key_file(env, "k/small.png", pixels=np.zeros((4, 4, 3), np.uint8))
    env.folder("out")
    return encrypt_argv(image(env, "in/ct.png"), key="k/small.png")


@case("key-wrong-dtype", "dkg-encrypt", "16-bit RGB key image (with a matching record)", 2,
      r"k/key16\.png: a key is an H×W×3 uint8 image, got \(24, 16, 3\) uint16")
def _(env):
    pixels = random_image((24, 16, 3), np.uint16)
    record = make_record(pixels)
    write_image(env.path("k/key16.png"), pixels)
    env.write("k/key16.json", json.dumps(record, indent=2).encode())
    env.folder("out")
    return encrypt_argv(image(env, "in/ct.png"), key="k/key16.png")


@case("key-gray", "dkg-encrypt", "gray (H×W) key image", 2, r"k/gray\.png: a key is an H×W×3 uint8 image, got \(24, 48\) uint8")
def _(env):
    pixels = random_image((24, 48), np.uint8)
    write_image(env.path("k/gray.png"), pixels)
    env.write("k/gray.json", json.dumps(make_record(pixels), indent=2).encode())
    env.folder("out")
    return encrypt_argv(image(env, "in/ct.png"), key="k/gray.png")


@case("key-record-missing", "dkg-encrypt", "key PNG without its .json record", 2,
      r"k/key\.json: key record missing; a key without its record cannot be verified")
def _(env):
    key_file(env)
    (env.root / "k/key.json").unlink()
    env.folder("out")
    return encrypt_argv(image(env, "in/ct.png"))


@case("key-record-mismatch", "dkg-encrypt", "key PNG paired with another key's record (fingerprint mismatch)", 2,
      r"k/key\.png: key pixels do not match their record .*altered or swapped")
def _(env):
    key_file(env)
    key_file(env, "k/other.png", seed=2)
    shutil.copyfile(env.root / "k/other.json", env.root / "k/key.json")
    env.folder("out")
    return encrypt_argv(image(env, "in/ct.png"))


@case("key-record-damaged", "dkg-encrypt", "key record that is not JSON", 2,
      r"k/key\.json: key record is not readable JSON")
def _(env):
    key_file(env)
    env.write("k/key.json", b'{"fingerprint": "sha256:')
    env.folder("out")
    return encrypt_argv(image(env, "in/ct.png"))


@case("key-not-an-image", "dkg-encrypt", "key .png that is a text file", 2, r"k/key\.png: not a readable image")
def _(env):
    key_file(env)
    env.write("k/key.png", b"definitely not a png")
    env.folder("out")
    return encrypt_argv(image(env, "in/ct.png"))


@case("key-missing", "dkg-encrypt", "--key path that does not exist", 2, r"k/none\.png: no such key file")
def _(env):
    env.folder("out")
    return encrypt_argv(image(env, "in/ct.png"), key="k/none.png")


@case("key-reuse", "dkg-encrypt", "key that already encrypted another plaintext", 2,
      r"k/key\.png: key already encrypted another plaintext .*one plaintext only \(--allow-key-reuse")
def _(env):
    encrypted(env)
    env.folder("out")
    return encrypt_argv(image(env, "in/other.png", seed=5))


# ---- dkg-encrypt: outputs --------------------------------------------------------------

@case("jpeg-output", "dkg-encrypt", "ciphertext path ending in .jpg", 2,
      r"out/enc\.jpg: \.jpg is lossy or cannot hold the ciphertext exactly; use \.png or \.tif")
def _(env):
    key_file(env)
    env.folder("out")
    return encrypt_argv(image(env, "in/ct.png"), "out/enc.jpg")


@case("output-is-input", "dkg-encrypt", "-o the plaintext itself", 2,
      r"in/ct\.png: is an input \(the plaintext in/ct\.png\); the ciphertext never replaces an input")
def _(env):
    key_file(env)
    return encrypt_argv(image(env, "in/ct.png"), "in/ct.png")


@case("output-is-key", "dkg-encrypt", "-o the key file, with --overwrite", 2,
      r"k/key\.png: is an input \(the key k/key\.png\); the ciphertext never replaces an input, even with --overwrite")
def _(env):
    key_file(env)
    return [*encrypt_argv(image(env, "in/ct.png"), "k/key.png"), "--overwrite"]


@case("output-exists", "dkg-encrypt", "-o a file that exists, no --overwrite", 2,
      r"out/enc\.png: exists; refusing to overwrite \(use --overwrite\)")
def _(env):
    key_file(env)
    env.write("out/enc.png", b"someone else's file")
    return encrypt_argv(image(env, "in/ct.png"))


@case("output-folder-missing", "dkg-encrypt", "-o into a folder that does not exist", 2,
      r"nowhere/enc\.png: output folder nowhere does not exist")
def _(env):
    key_file(env)
    return encrypt_argv(image(env, "in/ct.png"), "nowhere/enc.png")


@case("read-only-output-folder", "dkg-encrypt", "-o into a read-only folder", 2,
      r"ro/enc\.png: cannot write in ro \(Permission denied\)",
      "nothing written; the key's use is given back (record byte-identical)")
def _(env):
    key_file(env)
    plain = image(env, "in/ct.png")
    return encrypt_argv(plain, f"{read_only(env, 'ro')}/enc.png")


@case("disk-full", "dkg-encrypt", "disk fills up while the ciphertext is written (simulated ENOSPC)", 2,
      r"out/enc\.png: write failed \(No space left on device\)",
      "no partial or temporary file; the key's use is given back (record byte-identical)")
def _(env):
    key_file(env)
    plain = image(env, "in/ct.png")
    env.folder("out")
    disk_full_after(env, "out")
    return encrypt_argv(plain)


@case("corrupt-model-fresh-key", "dkg-encrypt", "--model that is not an ONNX file (fresh-key mode)", 2,
      r"bad\.onnx: not a loadable ONNX model",
      "nothing written; no key store created")
def _(env):
    env.folder("out")
    return [image(env, "in/ct.png"), "--model", env.write("bad.onnx", b"\x08\x07garbage"), "--seed", env.seed,
            "--keys", "ks", "-o", "out/enc.png"]


# ---- dkg-decrypt -----------------------------------------------------------------------

@case("wrong-key", "dkg-decrypt", "a key other than the one that encrypted", 2,
      r"enc/ct\.png with key k/wrong\.png: wrong key: this ciphertext was made with key sha256:")
def _(env):
    _, _, ciphertext = encrypted(env)
    key_file(env, "k/wrong.png", seed=9)
    env.folder("out")
    return [ciphertext, "--key", "k/wrong.png", "-o", "out/back.png"]


@case("tampered-pixel", "dkg-decrypt", "one ciphertext pixel changed (metadata intact)", 3,
      r"enc/ct\.png with key k/key\.png: authentication failed: .*altered \(tag mismatch\); nothing was decrypted")
def _(env):
    _, key, ciphertext = encrypted(env)
    array, meta = load_ciphertext(env.root / ciphertext)
    array[3, 4] ^= 0x0100
    save_ciphertext(env.root / ciphertext, array, meta, overwrite=True)
    env.folder("out")
    return [ciphertext, "--key", key, "-o", "out/back.png"]


@case("tampered-metadata", "dkg-decrypt", "metadata field (nonce) edited, chunk CRC recomputed", 3,
      r"enc/ct\.png with key k/key\.png: authentication failed")
def _(env):
    _, key, ciphertext = encrypted(env)
    array, meta = load_ciphertext(env.root / ciphertext)
    meta.nonce = "edited"
    save_ciphertext(env.root / ciphertext, array, meta, overwrite=True)
    env.folder("out")
    return [ciphertext, "--key", key, "-o", "out/back.png"]


@case("metadata-crc-damaged", "dkg-decrypt", "one byte of the metadata chunk flipped (CRC left)", 3,
      r"enc/ct\.png: the keras_dkg metadata chunk is damaged \(CRC mismatch\)")
def _(env):
    _, key, ciphertext = encrypted(env)
    data = bytearray((env.root / ciphertext).read_bytes())
    data[data.index(b"keras_dkg.cipher") + 40] ^= 0x01
    env.write(ciphertext, bytes(data))
    env.folder("out")
    return [ciphertext, "--key", key, "-o", "out/back.png"]


@case("metadata-not-json", "dkg-decrypt", "metadata chunk replaced by non-JSON text (valid CRC)", 3,
      r"enc/ct\.png: ciphertext metadata is damaged")
def _(env):
    from keras_dkg.runtime.formats.png_tiff import META_KEYWORD, png_with_text

    key = key_file(env)
    env.write("enc/ct.png", png_with_text(png_bytes(random_image()), META_KEYWORD, "{not json"))
    env.folder("out")
    return ["enc/ct.png", "--key", key, "-o", "out/back.png"]


@case("missing-metadata", "dkg-decrypt", "a plain PNG given as ciphertext (no metadata)", 2,
      r"in/ct\.png: no keras_dkg metadata; not a ciphertext written by dkg-encrypt")
def _(env):
    key_file(env)
    env.folder("out")
    return [image(env, "in/ct.png"), "--key", "k/key.png", "-o", "out/back.png"]


@case("missing-metadata-tiff", "dkg-decrypt", "a plain TIFF given as ciphertext", 2,
      r"in/ct\.tif: no keras_dkg metadata; not a ciphertext written by dkg-encrypt")
def _(env):
    key_file(env)
    env.folder("out")
    return [image(env, "in/ct.tif"), "--key", "k/key.png", "-o", "out/back.tif"]


@case("truncated-ciphertext", "dkg-decrypt", "ciphertext PNG cut to 60 % of its bytes", 2,
      r"enc/ct\.png: (truncated PNG chunk|not a readable image)")
def _(env):
    _, key, ciphertext = encrypted(env)
    data = (env.root / ciphertext).read_bytes()
    env.write(ciphertext, data[: len(data) * 3 // 5])
    env.folder("out")
    return [ciphertext, "--key", key, "-o", "out/back.png"]


@case("tampered-dicom-header", "dkg-decrypt", "encrypted DICOM whose PatientName was edited", 3,
      r"enc/mr\.dcm with key k/mr\.png: authentication failed")
def _(env):
    from keras_dkg.runtime.formats import dicom

    source = dicom_copy(env, "MR_small.dcm", "in/mr.dcm")
    plain = dicom.read_dicom(env.root / source)
    key = key_file(env, "k/mr.png", shape=plain.layout.shape, dtype=plain.layout.dtype)
    data, _ = dicom.encrypt_dicom(plain, load_key(env.root / key).pixels)
    env.write("enc/mr.dcm", data)
    dataset = pydicom.dcmread(env.root / "enc/mr.dcm")
    dataset.PatientName = "Someone^Else"
    dataset.save_as(env.root / "enc/mr.dcm", enforce_file_format=False)
    env.folder("out")
    return ["enc/mr.dcm", "--key", key, "-o", "out/mr.dcm"]


@case("decrypt-jpeg-output", "dkg-decrypt", "decrypted image path ending in .jpg", 2,
      r"out/back\.jpg: \.jpg is lossy")
def _(env):
    _, key, ciphertext = encrypted(env)
    env.folder("out")
    return [ciphertext, "--key", key, "-o", "out/back.jpg"]


@case("decrypt-output-is-input", "dkg-decrypt", "-o the ciphertext itself, with --overwrite", 2,
      r"enc/ct\.png: is an input \(the ciphertext enc/ct\.png\)")
def _(env):
    _, key, ciphertext = encrypted(env)
    return [ciphertext, "--key", key, "-o", ciphertext, "--overwrite"]


@case("decrypt-disk-full", "dkg-decrypt", "disk fills up while the plaintext is written (simulated)", 2,
      r"out/back\.png: write failed \(No space left on device\)", "no partial or temporary file")
def _(env):
    _, key, ciphertext = encrypted(env)
    env.folder("out")
    disk_full_after(env, "out")
    return [ciphertext, "--key", key, "-o", "out/back.png"]


@case("not-a-key-store", "dkg-decrypt", "--keys a folder that is not a key store", 2,
      r"in: not a keras_dkg key store \(no index\.jsonl\); wrong --keys folder\?")
def _(env):
    _, _, ciphertext = encrypted(env)
    env.folder("out")
    return [ciphertext, "--keys", "in", "-o", "out/back.png"]


def _store_with_ciphertext(env: Env) -> tuple[str, str]:
    """A key store holding the key of enc/ct.png (made through the store API)."""
    from keras_dkg.runtime.keystore.store import KeyStore

    plain, key, ciphertext = encrypted(env)
    store = KeyStore(env.root / "ks", create=True)
    store.add(load_key(env.root / key))
    return "ks", ciphertext


@case("key-store-index-damaged", "dkg-decrypt", "key store whose index.jsonl has a garbage line", 2,
      r"ks/index\.jsonl:1: damaged index line")
def _(env):
    store, ciphertext = _store_with_ciphertext(env)
    index = env.root / store / "index.jsonl"
    index.write_bytes(b"{garbage\n" + index.read_bytes())
    env.folder("out")
    return [ciphertext, "--keys", store, "-o", "out/back.png"]


@case("key-store-key-deleted", "dkg-decrypt", "key store whose key file was deleted", 2,
      r"ks/keys/[0-9a-f]{16}\.png: no such key file")
def _(env):
    store, ciphertext = _store_with_ciphertext(env)
    for path in (env.root / store / "keys").glob("*.png"):
        path.unlink()
    env.folder("out")
    return [ciphertext, "--keys", store, "-o", "out/back.png"]


@case("key-store-without-key", "dkg-decrypt", "key store that does not hold the ciphertext's key", 2,
      r"ks: no key with fingerprint sha256:[0-9a-f]{16}… in this key store")
def _(env):
    from keras_dkg.runtime.keystore.store import KeyStore

    _, _, ciphertext = encrypted(env)
    KeyStore(env.root / "ks", create=True)
    env.folder("out")
    return [ciphertext, "--keys", "ks", "-o", "out/back.png"]


# ---- dkg-keygen ------------------------------------------------------------------------

def keygen_argv(env: Env, model: str | None = None, seed: str | None = None, out: str = "out/key.png") -> list[str]:
    env.folder("out")
    return ["--model", model or env.model, "--seed", seed or env.seed, "-o", out, "--provider", "cpu"]


@case("corrupt-onnx", "dkg-keygen", "model file that is not ONNX", 2, r"bad\.onnx: not a loadable ONNX model")
def _(env):
    return keygen_argv(env, model=env.write("bad.onnx", b"\x08\x07not an onnx model at all"))


@case("zero-byte-onnx", "dkg-keygen", "model file of 0 bytes", 2, r"empty\.onnx: not a loadable ONNX model")
def _(env):
    return keygen_argv(env, model=env.write("empty.onnx", b""))


@case("truncated-onnx", "dkg-keygen", "the first half of the exported model", 2, r"half\.onnx: not a loadable ONNX model")
def _(env):
    data = (env.root / env.model).read_bytes()
    return keygen_argv(env, model=env.write("half.onnx", data[: len(data) // 2]))


def _graph(env: Env, name: str, input_shape, nodes) -> str:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, input_shape)
    model = helper.make_model(helper.make_graph(nodes(helper, TensorProto), name, [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, env.path(f"{name}.onnx"))
    return f"{name}.onnx"


@case("onnx-wrong-rank", "dkg-keygen", "ONNX model whose input has rank 3", 2,
      r"rank3\.onnx: input 'x' is tensor\(float\) \['n', 'h', 3\]; expected float32 of rank 4")
def _(env):
    return keygen_argv(env, model=_graph(env, "rank3", ["n", "h", 3], lambda h, t: [h.make_node("Identity", ["x"], ["y"])]))


@case("onnx-nan-weights", "dkg-keygen", "the exported generator with one weight tensor set to NaN", 2,
      r"nan\.onnx: generator output contains NaN or infinite values \(broken weights\?\)")
def _(env):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(env.root / env.model)
    for index, tensor in enumerate(model.graph.initializer):
        values = numpy_helper.to_array(tensor)
        if values.dtype == np.float32 and values.size > 16:
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(np.full_like(values, np.nan), tensor.name))
            break
    onnx.save(model, env.path("nan.onnx"))
    return keygen_argv(env, model="nan.onnx")


@case("seed-zero-byte", "dkg-keygen", "seed image of 0 bytes", 2, r"seed\.png: file is empty \(0 bytes\)")
def _(env):
    return keygen_argv(env, seed=env.write("seed.png", b""))


@case("seed-not-image", "dkg-keygen", "seed .png that is a text file", 2, r"seed\.png: not a readable image")
def _(env):
    return keygen_argv(env, seed=env.write("seed.png", b"hello"))


@case("keygen-jpeg-output", "dkg-keygen", "key path ending in .jpg", 2, r"out/key\.jpg: keys are written as lossless \.png files")
def _(env):
    return keygen_argv(env, out="out/key.jpg")


@case("keygen-output-exists", "dkg-keygen", "key record KEY.json exists already", 2,
      r"out/key\.json: exists; refusing to overwrite \(use --overwrite\)")
def _(env):
    argv = keygen_argv(env)
    env.write("out/key.json", b"{}")
    return argv


@case("keygen-output-folder-missing", "dkg-keygen", "-o into a folder that does not exist", 2,
      r"nowhere/key\.png: output folder nowhere does not exist")
def _(env):
    return keygen_argv(env, out="nowhere/key.png")


@case("keygen-size-zero", "dkg-keygen", "--size 0x5", 2, r"size must be positive, got 0x5")
def _(env):
    return [*keygen_argv(env), "--size", "0x5"]


@case("keygen-size-garbage", "dkg-keygen", "--size abc", 2, r"size 'abc' is not N or HxW")
def _(env):
    return [*keygen_argv(env), "--size", "abc"]


@case("keygen-count-zero", "dkg-keygen", "--count 0", 2, r"--count must be at least 1, got 0")
def _(env):
    return [*keygen_argv(env), "--count", "0"]


@case("keygen-disk-full", "dkg-keygen", "--count 3 and the disk fills up at the second key (simulated)", 2,
      r"out/key_001\.png: write failed \(No space left on device\)",
      "all three keys or none: the first key and its record are removed again")
def _(env):
    argv = [*keygen_argv(env), "--count", "3", "--size", "16"]
    disk_full_after(env, "out", allowed_writes=2)  # key_000.png and key_000.json, then full
    return argv


# ---- dkg-export ------------------------------------------------------------------------

@case("keras-corrupt", "dkg-export", ".keras file that is not a Keras archive", 2,
      r"bad\.keras: not a Keras archive \(a \.keras file is a zip file; this one is damaged or truncated\)")
def _(env):
    env.folder("out")
    return ["onnx", env.write("bad.keras", b"PK\x03\x04 not really a zip"), "-o", "out/g.onnx"]


@case("keras-zero-byte", "dkg-export", ".keras file of 0 bytes", 2, r"empty\.keras: not a Keras archive .*this one is empty")
def _(env):
    env.folder("out")
    return ["onnx", env.write("empty.keras", b""), "-o", "out/g.onnx"]


@case("keras-other-zip", "dkg-export", "a zip file (not a Keras model) named .keras", 2,
      r"other\.keras: cannot load the Keras model \(")
def _(env):
    import zipfile

    with zipfile.ZipFile(env.path("other.keras"), "w") as archive:
        archive.writestr("notes.txt", "not a model")
    env.folder("out")
    return ["onnx", "other.keras", "-o", "out/g.onnx"]


@case("keras-nan-weights", "dkg-export", "generator whose first convolution kernel is NaN", 2,
      r"nan\.keras: weight .*kernel holds NaN or infinite values \(diverged training\?\); nothing exported")
def _(env):
    from keras_dkg.export.source import import_keras

    keras = import_keras()
    model = keras.models.load_model(env.root / env.keras_file, compile=False)
    variable = next(v for v in model.weights if "kernel" in v.path)
    variable.assign(np.full(variable.shape, np.nan, np.float32))
    model.save(env.path("nan.keras"))
    env.folder("out")
    return ["onnx", "nan.keras", "-o", "out/g.onnx"]


@case("export-output-exists", "dkg-export", "-o an existing file, no --overwrite", 2,
      r"out/g\.onnx: exists; refusing to overwrite")
def _(env):
    env.write("out/g.onnx", b"an older export")
    return ["onnx", env.keras_file, "-o", "out/g.onnx"]


@case("export-wrong-suffix", "dkg-export", "tflite export to a .onnx path", 2,
      r"out/g\.onnx: this export writes a \.tflite file; name the output \*\.tflite")
def _(env):
    env.folder("out")
    return ["tflite", env.keras_file, "-o", "out/g.onnx"]


@case("run-folder-bad-size", "dkg-export", "run folder whose run.json says image_size 30", 2,
      r"run/run\.json: 'image_size' must be a positive multiple of 4, got 30")
def _(env):
    env.link("run/generator.keras", "tiny_generator_keras")
    env.write("run/run.json", b'{"image_size": 30}')
    env.folder("out")
    return ["onnx", "run", "-o", "out/g.onnx"]


@case("run-folder-without-model", "dkg-export", "run folder without generator.keras", 2,
      r"run/generator\.keras: no such model file")
def _(env):
    env.write("run/run.json", b'{"image_size": 64}')
    env.folder("out")
    return ["onnx", "run", "-o", "out/g.onnx"]


# ---- keras_dkg.fit ---------------------------------------------------------------------

FIT = ["--image-size", "32", "--checkpoint-every", "2", "--residual-blocks", "1", "--no-progress"]


@case("training-folder-empty", "keras_dkg.fit", "--source an empty folder", 2,
      r"empty: no images found \(looked for", "no run folder left behind (it was created by this run)")
def _(env):
    return ["--source", env.folder("empty"), "--steps", "2", "--out", "run", *FIT]


@case("training-image-unreadable", "keras_dkg.fit", "--source folder with one text file named .png", 2,
      r"src/b\.png: not a readable image", "no run folder left behind")
def _(env):
    image(env, "src/a.png", (32, 32), np.uint8)
    env.write("src/b.png", b"not a png at all")
    return ["--source", "src", "--steps", "2", "--out", "run", *FIT]


@case("training-image-zero-byte", "keras_dkg.fit", "--source folder with a 0-byte DICOM", 2,
      r"src/b\.dcm: file is empty \(0 bytes\)", "no run folder left behind")
def _(env):
    image(env, "src/a.png", (32, 32), np.uint8)
    env.write("src/b.dcm", b"")
    return ["--source", "src", "--steps", "2", "--out", "run", *FIT]


@case("fit-nan", "keras_dkg.fit", "a loss that turns NaN at the first step (NaN weights from then on)", 2,
      r"training diverged at step 1: non-finite loss \(.*g_loss=nan", "no run folder left behind (no checkpoint yet)")
def _(env):
    import tensorflow as tf

    from keras_dkg.train.losses import GANLoss

    original = GANLoss.generator
    env.monkeypatch.setattr(GANLoss, "generator", lambda self, logits: original(self, logits) * tf.constant(np.nan))
    image(env, "src/a.png", (32, 32), np.uint8)
    return ["--source", "src", "--steps", "2", "--out", "run", *FIT]


@case("fit-existing-run", "keras_dkg.fit", "--out a folder that already holds a run, no --resume", 2,
      r"run: already holds a run; pass --resume to continue it or choose another --out")
def _(env):
    env.write("run/generator.keras", b"an earlier run's generator")
    return ["--steps", "2", "--out", "run", *FIT]


@case("fit-resume-nothing", "keras_dkg.fit", "--resume in a folder without checkpoints", 2,
      r"run: nothing to resume \(no run\.json or no checkpoint\)")
def _(env):
    env.write("run/run.json", b"{}")
    return ["--steps", "2", "--out", "run", "--resume", *FIT]


@case("fit-resume-corrupt-run-json", "keras_dkg.fit", "--resume where run.json is damaged", 2,
      r"run/run\.json: cannot read the run settings to resume")
def _(env):
    env.write("run/run.json", b'{"options": ')
    env.write("run/checkpoints/ckpt-00000002/state.json", b'{"step": 2}')
    return ["--steps", "4", "--out", "run", "--resume", *FIT]


@case("fit-bad-size", "keras_dkg.fit", "--image-size 30", 2, r"--image-size 30 must be a multiple of 4 and at least 16")
def _(env):
    return ["--steps", "2", "--out", "run", "--image-size", "30", "--no-progress"]


@case("fit-no-arguments", "keras_dkg.fit", "no arguments at all (would train 20,000 steps into a folder nobody named)", 2,
      r"--out RUN_DIR is required: the run folder .* \(this command would train 20000 steps at 256²; "
      r"e\.g\. --out runs/dkg", "nothing written; no runs/ folder")
def _(env):
    return []


# ---- dkg-domain, dkg-analyze -----------------------------------------------------------

@case("domain-image-unreadable", "dkg-domain", "source folder with a damaged PNG between two good ones", 2,
      r"src/b\.png: not a readable image", "no partial domain: the images written before the bad one are removed")
def _(env):
    image(env, "src/a.png", (16, 16), np.uint8)
    env.write("src/b.png", png_bytes(random_image((16, 16), np.uint8))[:40])
    image(env, "src/c.png", (16, 16), np.uint8)
    return ["src", "-o", "dom", "--size", "16"]


@case("domain-empty-folder", "dkg-domain", "source folder without images", 2, r"src: no images found")
def _(env):
    env.write("src/readme.txt", b"no images here")
    return ["src", "-o", "dom", "--size", "16"]


@case("analyze-zero-byte-key", "dkg-analyze", "key image of 0 bytes", 2, r"k/empty\.png: file is empty \(0 bytes\)")
def _(env):
    return ["keys", env.write("k/empty.png", b"")]


@case("analyze-shape-mismatch", "dkg-analyze", "plaintext and ciphertext of different shapes", 2,
      r"in/a\.png \(\(24, 20\) uint16\) and in/b\.png \(\(20, 24\) uint16\) must have the same shape and dtype")
def _(env):
    return ["cipher", image(env, "in/a.png"), image(env, "in/b.png", (20, 24))]


@case("analyze-truncated-png", "dkg-analyze", "the first half of a key PNG", 2, r"k/half\.png: not a readable image")
def _(env):
    data = png_bytes(random_image((16, 16, 3), np.uint8))
    return ["keys", env.write("k/half.png", data[: len(data) // 2])]


# ---- batch (dkg-encrypt --batch, dkg-decrypt --batch) ----------------------------------

def batch_argv(env: Env, source: str = "in", out: str = "out", keys: str = "ks", model: str | None = None,
               seed: str | None = None) -> list[str]:
    return ["--batch", source, "-o", out, "--keys", keys, "--model", model or env.model, "--seed", seed or env.seed,
            "--no-progress"]


@case("batch-output-is-input", "dkg-encrypt", "--batch IN -o IN", 2,
      r"in: is the input folder; originals are never overwritten")
def _(env):
    image(env, "in/a.png")
    return batch_argv(env, out="in")


@case("batch-output-inside-input", "dkg-encrypt", "--batch IN -o IN/..: output folder contains the input", 2,
      r"\.: contains the input folder in; choose an output folder outside it")
def _(env):
    image(env, "in/a.png")
    return batch_argv(env, out=".")


@case("batch-input-missing", "dkg-encrypt", "--batch a folder that does not exist", 2, r"gone: no such folder")
def _(env):
    return batch_argv(env, source="gone")


@case("batch-corrupt-model", "dkg-encrypt", "--batch with a corrupt model", 2, r"bad\.onnx: not a loadable ONNX model",
      "nothing written: no output folder, no key store")
def _(env):
    image(env, "in/a.png")
    return batch_argv(env, model=env.write("bad.onnx", b"garbage"))


@case("batch-seed-unreadable", "dkg-encrypt", "--batch with a 0-byte seed", 2, r"seed0\.png: file is empty",
      "nothing written: no output folder, no key store")
def _(env):
    image(env, "in/a.png")
    return batch_argv(env, seed=env.write("seed0.png", b""))


@case("batch-keys-is-output", "dkg-encrypt", "--keys the output folder", 2,
      r"out: the key store must be a folder of its own")
def _(env):
    image(env, "in/a.png")
    return batch_argv(env, keys="out")


@case("batch-jobs-zero", "dkg-encrypt", "--jobs 0", 2, r"--jobs and the chunk size must be at least 1 \(got 0, 8\)")
def _(env):
    image(env, "in/a.png")
    return [*batch_argv(env), "--jobs", "0"]


@case("batch-concurrent-output", "dkg-encrypt", "another batch is writing the same output folder (its lock is held)", 2,
      r"out: another batch is writing into this folder right now \(\.dkg-batch\.lock is held\)",
      "nothing written: the running batch keeps the folder")
def _(env):
    from keras_dkg.runtime.batch.driver import folder_lock

    image(env, "in/a.png")
    argv = batch_argv(env)
    env.stack.enter_context(folder_lock(env.root / env.folder("out")))
    return argv


@case("batch-decrypt-not-a-key-store", "dkg-decrypt", "--batch with --keys a folder that is not a key store", 2,
      r"in: not a keras_dkg key store \(no index\.jsonl\); wrong --keys folder\?")
def _(env):
    image(env, "in/a.png")
    env.folder("arch")
    return ["--batch", "arch", "-o", "back", "--keys", "in", "--no-progress"]


@case("batch-all-files-bad", "dkg-encrypt", "--batch folder whose only image is a text file named .png", 1,
      r"^dkg-encrypt: failed: a\.png: in/a\.png: not a readable image",
      "no ciphertext; only the report OUT/dkg-report.json and the (empty) key store",
      allowed_new=("out", "out/dkg-report.json", "ks", "ks/keys", "ks/index.jsonl", "ks/.lock", "ks/.writers.lock",
                   "ks/audit.jsonl"))
def _(env):
    env.write("in/a.png", b"text")
    return batch_argv(env)


# --------------------------------------------------------------------------- the matrix


def test_the_matrix_has_at_least_40_cases():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@MATRIX.parametrize()
def test_bad_input(case: Case, tmp_path, request, monkeypatch, capfd):
    check_case(case, tmp_path, request, monkeypatch, capfd)


# --------------------------------------------------------------------------- image too small


def test_tiny_images_get_a_key_generated_at_8x8_and_cropped(tmp_path, tiny_onnx_model, monkeypatch, capfd):
    """Keys under 8 px a side used to fail in onnxruntime ("Pad reflect requires axis length >= 2")."""
    monkeypatch.chdir(tmp_path)
    from keras_dkg.runtime.keys.generator import MIN_GENERATION_SIDE, KeyGenerator

    generator = KeyGenerator(tiny_onnx_model, provider="cpu")
    seed = DICOM_FILES / "CT_small.dcm"
    for size in [(1, 1), (2, 3), (4, 4), (5, 7), (3, 100)]:
        key = generator.generate(seed, size=size)  # the base key: what the generator itself makes
        assert key.pixels.shape == (*size, 3)
        generation = key.record["generation_size"]
        assert generation == [max(MIN_GENERATION_SIDE, -(-v // 4) * 4) for v in size]
        big = generator.generate(seed, size=tuple(generation))
        np.testing.assert_array_equal(key.pixels, big.pixels[: size[0], : size[1]])  # cropped, never tiled
    # sizes that always worked are generated exactly as before
    assert generator.generate(seed, size=(12, 8), nonce="t").record["generation_size"] == [12, 8]

    # end to end: a 1x1 and a 3x2 RGB image encrypt with a fresh key and decrypt bit-exact
    Path("g.onnx").symlink_to(tiny_onnx_model)
    for name, pixels in {"dot.png": random_image((1, 1), np.uint8), "strip.png": random_image((3, 2, 3), np.uint8)}.items():
        write_image(name, pixels)
        assert cipher_cli.encrypt_main([name, "--model", "g.onnx", "--seed", str(seed), "--keys", "ks",
                                        "-o", f"enc_{name}", "--provider", "cpu"]) == 0
        assert cipher_cli.decrypt_main([f"enc_{name}", "--keys", "ks", "-o", f"back_{name}"]) == 0
        np.testing.assert_array_equal(read_image(f"back_{name}"), pixels)
    assert keygen_cli.main(["--model", "g.onnx", "--seed", str(seed), "-o", "k.png", "--size", "2x3",
                            "--provider", "cpu"]) == 0
    assert load_key("k.png").pixels.shape == (2, 3, 3)
    assert capfd.readouterr().err == ""
    record_row({"id": "image-too-small", "command": "dkg-encrypt dot.png --model g.onnx --seed SEED --keys ks -o enc_dot.png",
                "bad_input": "1x1 plaintext (key needs 4x4, the generator at least 8x8)", "exit": 0,
                "message": "(works: the key is generated at 8x8 and cropped to 4x4; decrypts bit-exact)",
                "outputs": "ciphertext written; key stored"})


# --------------------------------------------------------------------------- killed fit


def test_killed_fit_mid_chunk_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch, capfd):
    """Killed at step 3, between the checkpoints at 2 and 4: exit 130, one line, the step-2
    checkpoint intact, no half checkpoint, no generator; --resume then equals the
    uninterrupted run (tests/test_fit.py checks a resume at a checkpoint boundary)."""
    import keras

    import keras_dkg.train.networks  # noqa: F401 - custom layers for load_model
    from keras_dkg import fit
    from keras_dkg.train import loop

    monkeypatch.chdir(tmp_path)
    args = ["--steps", "4", *FIT]
    assert fit.main([*args, "--out", "straight"]) == 0
    original = loop.StepMonitor.record

    def killed_at_step_3(self, values):
        going_on = original(self, values)
        if self.step == 3:
            raise KeyboardInterrupt  # what Ctrl-C (SIGINT) raises
        return going_on

    monkeypatch.setattr(loop.StepMonitor, "record", killed_at_step_3)
    capfd.readouterr()
    assert fit.main([*args, "--out", "split"]) == 130
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.match(r"keras_dkg\.fit: error: interrupted; the checkpoints in split/checkpoints are kept, "
                    r"continue with --resume", err), err
    left = sorted(p.name for p in (tmp_path / "split" / "checkpoints").iterdir())
    assert left == ["ckpt-00000002"], left  # no .tmp- half checkpoint
    assert not (tmp_path / "split" / "generator.keras").exists()
    monkeypatch.setattr(loop.StepMonitor, "record", original)
    assert fit.main([*args, "--out", "split", "--resume"]) == 0
    straight = keras.models.load_model(tmp_path / "straight" / "generator.keras").get_weights()
    resumed = keras.models.load_model(tmp_path / "split" / "generator.keras").get_weights()
    for a, b in zip(straight, resumed, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    record_row({"id": "killed-fit", "command": "python -m keras_dkg.fit --steps 4 --checkpoint-every 2 --out split "
                "(interrupted at step 3)", "bad_input": "training interrupted mid-chunk (SIGINT)", "exit": 130,
                "message": err.strip(), "outputs": "last complete checkpoint (step 2) kept, no half checkpoint, no "
                "generator.keras; --resume ends with the uninterrupted run's weights (atol 1e-6)"})


# --------------------------------------------------------------------------- killed batch


def _batch_folder(root: Path) -> Path:
    rng = np.random.default_rng(3)
    root.mkdir(parents=True, exist_ok=True)
    write_image(root / "a.png", rng.integers(0, 65536, (24, 36), dtype=np.uint16))
    write_image(root / "b.png", rng.integers(0, 256, (20, 28, 3), dtype=np.uint8))
    (root / "sub").mkdir(parents=True, exist_ok=True)
    write_image(root / "sub" / "c.tif", rng.integers(0, 65536, (16, 20), dtype=np.uint16))
    shutil.copyfile(DICOM_FILES / "MR_small.dcm", root / "sub" / "d.dcm")
    write_image(root / "e.png", rng.integers(0, 256, (16, 24), dtype=np.uint8))
    return root


def _pixels_of(root: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.suffix in (".png", ".tif") and path.name != "dkg-report.json":
            out[path.relative_to(root).as_posix()] = read_image(path)
        elif path.suffix == ".dcm":
            out[path.relative_to(root).as_posix()] = pydicom.dcmread(path).pixel_array
    return out


KILL_ON_THIRD_OUTPUT = """
import os, signal, sys
out = os.path.abspath(sys.argv[1])
real, done = os.link, []
def link(src, dst, *args, **kwargs):
    if os.path.dirname(os.path.abspath(dst)).startswith(out):
        done.append(dst)
        if len(done) == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # after the temporary file is complete, before its link
    return real(src, dst, *args, **kwargs)
os.link = link
from keras_dkg.runtime.cli.encrypt import encrypt_main
sys.exit(encrypt_main(sys.argv[2:]))
"""


def test_sigkilled_batch_resumes_bit_exact(tmp_path, tiny_onnx_model, capfd):
    """A batch SIGKILLed while writing its third ciphertext leaves a temporary file, a lock
    file and a stored key; `--resume` cleans up, keeps the finished files and ends with the
    same decryptions as an uninterrupted run, bit for bit (tests/test_batch.py covers an
    interrupt raised inside the process)."""
    source = _batch_folder(tmp_path / "in")
    seed = str(DICOM_FILES / "CT_small.dcm")
    common = ["--model", str(tiny_onnx_model), "--seed", seed, "--no-progress"]
    # the uninterrupted reference
    assert cipher_cli.encrypt_main(["--batch", str(source), "-o", str(tmp_path / "ref"), "--keys",
                                    str(tmp_path / "ref_keys"), *common]) == 0
    assert cipher_cli.decrypt_main(["--batch", str(tmp_path / "ref"), "-o", str(tmp_path / "ref_back"), "--keys",
                                    str(tmp_path / "ref_keys"), "--no-progress"]) == 0
    out, keys = tmp_path / "out", tmp_path / "keys"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    killed = subprocess.run([sys.executable, "-c", KILL_ON_THIRD_OUTPUT, str(out), "--batch", str(source), "-o",
                             str(out), "--keys", str(keys), *common], env=env, capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    leftovers = sorted(p.name for p in out.rglob(".*"))
    assert any(name.endswith(".tmp.png") or ".tmp." in name for name in leftovers), leftovers  # a temp file is left
    capfd.readouterr()
    assert cipher_cli.encrypt_main(["--batch", str(source), "-o", str(out), "--keys", str(keys), "--resume",
                                    *common]) == 0
    printed = capfd.readouterr().out
    assert "2 resumed" in printed and "3 encrypted" in printed, printed
    assert sorted(p.name for p in out.rglob(".*")) == []  # temporary and lock files gone
    assert cipher_cli.decrypt_main(["--batch", str(out), "-o", str(tmp_path / "back"), "--keys", str(keys),
                                    "--no-progress"]) == 0
    back, reference = _pixels_of(tmp_path / "back"), _pixels_of(tmp_path / "ref_back")
    assert sorted(back) == sorted(reference) == sorted(_pixels_of(source))
    for name, pixels in _pixels_of(source).items():
        np.testing.assert_array_equal(back[name], pixels, err_msg=name)
        np.testing.assert_array_equal(back[name], reference[name], err_msg=name)
    record_row({"id": "killed-batch", "command": "dkg-encrypt --batch in -o out --keys keys ... (SIGKILL at the 3rd "
                "output), then the same with --resume", "bad_input": "batch killed with SIGKILL mid-write (exit -9), then resumed",
                "exit": 0, "message": "(resume: 2 resumed, 3 encrypted)", "outputs": "the killed run's temporary "
                "and lock files are removed, finished outputs kept; decryptions bit-exact equal to an "
                "uninterrupted run's"})


# --------------------------------------------------------------------------- concurrency


def test_two_batches_into_one_output_folder(tmp_path, tiny_onnx_model):
    """Two processes encrypt the same folder into the same OUT_DIR at once: one wins, the
    other is refused (folder lock) or, if it starts after the first finished, refuses every
    file; no output is corrupt, every ciphertext decrypts bit-exact."""
    source = _batch_folder(tmp_path / "in")
    out, keys = tmp_path / "out", tmp_path / "keys"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # each run holds the folder 1.5 s longer, so that two runs started together overlap
    script = ("import sys, time\nfrom keras_dkg.runtime.batch import driver as batch\nrun = batch._run\n"
              "batch._run = lambda *a, **k: (time.sleep(1.5), run(*a, **k))[1]\n"
              "from keras_dkg.runtime.cli.encrypt import encrypt_main\nsys.exit(encrypt_main(sys.argv[1:]))")
    command = [sys.executable, "-c", script, "--batch", str(source), "-o", str(out), "--keys", str(keys),
               "--model", str(tiny_onnx_model), "--seed", str(DICOM_FILES / "CT_small.dcm"), "--no-progress"]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [(run.wait(timeout=180), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 1], [0, 2]), results
    loser = next(err for code, err in results if code != 0)
    if codes == [0, 2]:
        assert loser.count("\n") == 1 and "another batch is writing into this folder right now" in loser, loser
    else:
        assert all("exists; refusing to overwrite" in line for line in loser.splitlines()), loser
    assert sorted(p.name for p in out.rglob(".*")) == []
    assert cipher_cli.decrypt_main(["--batch", str(out), "-o", str(tmp_path / "back"), "--keys", str(keys),
                                    "--no-progress"]) == 0
    back = _pixels_of(tmp_path / "back")
    for name, pixels in _pixels_of(source).items():
        np.testing.assert_array_equal(back[name], pixels, err_msg=name)
    shown = loser.strip() if codes == [0, 2] else loser.splitlines()[0] + " (one per file)"
    shown = shown.replace(f"{tmp_path}/", "…/")
    record_row({"id": "concurrent-batches", "command": "dkg-encrypt --batch in -o out ... (two processes at once)",
                "bad_input": "two processes writing the same output folder", "exit": codes[1], "message": shown,
                "outputs": "one run writes everything; the other writes nothing (or, when it starts after the "
                "first finished, refuses each existing file with exit 1); every ciphertext decrypts bit-exact"})


def test_two_encryptions_racing_for_one_output_file(tmp_path, monkeypatch, capsys):
    """Both write their temporary file first, then both try to link it into place: exactly one
    wins, the other fails cleanly, gives its key's use back and leaves no temporary file."""
    from keras_dkg.runtime.guards import atomic

    monkeypatch.chdir(tmp_path)
    env = Env(tmp_path, None, monkeypatch, contextlib.ExitStack())
    plain = image(env, "in/ct.png")
    key_file(env, "k/a.png", seed=1)
    key_file(env, "k/b.png", seed=2)
    env.folder("out")
    records = {name: (tmp_path / f"k/{name}.json").read_bytes() for name in "ab"}
    barrier = threading.Barrier(2, timeout=30)
    real_fsync = atomic._fsync

    def fsync_then_wait(path):
        real_fsync(path)
        if Path(path).name.startswith(".enc.png."):
            barrier.wait()  # both temporary ciphertexts complete before either is linked

    monkeypatch.setattr(atomic, "_fsync", fsync_then_wait)
    codes = {}
    threads = [threading.Thread(target=lambda n=name: codes.__setitem__(
        n, cipher_cli.encrypt_main(encrypt_argv(plain, key=f"k/{n}.png")))) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(codes.values()) == [0, 2], codes
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out/enc.png: was created by someone else meanwhile; not replaced" in err, err
    winner = next(n for n, c in codes.items() if c == 0)
    loser = next(n for n, c in codes.items() if c != 0)
    assert (tmp_path / f"k/{loser}.json").read_bytes() == records[loser]  # the loser's key is unused again
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["enc.png"]
    assert cipher_cli.decrypt_main(["out/enc.png", "--key", f"k/{winner}.png", "-o", "back.png"]) == 0
    np.testing.assert_array_equal(read_image("back.png"), read_image(plain))
    record_row({"id": "concurrent-same-output", "command": "dkg-encrypt in/ct.png --key k/X.png -o out/enc.png "
                "(twice at once, X = a, b)", "bad_input": "two encryptions racing for one ciphertext path "
                "(both temporary files complete before either is linked)", "exit": 2,
                "message": err.strip(), "outputs": "one ciphertext (the winner's), complete; the loser writes "
                "nothing and its key record is byte-identical"})


# --------------------------------------------------------------------------- key store


def _key(seed: int, shape=(8, 8)) -> Key:
    pixels = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    return Key(pixels, make_record(pixels, nonce=str(seed)))


def test_key_store_created_by_many_workers_at_once(tmp_path):
    """KeyStore(create=True) used mkdir without exist_ok: a second worker got FileExistsError."""
    from keras_dkg.runtime.keystore.store import KeyStore

    barrier, errors = threading.Barrier(8, timeout=30), []

    def create():
        barrier.wait()
        try:
            KeyStore(tmp_path / "a" / "b" / "ks", create=True)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert (tmp_path / "a/b/ks/index.jsonl").is_file() and (tmp_path / "a/b/ks/keys").is_dir()


def test_key_store_index_is_append_only_and_linear(tmp_path, monkeypatch):
    from keras_dkg.runtime.keystore import store as keystore

    store = keystore.KeyStore(tmp_path / "ks", create=True)
    written = {"append": 0, "compact": 0}
    real_write, real_atomic = os.write, keystore.write_bytes_atomic

    def counting_write(fd, data):
        written["append"] += len(data)
        return real_write(fd, data)

    def counting_atomic(path, data, overwrite=False):
        written["compact"] += len(data)
        return real_atomic(path, data, overwrite=overwrite)

    monkeypatch.setattr(os, "write", counting_write)
    monkeypatch.setattr(keystore, "write_bytes_atomic", counting_atomic)
    count = 120
    for number in range(count):  # add, then mark used: two changes per key
        key = _key(number)
        store.add(key)
        store.mark_used(key.fingerprint, f"sha256:{number:064x}", f"/p/{number}.png")
    monkeypatch.undo()
    size = (tmp_path / "ks" / "index.jsonl").stat().st_size
    # linear: everything ever written is a small multiple of the final index (a rewrite per
    # change would write ~count/2 times the final size)
    assert written["append"] + written["compact"] < 4 * size
    lines = (tmp_path / "ks" / "index.jsonl").read_text().splitlines()
    assert count <= len(lines) < 2 * count  # superseded lines, compacted while more than half
    fresh = keystore.KeyStore(tmp_path / "ks")
    entries = fresh.entries()
    assert len(entries) == count and all(len(e["used_for"]) == 1 for e in entries)
    assert [e["nonce"] for e in entries] == [str(n) for n in range(count)]  # order of first addition
    # a later line supersedes an earlier one for the same fingerprint
    last = json.loads(lines[-1])
    assert fresh.find(last["fingerprint"])["used_for"] == last["used_for"]


def test_key_store_batch_writes_one_index_line_per_key(tmp_path):
    from keras_dkg.runtime.keystore.store import KeyStore

    store = KeyStore(tmp_path / "ks", create=True)
    for number in range(5):
        key = _key(number)
        entry = store.add(key, f"sha256:{number:064x}", f"/p/{number}.png")
        assert entry["used_for"][0]["plaintext"] == f"/p/{number}.png"
        assert load_key(tmp_path / "ks" / entry["key_file"]).record["used_for"] == entry["used_for"]
    assert len((tmp_path / "ks" / "index.jsonl").read_text().splitlines()) == 5


def test_key_store_ignores_and_cuts_a_partial_last_line(tmp_path):
    """A writer killed mid-line leaves a line without its newline: readers ignore it and the
    next writer (under the lock) cuts it off before appending — only when the append intent
    proves it is that torn append (issue 23); a cut line nothing explains is refused."""
    from keras_dkg.errors import KeyMaterialError
    from keras_dkg.runtime.keystore import locks as keystore_locks
    from keras_dkg.runtime.keystore.store import KeyStore

    store = KeyStore(tmp_path / "ks", create=True)
    store.add(_key(1))
    index = tmp_path / "ks" / "index.jsonl"
    whole = index.stat().st_size
    with open(index, "ab") as handle:
        handle.write(b'{"fingerprint": "sha256:dead')
    assert len(KeyStore(tmp_path / "ks").entries()) == 1
    with pytest.raises(KeyMaterialError, match="the last index line is cut"):
        store.add(_key(2))
    keystore_locks.begin_append(index, whole, 300)  # what a writer killed inside its append leaves
    store.add(_key(2))
    lines = index.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["fingerprint"] for line in lines)
    assert len(KeyStore(tmp_path / "ks").entries()) == 2


def test_key_store_notices_an_index_replaced_in_place(tmp_path):
    """A reader remembers how far it read; if the file is replaced by another of at least that
    size (a compaction that got the old inode number back), it reads it afresh."""
    from keras_dkg.runtime.keystore.store import KeyStore

    writer = KeyStore(tmp_path / "ks", create=True)
    for number in range(3):
        writer.add(_key(number))
    reader = KeyStore(tmp_path / "ks")
    assert len(reader.entries()) == 3
    index = tmp_path / "ks" / "index.jsonl"
    lines = index.read_bytes().splitlines(keepends=True)
    with open(index, "r+b") as handle:  # same inode, same size, other first entries
        handle.write(lines[2] + lines[1] + lines[0])
    assert [e["nonce"] for e in reader.entries()] == ["2", "1", "0"]


def test_key_from_a_store_given_with_key_updates_the_index(tmp_path, monkeypatch, capsys):
    """`dkg-encrypt --key STORE/keys/X.png` used to record the use in X.json only."""
    from keras_dkg.runtime.keystore.store import KeyStore

    monkeypatch.chdir(tmp_path)
    env = Env(tmp_path, None, monkeypatch, contextlib.ExitStack())
    store = KeyStore(tmp_path / "ks", create=True)
    height, width = key_size_for(PLAIN_SHAPE, PLAIN_DTYPE)
    key = _key(7, (height, width))
    entry = store.add(key)
    plain, other = image(env, "in/ct.png"), image(env, "in/other.png", seed=3)
    key_path = f"ks/{entry['key_file']}"
    assert cipher_cli.encrypt_main(encrypt_argv(plain, "enc.png", key=key_path)) == 0
    indexed = KeyStore(tmp_path / "ks").find(key.fingerprint)["used_for"]
    recorded = load_key(key_path).record["used_for"]
    assert [u["plaintext_sha256"] for u in indexed] == [u["plaintext_sha256"] for u in recorded]
    assert len(indexed) == 1
    # both refuse a second plaintext, and decryption through the store works
    capsys.readouterr()
    assert cipher_cli.encrypt_main(encrypt_argv(other, "enc2.png", key=key_path)) == 2
    assert "already encrypted another plaintext" in capsys.readouterr().err
    assert cipher_cli.decrypt_main(["enc.png", "--keys", "ks", "-o", "back.png"]) == 0
    np.testing.assert_array_equal(read_image("back.png"), read_image(plain))


# --------------------------------------------------------------------------- real processes


@pytest.mark.parametrize("script, argv, expected", [
    ("dkg-encrypt", ["in/trunc.tif", "--key", "k/key.png", "-o", "enc.png"], "in/trunc.tif: not a readable image"),
    ("dkg-encrypt", ["in/mr.dcm", "--key", "k/key.png", "-o", "enc.dcm"], "in/mr.dcm: Pixel Data holds 8130 bytes"),
    ("dkg-keygen", ["--model", "bad.onnx", "--seed", "in/trunc.tif", "-o", "k2.png"], "bad.onnx: not a loadable ONNX"),
    ("keras_dkg.fit", ["--source", "empty", "--out", "run", "--steps", "1", "--image-size", "32", "--no-progress"],
     "empty: no images found"),
])
def test_console_scripts_print_one_line_in_a_real_process(tmp_path, script, argv, expected):
    """Out of pytest no capture hides library logs (OpenCV, pydicom, onnxruntime, TensorFlow's
    import banners): still exactly one line."""
    env = Env(tmp_path, None, None, contextlib.ExitStack())
    key_file(env)
    data = png_bytes(random_image(), ".tif")
    env.write("in/trunc.tif", data[: len(data) // 2])
    shutil.copyfile(DICOM_FILES / "MR_truncated.dcm", env.path("in/mr.dcm"))
    env.write("bad.onnx", b"\x08\x07garbage")
    env.folder("empty")
    if script == "keras_dkg.fit":
        command = [sys.executable, "-m", script]
    else:
        command = [str(Path(sys.executable).parent / script)]
        if not Path(command[0]).exists():
            pytest.skip(f"{script} is not installed in this environment")
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user runs it
    result = subprocess.run([*command, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                            env={**environment, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
    assert not any((tmp_path / name).exists() for name in ("enc.png", "enc.dcm", "k2.png", "run"))

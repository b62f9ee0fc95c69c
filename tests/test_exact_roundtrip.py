"""Property: what dkg-encrypt accepts, dkg-decrypt gives back as the file's stored samples.

Plaintexts are written by writers other than OpenCV (tests/rawpng.py for PNG, tifffile
for uncompressed and Deflate TIFF, Pillow for LZW TIFF), so their stored samples are known
by construction and confirmed by an independent reader; the decrypted PNG is read back
with tests/rawpng.py. Files the decoder would change (palette, gray+alpha, low bit depth,
tRNS, animation, several pages, unassociated 8-bit alpha, Orientation, MinIsWhite) must be
refused with nothing written. Through the real cipher_cli mains, with a key file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tempfile
from pathlib import Path

import numpy as np
import rawpng
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from keras_dkg.runtime.ciphers.metadata import key_size_for
from keras_dkg.runtime.cli import encrypt as cipher_cli
from keras_dkg.runtime.keys.artifact import Key, make_record

EXAMPLES = settings(max_examples=25, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
COLOURS = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type
PILLOW_LZW = [("uint8", 1), ("uint16", 1), ("uint8", 3)]  # gray, 16-bit gray, RGB: Pillow's LZW writer


def samples(draw, dtype, channels: int) -> np.ndarray:
    """Random samples of a drawn size, or one extreme value everywhere."""
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    shape = (height, width) if channels == 1 else (height, width, channels)
    top = np.iinfo(dtype).max
    fill = draw(st.sampled_from(["random", "zero", "max"]))
    if fill != "random":
        return np.full(shape, 0 if fill == "zero" else top, dtype)
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, top, shape, dtype, endpoint=True)


def tiff_bytes(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def pillow_tiff(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="TIFF", compression="tiff_lzw")
    return buffer.getvalue()


@st.composite
def accepted(draw) -> tuple[str, bytes, np.ndarray]:
    """(suffix, file bytes, stored samples) of a plaintext dkg-encrypt must take exactly."""
    kind = draw(st.sampled_from(["png", "tiff-none", "tiff-deflate", "tiff-lzw"]))
    if kind == "tiff-lzw":
        dtype, channels = draw(st.sampled_from(PILLOW_LZW))
        array = samples(draw, np.dtype(dtype), channels)
        data = pillow_tiff(array)
        assert np.array_equal(np.array(Image.open(io.BytesIO(data))), array)
        return ".tif", data, array
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    channels = draw(st.sampled_from([1, 3, 4]))
    array = samples(draw, dtype, channels)
    if kind == "png":
        return ".png", rawpng.encode(array, COLOURS[channels], 8 * array.itemsize), array
    options = {"photometric": "minisblack" if channels == 1 else "rgb",
               "compression": None if kind == "tiff-none" else "zlib"}
    if channels == 4:  # 8-bit unassociated alpha is premultiplied by the decoder: refused, see below
        alphas = ["unspecified", "assocalpha"] + (["unassalpha"] if dtype == np.uint16 else [])
        options["extrasamples"] = [draw(st.sampled_from(alphas))]
    data = tiff_bytes(array, **options)
    assert np.array_equal(tifffile.imread(io.BytesIO(data)), array)
    return ".tif", data, array


@st.composite
def refused(draw) -> tuple[str, bytes, str]:
    """(suffix, file bytes, words of the refusal) of a plaintext the decoder would change."""
    rgba = samples(draw, np.uint8, 4)
    gray, rgb = rgba[..., 0].copy(), rgba[..., :3].copy()
    kind = draw(st.sampled_from(["palette", "gray+alpha", "low-depth", "trns", "apng", "pages", "unassoc",
                                 "tiff-gray+alpha", "orientation", "miniswhite", "lzw-rgba"]))
    if kind == "palette":
        palette = rawpng.chunk(b"PLTE", bytes(range(256)) * 3)
        return ".png", rawpng.encode(gray, 3, 8, (palette,)), "palette PNG"
    if kind == "gray+alpha":
        return ".png", rawpng.encode(rgb[..., :2], 4, 8), "gray+alpha PNG"
    if kind == "low-depth":
        depth = draw(st.sampled_from([1, 2, 4]))
        return ".png", rawpng.encode(gray % (1 << depth), 0, depth), f"{depth}-bit gray PNG"
    if kind == "trns":
        return ".png", rawpng.encode(rgb, 2, 8, (rawpng.chunk(b"tRNS", bytes(6)),)), "tRNS"
    if kind == "apng":
        buffer = io.BytesIO()
        frames = [Image.fromarray(gray), Image.fromarray(gray ^ 0xFF)]
        frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
        return ".png", buffer.getvalue(), "animated PNG"
    if kind == "pages":
        pages, buffer = draw(st.integers(2, 4)), io.BytesIO()
        with tifffile.TiffWriter(buffer) as writer:  # one write per page: a stack of H×1 pages could be
            for page in range(pages):                 # taken for one page with one sample per pixel
                writer.write(gray ^ page, photometric="minisblack")
        return ".tif", buffer.getvalue(), f"multi-page TIFF ({pages} pages)"
    if kind == "unassoc":
        return ".tif", tiff_bytes(rgba, photometric="rgb", extrasamples=["unassalpha"]), "unassociated alpha"
    if kind == "tiff-gray+alpha":
        data = tiff_bytes(rgb[..., :2], photometric="minisblack", extrasamples=["unassalpha"])
        return ".tif", data, "gray+alpha TIFF"
    if kind == "orientation":
        value = draw(st.integers(2, 8))
        return ".tif", tiff_bytes(gray, extratags=[(274, 3, 1, value, False)]), f"Orientation {value}"
    if kind == "miniswhite":
        return ".tif", tiff_bytes(gray, photometric="miniswhite"), "MinIsWhite TIFF"
    return ".tif", pillow_tiff(rgba), "unassociated alpha"


def key_for(folder: Path, array: np.ndarray) -> str:
    height, width = key_size_for(array.shape, array.dtype)
    pixels = np.random.default_rng(array.size).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Key(pixels, make_record(pixels, nonce=None)).save(folder / "key.png")
    return str(folder / "key.png")


def state(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@EXAMPLES
@given(plaintext=accepted(), ciphertext_suffix=st.sampled_from([".png", ".tif"]))
def test_accepted_plaintexts_decrypt_to_their_stored_samples(plaintext, ciphertext_suffix):
    suffix, data, stored = plaintext
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / f"plain{suffix}").write_bytes(data)
        key = key_for(folder, stored)
        encrypted, back = folder / f"enc{ciphertext_suffix}", folder / "back.png"
        assert cipher_cli.encrypt_main([str(folder / f"plain{suffix}"), "--key", key, "-o", str(encrypted)]) == 0
        assert cipher_cli.decrypt_main([str(encrypted), "--key", key, "-o", str(back)]) == 0
        decrypted = rawpng.decode(back.read_bytes())
        assert decrypted.dtype == stored.dtype and np.array_equal(decrypted, stored)
        assert (folder / f"plain{suffix}").read_bytes() == data  # the original is only read


@EXAMPLES
@given(plaintext=refused())
def test_changed_plaintexts_are_refused_and_nothing_is_written(plaintext):
    suffix, data, words = plaintext
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        source = folder / f"plain{suffix}"
        source.write_bytes(data)
        key = key_for(folder, np.zeros((40, 40, 4), np.uint16))
        before = state(folder)
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            code = cipher_cli.encrypt_main([str(source), "--key", key, "-o", str(folder / "enc.png")])
        assert code == 2
        message = errors.getvalue()
        assert message.count("\n") == 1 and f"{source}: " in message and words in message, message
        assert state(folder) == before  # no ciphertext, key and record untouched

"""The bad-input matrix, images round (issue classes 3 and 4): a plaintext the decoder would
not return exactly as stored is refused, not silently changed; every input is bounded by
its declared size (every TIFF directory, wherever it lies) and refused by type when it is
a FIFO, device or folder. Each file here is built so OpenCV *would* decode it (to something
else): what OpenCV really does with each is in docs/formats.md.
"""

from __future__ import annotations

import io
import os
import struct

import cv2
import numpy as np
import pytest
import rawpng
import tifffile
from badinput_kit import DICOM_FILES, Matrix, check_case, encrypt_argv, key_file, pydicom
from PIL import Image

from keras_dkg.errors import InputError
from keras_dkg.runtime.formats.images import read_image
from keras_dkg.runtime.formats.raster_headers import MAX_PIXELS

MATRIX = Matrix()
case = MATRIX.case
RNG = np.random.default_rng(7)
GRAY8 = RNG.integers(0, 256, (12, 10), dtype=np.uint8)
RGBA8 = RNG.integers(0, 256, (12, 10, 4), dtype=np.uint8)
CONVERT = r"convert it losslessly to an 8/16-bit gray, RGB or RGBA PNG or single-page TIFF first"


def plain(env, relative: str, data: bytes) -> list[str]:
    """A key, the output folder and the plaintext `data`: the dkg-encrypt argv."""
    key_file(env)
    env.folder("out")
    return encrypt_argv(env.write(relative, data), "out/enc.tif" if relative.endswith(".tif") else "out/enc.png")


def tiff(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def pillow(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def late_ifd_tiff(width: int, height: int, pad: int = 580_000) -> bytes:
    """An 8-bit gray TIFF whose only directory lies after `pad` bytes of strip data."""
    tags = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1),
            (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, pad)]
    directory = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + b"\0" * 4
    return b"II*\0" + struct.pack("<I", 8 + pad) + bytes(pad) + directory


# ---- TIFF the decoder changes --------------------------------------------------------------

@case("img-multipage-tiff", "dkg-encrypt", "3-page TIFF (OpenCV reads page 1 only)", 2,
      r"in/pages\.tif: multi-page TIFF \(3 pages\): only the first page would be encrypted; split it")
def _(env):
    return plain(env, "in/pages.tif", tiff(np.stack([GRAY8, GRAY8 ^ 1, GRAY8 ^ 2]), photometric="minisblack"))


@case("img-thumbnail-tiff", "dkg-encrypt", "TIFF with a reduced-resolution second directory", 2,
      r"in/thumb\.tif: multi-page TIFF \(2 pages\)")
def _(env):
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        writer.write(GRAY8)
        writer.write(GRAY8[::2, ::2], subfiletype=1)
    return plain(env, "in/thumb.tif", buffer.getvalue())


@case("img-subifd-tiff", "dkg-encrypt", "TIFF with a SubIFD pyramid level", 2,
      r"in/sub\.tif: TIFF with 1 sub-image\(s\) \(SubIFDs\): only the main image would be encrypted")
def _(env):
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        writer.write(GRAY8, subifds=1)
        writer.write(GRAY8[::2, ::2], subfiletype=1)
    return plain(env, "in/sub.tif", buffer.getvalue())


@case("img-gray-alpha-tiff", "dkg-encrypt", "8-bit gray+alpha TIFF (OpenCV drops the alpha)", 2,
      rf"in/ga\.tif: gray\+alpha TIFF: the decoder keeps only the first sample of each pixel; {CONVERT}")
def _(env):
    return plain(env, "in/ga.tif", tiff(RGBA8[..., :2], photometric="minisblack", extrasamples=["unassalpha"]))


@case("img-cmyk-tiff", "dkg-encrypt", "CMYK TIFF (OpenCV converts it to RGB)", 2,
      r"in/cmyk\.tif: CMYK \(separated\) TIFF: the decoder converts it to RGB, so the stored samples would not")
def _(env):
    return plain(env, "in/cmyk.tif", tiff(RGBA8, photometric="separated"))


@case("img-orientation-tiff", "dkg-encrypt", "TIFF with Orientation 6 (OpenCV rotates the pixels)", 2,
      r"in/rot\.tif: TIFF with Orientation 6 \(not 1\): the decoder rotates or flips the pixels")
def _(env):
    return plain(env, "in/rot.tif", tiff(GRAY8, extratags=[(274, 3, 1, 6, False)]))


@case("img-palette-tiff", "dkg-encrypt", "palette TIFF (OpenCV expands the indices)", 2,
      r"in/pal\.tif: palette TIFF: the decoder expands the palette indices to RGB")
def _(env):
    colormap = RNG.integers(0, 65536, (3, 256), dtype=np.uint16)
    return plain(env, "in/pal.tif", tiff(GRAY8, photometric="palette", colormap=colormap))


@case("img-miniswhite-tiff", "dkg-encrypt", "8-bit MinIsWhite TIFF (OpenCV inverts it)", 2,
      r"in/white\.tif: MinIsWhite TIFF: the decoder inverts 8-bit samples")
def _(env):
    return plain(env, "in/white.tif", tiff(GRAY8, photometric="miniswhite"))


@case("img-unassociated-alpha-tiff", "dkg-encrypt", "8-bit RGBA TIFF, unassociated alpha (OpenCV premultiplies)", 2,
      r"in/rgba\.tif: 8-bit RGBA TIFF with unassociated alpha: the decoder premultiplies the colour samples")
def _(env):
    return plain(env, "in/rgba.tif", tiff(RGBA8, photometric="rgb", extrasamples=["unassalpha"]))


@case("img-ycbcr-tiff", "dkg-encrypt", "uncompressed YCbCr TIFF (OpenCV converts it)", 2,
      r"in/ycc\.tif: YCbCr TIFF: the decoder converts it to RGB")
def _(env):
    return plain(env, "in/ycc.tif", pillow(Image.fromarray(RGBA8[..., :3], "YCbCr"), "TIFF"))


@case("img-1bit-tiff", "dkg-encrypt", "bilevel TIFF (OpenCV scales 0/1 to 0/255)", 2,
      r"in/bits\.tif: TIFF with 1-bit unsigned integer samples: the decoder does not return them as stored")
def _(env):
    return plain(env, "in/bits.tif", pillow(Image.fromarray(GRAY8 > 128), "TIFF"))


@case("img-float16-tiff", "dkg-encrypt", "16-bit float TIFF", 2,
      r"in/half\.tif: TIFF with 16-bit floating point samples")
def _(env):
    return plain(env, "in/half.tif", tiff(GRAY8.astype(np.float16)))


@case("img-tiled-tiff", "dkg-encrypt", "tiled TIFF (OpenCV fails on some tile layouts)", 2,
      r"in/tiles\.tif: tiled TIFF: the decoder does not read every tiled layout")
def _(env):
    return plain(env, "in/tiles.tif", tiff(RNG.integers(0, 256, (64, 64), dtype=np.uint8), tile=(16, 16)))


@case("img-planar-tiff", "dkg-encrypt", "RGB TIFF with separate colour planes", 2,
      r"in/planes\.tif: planar TIFF \(PlanarConfiguration 2, 3 planes\)")
def _(env):
    return plain(env, "in/planes.tif", tiff(np.moveaxis(RGBA8[..., :3], 2, 0), photometric="rgb",
                                            planarconfig="separate"))


# ---- PNG, BMP, JPEG, GIF the decoder changes -----------------------------------------------

@case("img-animated-png", "dkg-encrypt", "animated PNG, 3 frames (OpenCV reads one)", 2,
      r"in/anim\.png: animated PNG \(3 frames\): only one frame would be encrypted")
def _(env):
    frames = [Image.fromarray(GRAY8 ^ i) for i in range(3)]
    return plain(env, "in/anim.png", pillow(frames[0], "PNG", save_all=True, append_images=frames[1:]))


@case("img-palette-png", "dkg-encrypt", "palette PNG (OpenCV expands the indices to RGB)", 2,
      rf"in/pal\.png: palette PNG \(8-bit indices\): the decoder expands the indices to RGB.*; {CONVERT}")
def _(env):
    palette = rawpng.chunk(b"PLTE", RNG.integers(0, 256, 3 * 256, dtype=np.uint8).tobytes())
    return plain(env, "in/pal.png", rawpng.encode(GRAY8, 3, 8, (palette,)))


@case("img-gray-alpha-png", "dkg-encrypt", "gray+alpha PNG (OpenCV makes it RGBA)", 2,
      r"in/la\.png: gray\+alpha PNG: the decoder turns it into RGBA")
def _(env):
    return plain(env, "in/la.png", rawpng.encode(RGBA8[..., :2], 4, 8))


@case("img-4bit-png", "dkg-encrypt", "4-bit gray PNG (OpenCV rescales to 8 bits)", 2,
      r"in/g4\.png: 4-bit gray PNG: the decoder rescales the samples to 8 bits")
def _(env):
    return plain(env, "in/g4.png", rawpng.encode(GRAY8 % 16, 0, 4))


@case("img-rgb-trns-png", "dkg-encrypt", "RGB PNG with a tRNS chunk (OpenCV adds an alpha channel)", 2,
      r"in/trns\.png: RGB PNG with a tRNS transparency chunk: the decoder adds an alpha channel")
def _(env):
    return plain(env, "in/trns.png", rawpng.encode(RGBA8[..., :3], 2, 8, (rawpng.chunk(b"tRNS", bytes(6)),)))


@case("img-jpeg-plaintext", "dkg-encrypt", "JPEG plaintext (lossy: decoded pixels are not the file)", 2,
      r"in/photo\.jpg: JPEG plaintext: JPEG is lossy, .*convert it to PNG first")
def _(env):
    ok, buffer = cv2.imencode(".jpg", RGBA8[..., :3])
    assert ok
    return plain(env, "in/photo.jpg", buffer.tobytes())


@case("img-32bit-bmp", "dkg-encrypt", "32-bit BMP (OpenCV drops the alpha)", 2,
      r"in/x\.bmp: 32-bit \(alpha\) BMP: the decoder expands or drops samples")
def _(env):
    return plain(env, "in/x.bmp", pillow(Image.fromarray(RGBA8), "BMP"))


@case("img-gif", "dkg-encrypt", "GIF plaintext (palette, OpenCV expands it)", 2,
      r"in/x\.gif: GIF: palette indices .* that the decoder expands to RGB")
def _(env):
    return plain(env, "in/x.gif", pillow(Image.fromarray(GRAY8), "GIF"))


@case("img-pgm", "dkg-encrypt", "a PGM file (a format we do not read)", 2,
      r"in/x\.pgm: not a readable image \(unsupported format: expected PNG, TIFF, JPEG, BMP, GIF, WebP or DICOM\)")
def _(env):
    return plain(env, "in/x.pgm", b"P5 10 12 255\n" + GRAY8.tobytes())


# ---- bounded by the declared size, refused by type -----------------------------------------

@case("img-tiff-bomb-late-ifd", "dkg-encrypt", "580 KB TIFF whose directory (after 64 KB) declares 20000x20000", 2,
      rf"in/late\.tif: declares 20000x20000 pixels, over the {MAX_PIXELS} pixel limit \(possible decompression bomb\)")
def _(env):
    return plain(env, "in/late.tif", late_ifd_tiff(20000, 20000))


@case("img-tiff-bomb-page-2", "dkg-encrypt", "TIFF whose second directory declares 70000x70000", 2,
      r"in/pages\.tif: declares 70000x70000 pixels in TIFF directory 2, over the .* \(possible decompression bomb\)")
def _(env):
    data = bytearray(tiff(np.stack([GRAY8, GRAY8]), photometric="minisblack"))
    second = tifffile.TiffFile(io.BytesIO(bytes(data))).pages[1]
    for tag in (256, 257):  # ImageWidth, ImageLength of page 2: widen in place (LONG or SHORT)
        entry = second.tags[tag]
        data[entry.valueoffset:entry.valueoffset + 4] = struct.pack("<I", 70000)
        data[entry.offset + 2:entry.offset + 4] = struct.pack("<H", 4)
    return plain(env, "in/pages.tif", bytes(data))


@case("img-tiff-directory-loop", "dkg-encrypt", "TIFF whose directory chain points back to itself", 2,
      r"in/loop\.tif: not a readable image \(damaged, truncated or unsupported format: TIFF directory chain loops")
def _(env):
    data = bytearray(tiff(GRAY8))
    first = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[first:first + 2])[0]
    data[first + 2 + 12 * count:first + 6 + 12 * count] = struct.pack("<I", first)
    return plain(env, "in/loop.tif", bytes(data))


@case("img-tiff-directory-past-end", "dkg-encrypt", "TIFF header pointing past the end of the file", 2,
      r"in/cut\.tif: not a readable image \(damaged, truncated or unsupported format: TIFF directory 1 at byte")
def _(env):
    return plain(env, "in/cut.tif", b"II*\0" + struct.pack("<I", 1 << 30) + bytes(64))


@case("img-fifo-plaintext", "dkg-encrypt", "plaintext path that is a FIFO (reading would block)", 2,
      r"in/pipe\.png: is a FIFO \(named pipe\), not a regular file")
def _(env):
    os.mkfifo(env.path("in/pipe.png"))
    key_file(env)
    env.folder("out")
    return encrypt_argv("in/pipe.png")


@case("img-device-plaintext", "dkg-encrypt", "plaintext path that is /dev/zero (never ends)", 2,
      r"in/zero\.png: is a character device, not a regular file")
def _(env):
    os.symlink("/dev/zero", env.path("in/zero.png"))
    key_file(env)
    env.folder("out")
    return encrypt_argv("in/zero.png")


@case("img-folder-plaintext", "dkg-encrypt", "plaintext path that is a folder", 2,
      r"in/scan\.png: is a folder, not a regular file")
def _(env):
    key_file(env)
    env.folder("out")
    return encrypt_argv(env.folder("in/scan.png"))


# ---- dkg-keygen seeds: lossy formats are fine, streams and folders are not -------------------

def keygen_argv(env, seed: str) -> list[str]:
    env.folder("out")
    return ["--model", env.model, "--seed", seed, "-o", "out/key.png", "--provider", "cpu"]


@case("img-keygen-fifo-seed", "dkg-keygen", "--seed a FIFO", 2, r"seed\.png: is a FIFO \(named pipe\), not a regular file")
def _(env):
    os.mkfifo(env.path("seed.png"))
    return keygen_argv(env, "seed.png")


@case("img-keygen-folder-seed", "dkg-keygen", "--seed a folder", 2, r"seeds: is a folder, not a regular file")
def _(env):
    return keygen_argv(env, env.folder("seeds"))


@case("img-keygen-bomb-seed", "dkg-keygen", "--seed a TIFF whose late directory declares 20000x20000", 2,
      r"seed\.tif: declares 20000x20000 pixels, over the .* \(possible decompression bomb\)")
def _(env):
    return keygen_argv(env, env.write("seed.tif", late_ifd_tiff(20000, 20000)))


# ---- DICOM Pixel Data beyond what the image elements describe (issue 23) ------------------------

def dicom_with(env, name: str, relative: str, change) -> list[str]:
    """pydicom's test file `name`, changed by `change(dataset)`, as the plaintext of a dkg-encrypt argv."""
    dataset = pydicom.dcmread(DICOM_FILES / name)
    change(dataset)
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    key_file(env, shape=(1024, 1024))
    env.folder("out")
    return encrypt_argv(env.write(relative, buffer.getvalue()), "out/enc.dcm")


@case("dicom-pixel-data-twice", "dkg-encrypt", "DICOM whose Pixel Data is twice Rows×Columns×bits", 2,
      r"in/ct\.dcm: 32768 bytes follow the 32768 bytes of samples the image elements describe \(1 frame\(s\) of "
      r"128×128, 1 sample\(s\) of 16 bits\) and are not zero padding; they would be left unencrypted")
def _(env):
    return dicom_with(env, "CT_small.dcm", "in/ct.dcm", lambda ds: setattr(ds, "PixelData", ds.PixelData * 2))


@case("dicom-frame-undeclared", "dkg-encrypt", "multi-frame DICOM whose NumberOfFrames says 14 of its 15 frames", 2,
      r"in/dose\.dcm: 400 bytes follow the 5600 bytes of samples .*\(14 frame\(s\) of 10×10, 1 sample\(s\) of "
      r"32 bits\) and are not zero padding")
def _(env):
    return dicom_with(env, "rtdose.dcm", "in/dose.dcm", lambda ds: setattr(ds, "NumberOfFrames", 14))


@case("dicom-padding-too-long", "dkg-encrypt", "DICOM with 65538 zero bytes after its samples", 2,
      r"in/mr\.dcm: 65538 bytes follow the 8192 bytes of samples .* over the 65536 bytes of zero padding accepted")
def _(env):
    return dicom_with(env, "MR_small.dcm", "in/mr.dcm", lambda ds: setattr(ds, "PixelData", ds.PixelData + bytes(65538)))


@MATRIX.parametrize()
def test_bad_input(case, tmp_path, request, monkeypatch, capfd):
    check_case(case, tmp_path, request, monkeypatch, capfd)


def test_opencv_really_changes_these_files():
    """The premise of the matrix: OpenCV decodes each such file, to something other than its samples."""
    def decoded(data: bytes) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)

    assert decoded(tiff(np.stack([GRAY8, GRAY8 ^ 1]), photometric="minisblack")).shape == GRAY8.shape  # page 1
    assert decoded(tiff(RGBA8[..., :2], photometric="minisblack", extrasamples=["unassalpha"])).shape == (12, 10)
    assert decoded(tiff(GRAY8, extratags=[(274, 3, 1, 6, False)])).shape == (10, 12)  # rotated
    assert not np.array_equal(decoded(tiff(GRAY8, photometric="miniswhite")), GRAY8)  # inverted
    rgba = decoded(tiff(RGBA8, photometric="rgb", extrasamples=["unassalpha"]))
    assert not np.array_equal(rgba[..., [2, 1, 0, 3]], RGBA8)  # premultiplied
    palette = rawpng.chunk(b"PLTE", RNG.integers(0, 256, 3 * 256, dtype=np.uint8).tobytes())
    assert decoded(rawpng.encode(GRAY8, 3, 8, (palette,))).shape == (12, 10, 3)
    assert decoded(rawpng.encode(GRAY8 % 2, 0, 1)).max() == 255  # 1-bit 0/1 rescaled
    assert decoded(late_ifd_tiff(64, 64, pad=64 * 64)).shape == (64, 64)  # the late directory is read


def test_lossy_seed_still_works(tmp_path):
    """Seeds may be lossy: a JPEG seed is read (only what is encrypted must be exact)."""
    ok, buffer = cv2.imencode(".jpg", RGBA8[..., :3])
    (tmp_path / "seed.jpg").write_bytes(buffer.tobytes())
    assert read_image(tmp_path / "seed.jpg").shape == (12, 10, 3)
    with pytest.raises(InputError, match="JPEG is lossy"):
        read_image(tmp_path / "seed.jpg", exact=True)


RGB16 = RNG.integers(0, 65536, (12, 10, 3), dtype=np.uint16)
RGBA16 = RNG.integers(0, 65536, (12, 10, 4), dtype=np.uint16)
EXACT = {  # files the decoder returns exactly: (bytes, stored samples)
    "bigtiff": (tiff(RGB16, photometric="rgb", bigtiff=True), RGB16),
    "big-endian-deflate-predictor": (tiff(RGB16, photometric="rgb", byteorder=">", compression="zlib",
                                          predictor=True), RGB16),
    "16-bit-unassociated-alpha": (tiff(RGBA16, photometric="rgb", extrasamples=["unassalpha"]), RGBA16),
    "8-bit-associated-alpha": (tiff(RGBA8, photometric="rgb", extrasamples=["assocalpha"]), RGBA8),
    "int16-tiff": (tiff(RGB16.astype(np.int16), photometric="rgb"), RGB16.astype(np.int16)),
    "packbits-tiff": (pillow(Image.fromarray(GRAY8), "TIFF", compression="packbits"), GRAY8),
    "gray-trns-png": (rawpng.encode(GRAY8, 0, 8, (rawpng.chunk(b"tRNS", b"\0\5"),)), GRAY8),
    "sbit-png": (rawpng.encode(RGB16, 2, 16, (rawpng.chunk(b"sBIT", bytes([12, 12, 12])),)), RGB16),
    "24-bit-bmp": (pillow(Image.fromarray(RGBA8[..., :3]), "BMP"), RGBA8[..., :3]),
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_files_are_accepted(tmp_path, name):
    data, stored = EXACT[name]
    (tmp_path / "x").write_bytes(data)
    pixels = read_image(tmp_path / "x", exact=True)
    assert pixels.dtype == stored.dtype and np.array_equal(pixels, stored)


def test_a_decode_that_disagrees_with_the_header_is_refused(tmp_path, monkeypatch):
    """The check after decoding: should a decoder ever expand a gray PNG, nothing is encrypted."""
    (tmp_path / "gray.png").write_bytes(rawpng.encode(GRAY8, 0))
    monkeypatch.setattr(cv2, "imdecode", lambda data, flags: np.dstack([GRAY8] * 3))
    with pytest.raises(InputError, match=r"gray\.png: decoded as \(12, 10, 3\) uint8, but its header declares "
                                         r"\(12, 10\) uint8"):
        read_image(tmp_path / "gray.png", exact=True)
    assert read_image(tmp_path / "gray.png").shape == (12, 10, 3)  # seeds are not held to it

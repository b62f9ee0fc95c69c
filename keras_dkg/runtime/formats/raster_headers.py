"""What a raster file's header declares, read without decoding it.

OpenCV decodes many files differently from what they store: a multi-page TIFF gives page 1,
an 8-bit TIFF goes through libtiff's RGBA path (palette expanded, MinIsWhite inverted, CMYK
and YCbCr converted, unassociated alpha premultiplied, Orientation applied), gray+alpha
TIFF loses its alpha, a palette PNG gives RGB, a 1/2/4-bit PNG is rescaled to 8 bits, an
animated PNG gives one frame, JPEG is lossy. An encrypted image must decrypt to the file's
stored samples, so `inspect` declares what the stored samples are — (height, width,
channels, dtype) — and, when the decoder would not return exactly those, why not
(`Raster.inexact`, a message naming the kind of file and what to do).

The same walk bounds every input: all TIFF directories (not just the first 64 KB) are read
and any image declaring more than MAX_PIXELS pixels is refused before a decoder allocates
it. Damaged headers and unknown formats are refused here too. Measured with OpenCV 5.0 /
libtiff 4.7 / libpng 1.6 (tests/test_bad_inputs_images.py, docs/formats.md).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from keras_dkg.errors import InputError

# Refuse images that declare more pixels than this before decoding them (decompression bombs).
MAX_PIXELS = 1 << 28
# Bounds on the TIFF walk: a file with more directories or entries is refused, not walked.
MAX_TIFF_DIRECTORIES = 1 << 14
MAX_TIFF_ENTRIES = 1 << 20
MAX_JPEG_SEGMENTS = 1 << 14
MAX_PNG_CHUNKS = 1 << 20  # a 2 GiB PNG in 8 KiB IDAT chunks has 2^18

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CONVERT = "convert it losslessly to an 8/16-bit gray, RGB or RGBA PNG or single-page TIFF first"


@dataclass(frozen=True)
class Raster:
    """A header's declaration. `inexact` is None when the decoder returns the stored samples
    exactly as (height, width[, channels]) of `dtype`; else the reason it does not."""

    format: str
    width: int
    height: int
    channels: int | None = None
    dtype: str | None = None
    inexact: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The array shape an exact decode gives (a single channel has no channel axis)."""
        return (self.height, self.width) if self.channels == 1 else (self.height, self.width, self.channels or 0)


class _Damaged(Exception):
    """A header that contradicts itself or the file's length (reported as unreadable)."""


class _Bomb(Exception):
    """(width, height, where): a declared size over MAX_PIXELS."""


def inspect(data: bytes, label: object) -> Raster:
    """Declaration of a PNG, TIFF/BigTIFF, BMP, JPEG, GIF or WebP file's bytes.

    InputError (naming `label`) for an unknown format, a damaged header, or a declared size
    over MAX_PIXELS in any of the file's images (checked as soon as the header declares it).
    """
    parsers = ((PNG_SIGNATURE, _png), (b"II*\0", _tiff), (b"MM\0*", _tiff), (b"II+\0", _tiff),
               (b"MM\0+", _tiff), (b"BM", _bmp), (b"\xff\xd8\xff", _jpeg), (b"GIF87a", _gif), (b"GIF89a", _gif))
    parser = next((parse for magic, parse in parsers if data.startswith(magic)), None)
    if parser is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        parser = _webp
    if parser is None:
        raise InputError(f"{label}: not a readable image (unsupported format: expected PNG, TIFF, "
                         "JPEG, BMP, GIF, WebP or DICOM)")
    try:
        return parser(data)
    except _Bomb as bomb:
        raise InputError(f"{label}: declares {bomb.args[0]}x{bomb.args[1]} pixels{bomb.args[2]}, over the "
                         f"{MAX_PIXELS} pixel limit (possible decompression bomb)") from None
    except (_Damaged, struct.error, IndexError) as exc:
        detail = str(exc) if isinstance(exc, _Damaged) else "header cut short"
        raise InputError(f"{label}: not a readable image (damaged, truncated or unsupported format: {detail})") from exc


def _bounded(width: int, height: int, where: str = "") -> tuple[int, int]:
    """(width, height), or _Bomb before anything is decoded when they exceed MAX_PIXELS."""
    if width * height > MAX_PIXELS:
        raise _Bomb(width, height, where)
    return width, height


# ---- PNG -----------------------------------------------------------------------------------

_PNG_COLOURS = {0: ("gray", 1), 2: ("RGB", 3), 3: ("palette", 1), 4: ("gray+alpha", 2), 6: ("RGBA", 4)}


def _png(data: bytes) -> Raster:
    if data[12:16] != b"IHDR":
        raise _Damaged("PNG does not start with an IHDR chunk")
    width, height = _bounded(*struct.unpack(">II", data[16:24]))
    depth, colour = data[24], data[25]
    chunks = _png_chunks(data)
    if colour not in _PNG_COLOURS or depth not in (1, 2, 4, 8, 16):
        raise _Damaged(f"PNG colour type {colour} with bit depth {depth} is not valid")
    name, channels = _PNG_COLOURS[colour]
    bodies = dict(chunks)
    inexact = None
    if b"acTL" in bodies:
        frames = struct.unpack(">I", data[bodies[b"acTL"]:bodies[b"acTL"] + 4])[0]
        inexact = (f"animated PNG ({frames} frames): only one frame would be encrypted; "
                   "save each frame as its own PNG first")
    elif colour == 3:
        inexact = (f"palette PNG ({depth}-bit indices): the decoder expands the indices to RGB, so the "
                   f"stored samples would not come back; {CONVERT}")
    elif colour == 4:
        inexact = f"gray+alpha PNG: the decoder turns it into RGBA; {CONVERT}"
    elif depth < 8:
        inexact = f"{depth}-bit {name} PNG: the decoder rescales the samples to 8 bits; {CONVERT}"
    elif colour == 2 and b"tRNS" in bodies:
        inexact = (f"RGB PNG with a tRNS transparency chunk: the decoder adds an alpha channel the file "
                   f"does not store; {CONVERT}")
    dtype = "uint16" if depth == 16 else "uint8"
    return Raster("PNG", width, height, channels, dtype, inexact)


def _png_chunks(data: bytes) -> list[tuple[bytes, int]]:
    """(type, offset of the body) of every chunk up to IEND; _Damaged if one runs past the end."""
    chunks, position = [], len(PNG_SIGNATURE)
    while True:
        if len(chunks) >= MAX_PNG_CHUNKS:
            raise _Damaged(f"PNG has more than {MAX_PNG_CHUNKS} chunks")
        if position + 12 > len(data):
            raise _Damaged("PNG ends before its IEND chunk")
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        if position + 12 + length > len(data):
            raise _Damaged(f"PNG chunk {kind.decode('latin-1')!r} runs past the end of the file")
        chunks.append((kind, position + 8))
        if kind == b"IEND":
            return chunks
        position += 12 + length


# ---- TIFF ----------------------------------------------------------------------------------

_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}
_TIFF_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
_WANTED = {256, 257, 258, 259, 262, 274, 277, 284, 317, 322, 330, 338, 339}
_LOSSLESS_COMPRESSION = {1: "none", 5: "LZW", 8: "Deflate", 32946: "Deflate", 32773: "PackBits"}
_LOSSY_COMPRESSION = {6: "old JPEG", 7: "JPEG", 34712: "JPEG 2000", 34892: "lossy JPEG", 50001: "WebP",
                      50002: "JPEG XL", 34933: "PNG", 34934: "JPEG XR"}
_PHOTOMETRIC = {0: "MinIsWhite", 1: "MinIsBlack", 2: "RGB", 3: "palette", 4: "transparency mask",
                5: "CMYK (separated)", 6: "YCbCr", 8: "CIELab", 9: "ICCLab", 10: "ITULab",
                32844: "LogL", 32845: "LogLuv"}
_SAMPLE_FORMATS = {(1, 8): "uint8", (1, 16): "uint16", (1, 32): "uint32", (2, 8): "int8", (2, 16): "int16",
                   (2, 32): "int32", (3, 32): "float32", (3, 64): "float64"}
_FORMAT_NAMES = {1: "unsigned integer", 2: "signed integer", 3: "floating point", 4: "undefined",
                 5: "complex integer", 6: "complex floating point"}


def _tiff(data: bytes) -> Raster:
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(order + "H", data[2:4])[0] == 43
    if big:
        if struct.unpack(order + "HH", data[4:8]) != (8, 0):
            raise _Damaged("BigTIFF header with an unusual offset size")
        offset, head = struct.unpack(order + "Q", data[8:16])[0], (8, 20, "Q", "HHQ8s")
    else:
        offset, head = struct.unpack(order + "I", data[4:8])[0], (2, 12, "I", "HHI4s")
    directories, seen, entries = [], set(), 0
    while offset:
        if offset in seen:
            raise _Damaged(f"TIFF directory chain loops back to byte {offset}")
        if len(directories) >= MAX_TIFF_DIRECTORIES:
            raise _Damaged(f"TIFF has more than {MAX_TIFF_DIRECTORIES} directories")
        seen.add(offset)
        tags, offset, count = _tiff_directory(data, order, offset, head, len(directories) + 1)
        entries += count
        if entries > MAX_TIFF_ENTRIES:
            raise _Damaged(f"TIFF has more than {MAX_TIFF_ENTRIES} directory entries")
        if 256 not in tags or 257 not in tags:
            raise _Damaged(f"TIFF directory {len(directories) + 1} has no ImageWidth/ImageLength")
        directories.append(tags)
        where = f" in TIFF directory {len(directories)}" if len(directories) > 1 else ""
        _bounded(tags[256][0], tags[257][0], where)
    if not directories:
        raise _Damaged("TIFF has no image directory")
    return _tiff_declaration("BigTIFF" if big else "TIFF", directories[0], len(directories))


def _tiff_directory(data: bytes, order: str, offset: int, head: tuple, number: int):
    """({tag: values} of the tags we need, next directory's offset, entry count)."""
    count_size, entry_size, offset_code, entry_code = head
    end_of_count = offset + count_size
    if end_of_count > len(data):
        raise _Damaged(f"TIFF directory {number} at byte {offset} lies past the end of the file")
    count = struct.unpack(order + ("Q" if count_size == 8 else "H"), data[offset:end_of_count])[0]
    end = end_of_count + count * entry_size
    if end + struct.calcsize(offset_code) > len(data):
        raise _Damaged(f"TIFF directory {number} at byte {offset} runs past the end of the file")
    tags = {}
    for tag, kind, values, inline in struct.iter_unpack(order + entry_code, data[end_of_count:end]):
        if tag in _WANTED:
            tags[tag] = _tiff_values(data, order, tag, kind, values, inline)
    (following,) = struct.unpack(order + offset_code, data[end:end + struct.calcsize(offset_code)])
    return tags, following, count


def _tiff_values(data: bytes, order: str, tag: int, kind: int, count: int, inline: bytes) -> list[int]:
    """Integer values of one entry (SubIFDs: only how many there are)."""
    if tag == 330:
        return [count]
    if kind not in _TIFF_TYPES:
        raise _Damaged(f"TIFF tag {tag} has type {kind}, not an integer type")
    if count > 1024:
        raise _Damaged(f"TIFF tag {tag} holds {count} values")
    size = _TIFF_SIZES[kind] * count
    if size <= len(inline):
        raw = inline[:size]
    else:
        start = struct.unpack(order + ("Q" if len(inline) == 8 else "I"), inline)[0]
        if start + size > len(data):
            raise _Damaged(f"TIFF tag {tag}'s values lie past the end of the file")
        raw = data[start:start + size]
    return list(struct.unpack(order + _TIFF_TYPES[kind] * count, raw))


def _tiff_declaration(kind: str, tags: dict[int, list[int]], pages: int) -> Raster:
    """The first directory's samples, and why OpenCV would not return them exactly (if so)."""
    samples = tags.get(277, [1])[0]
    bits = tags.get(258, [1] * samples)
    formats = tags.get(339, [1] * samples)
    dtype = _SAMPLE_FORMATS.get((formats[0], bits[0])) if len(set(bits)) == len(set(formats)) == 1 else None
    inexact = _tiff_inexact(tags, samples, bits, formats, dtype, pages)
    return Raster(kind, tags[256][0], tags[257][0], samples, dtype, inexact)


def _tiff_inexact(tags, samples: int, bits: list[int], formats: list[int], dtype: str | None,
                  pages: int) -> str | None:
    compression = tags.get(259, [1])[0]
    photometric = tags.get(262, [None])[0]
    extra = tags.get(338, [])
    orientation = tags.get(274, [1])[0]
    if pages > 1:
        return (f"multi-page TIFF ({pages} pages): only the first page would be encrypted; "
                "split it into single-page files first (e.g. tiffsplit)")
    if tags.get(330, [0])[0]:
        return (f"TIFF with {tags[330][0]} sub-image(s) (SubIFDs): only the main image would be encrypted; "
                "remove the sub-images first (e.g. tiffcp in.tif out.tif)")
    if compression in _LOSSY_COMPRESSION:
        return (f"TIFF compressed with {_LOSSY_COMPRESSION[compression]}: lossy (or decoded through a colour "
                f"conversion), so the decoded pixels are not the stored samples; {CONVERT}")
    if compression not in _LOSSLESS_COMPRESSION:
        return f"TIFF with compression {compression}: not a compression we decode exactly; {CONVERT}"
    if photometric is None:
        return f"TIFF without PhotometricInterpretation: its colour model is unknown; {CONVERT}"
    if photometric not in (0, 1, 2):
        name = _PHOTOMETRIC.get(photometric, f"PhotometricInterpretation {photometric}")
        what = "expands the palette indices to RGB" if photometric == 3 else "converts it to RGB"
        return f"{name} TIFF: the decoder {what}, so the stored samples would not come back; {CONVERT}"
    if dtype is None:
        pairs = zip(bits, formats, strict=False)
        kinds = sorted({f"{b}-bit {_FORMAT_NAMES.get(f, f'format {f}')}" for b, f in pairs})
        return f"TIFF with {' / '.join(kinds)} samples: the decoder does not return them as stored; {CONVERT}"
    if photometric == 0:
        return (f"MinIsWhite TIFF: the decoder inverts 8-bit samples and the file would come back as "
                f"MinIsBlack (shown inverted); {CONVERT}")
    if orientation != 1:
        return (f"TIFF with Orientation {orientation} (not 1): the decoder rotates or flips the pixels; "
                "rotate the pixels themselves and set Orientation to 1 first")
    if 322 in tags:
        return f"tiled TIFF: the decoder does not read every tiled layout; {CONVERT} (e.g. tiffcp -s)"
    if tags.get(317, [1])[0] not in (1, 2):
        return f"TIFF with Predictor {tags[317][0]}: not a predictor we decode exactly; {CONVERT}"
    if tags.get(284, [1])[0] == 2 and samples > 1:
        return f"planar TIFF (PlanarConfiguration 2, {samples} planes): the decoder cannot read it; {CONVERT}"
    if photometric == 1 and samples != 1:
        what = "gray+alpha" if samples == 2 else f"{samples}-sample gray"
        return f"{what} TIFF: the decoder keeps only the first sample of each pixel; {CONVERT}"
    if photometric == 2 and samples not in (3, 4):
        return f"RGB TIFF with {samples} samples per pixel: the decoder reads 3 or 4; {CONVERT}"
    if samples == 4 and bits[0] == 8 and extra[:1] == [2]:
        return ("8-bit RGBA TIFF with unassociated alpha: the decoder premultiplies the colour samples by "
                "alpha; save it as an RGBA PNG (or mark the alpha unspecified, ExtraSamples 0) first")
    return None


# ---- BMP, JPEG, GIF, WebP ------------------------------------------------------------------

def _bmp(data: bytes) -> Raster:
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:  # BITMAPCOREHEADER
        width, height, _planes, depth = struct.unpack("<HHHH", data[18:26])
        compression = 0
    elif header >= 40:
        width, height, _planes, depth, compression = struct.unpack("<iiHHI", data[18:34])
    else:
        raise _Damaged(f"BMP header of {header} bytes")
    width, height = _bounded(abs(width), abs(height))
    inexact = None
    if depth != 24 or compression != 0:
        kind = {1: "1-bit", 4: "4-bit palette", 8: "8-bit palette", 16: "16-bit", 32: "32-bit (alpha)"}.get(
            depth, f"{depth}-bit")
        inexact = (f"{kind} BMP{' (compressed)' if compression not in (0, 3) else ''}: the decoder expands or "
                   f"drops samples (only uncompressed 24-bit BMP decodes exactly); {CONVERT}")
    return Raster("BMP", width, height, 3, "uint8", inexact)


def _jpeg(data: bytes) -> Raster:
    position = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        if data[position] != 0xFF:
            raise _Damaged(f"JPEG marker expected at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = struct.unpack(">HH", data[position + 5:position + 9])
            _bounded(width, height)
            inexact = ("JPEG plaintext: JPEG is lossy, so the decoded pixels are not what the file stores and "
                       "could not be given back as this file; convert it to PNG first if the decoded "
                       "pixels are what you want to keep encrypted")
            return Raster("JPEG", width, height, None, "uint8", inexact)
        if marker in (0xD9, 0xDA):
            raise _Damaged("JPEG has no frame header before its image data")
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        position += 2 + length
    raise _Damaged(f"JPEG has no frame header in its first {MAX_JPEG_SEGMENTS} segments")


def _gif(data: bytes) -> Raster:
    width, height = _bounded(*struct.unpack("<HH", data[6:10]))
    inexact = f"GIF: palette indices (and possibly several frames) that the decoder expands to RGB; {CONVERT}"
    return Raster("GIF", width, height, None, "uint8", inexact)


def _webp(data: bytes) -> Raster:
    kind = data[12:16]
    if kind == b"VP8X":  # extended: 24-bit canvas size (VP8/VP8L are at most 16384 a side)
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
    elif kind == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif kind == b"VP8 ":
        width, height = (v & 0x3FFF for v in struct.unpack("<HH", data[26:30]))
    else:
        raise _Damaged(f"WebP chunk {kind!r} where an image header was expected")
    _bounded(width, height)
    inexact = f"WebP: possibly lossy or animated, so the decoded pixels may not be the stored ones; {CONVERT}"
    return Raster("WebP", width, height, None, "uint8", inexact)

"""A minimal PNG writer and reader for tests, independent of OpenCV and Pillow.

The writer stores exactly the samples it is given (any colour type and bit depth, extra
chunks such as PLTE, tRNS or acTL), so a test knows a file's stored samples by
construction; the reader decodes 8/16-bit gray, RGB and RGBA (all five row filters), so a
decrypted file can be checked without the decoder under test.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode(samples: np.ndarray, colour: int, depth: int = 8, chunks: tuple[bytes, ...] = ()) -> bytes:
    """PNG bytes holding `samples` (H×W or H×W×C) as stored; `chunks` go between IHDR and IDAT."""
    samples = np.asarray(samples)
    height, width = samples.shape[:2]
    flat = samples.reshape(height, -1)
    if depth == 16:
        rows = flat.astype(">u2").view(np.uint8).reshape(height, -1)
    elif depth == 8:
        rows = flat.astype(np.uint8)
    else:  # pack 1/2/4-bit samples, most significant first
        per_byte = 8 // depth
        padded = np.zeros((height, -(-flat.shape[1] // per_byte) * per_byte), np.uint8)
        padded[:, :flat.shape[1]] = flat
        groups = padded.reshape(height, -1, per_byte).astype(np.uint16)
        shifts = np.arange(per_byte - 1, -1, -1) * depth
        rows = (groups << shifts).sum(axis=2).astype(np.uint8)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (SIGNATURE + chunk(b"IHDR", ihdr) + b"".join(chunks) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def decode(data: bytes) -> np.ndarray:
    """Stored samples of a non-interlaced 8/16-bit gray, RGB or RGBA PNG."""
    assert data.startswith(SIGNATURE)
    position, idat, header = 8, b"", None
    while True:
        (length,), kind = struct.unpack(">I", data[position:position + 4]), data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        position += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth in (8, 16) and colour in (0, 2, 6) and interlace == 0, header
    channels, size = CHANNELS[colour], depth // 8
    stride, bpp = width * channels * size, channels * size
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.int32)
    previous = np.zeros(stride, np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        row = np.zeros(stride, np.int32)
        for x in range(stride):
            a = row[x - bpp] if x >= bpp else 0
            b = previous[x]
            c = previous[x - bpp] if x >= bpp else 0
            if kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
            else:
                predictor = (0, a, b, (a + b) // 2)[kind]
            row[x] = (line[x] + predictor) & 0xFF
        out[y], previous = row, row
    samples = out.astype(np.uint8)
    if depth == 16:
        samples = samples.reshape(height, -1, 2)
        samples = (samples[..., 0].astype(np.uint16) << 8) | samples[..., 1]
    shape = (height, width) if channels == 1 else (height, width, channels)
    return samples.reshape(shape)

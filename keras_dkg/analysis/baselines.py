"""Classical key generators the paper compares DeepKeyGen with (Section IV-E, Tables XVII-XX).

Each method fills a ``uint8`` key image (default 256×256×3) from a byte stream, in C
order. All are deterministic for an integer ``seed``; ``seed=None`` seeds from OS
entropy (not reproducible). The paper does not give its parameters, so ours are
stated here and in ``docs/analysis.md``:

``chaotic``
    Logistic map ``x <- r·x·(1-x)``, ``r = 3.99``, ``x0`` in (0.1, 0.9) from the seed,
    first 1000 iterates discarded, byte ``= floor(x·1e14) mod 256`` (the usual
    chaotic-cipher quantisation; ``floor(256·x)`` would follow the map's arcsine
    density and be far from uniform). One orbit in IEEE double precision.
``lcg``
    Numerical Recipes LCG ``x <- (1664525·x + 1013904223) mod 2^32``, ``x0`` = seed
    mod 2^32; each step emits the top byte ``x >> 24`` (the low bits of a power-of-two
    LCG have short periods: bit k has period 2^(k+1)).
``mersenne_twister``
    Python's ``random.Random(seed).randbytes(n)`` (MT19937, ``init_by_array`` seeding,
    32-bit outputs little-endian).
``rc4``
    RC4 KSA + PRGA (no initial bytes dropped), 16-byte key
    ``SHA-256("keras_dkg.baselines.rc4:<seed>")[:16]``.
``rsa``
    Textbook RSA per pixel in counter mode with a one-byte modulus:
    ``n = p·q = 11·23 = 253`` (the largest two-prime modulus below 256, so each
    ciphertext is one byte), exponent ``e`` coprime to ``phi(n) = 220`` chosen from the
    seed, plaintext ``m_i = (offset + i) mod n`` with a seeded offset, byte ``= m_i^e mod
    n``. The output is a permutation of Z_n repeated with period 253, values 253-255
    never occur: entropy ≈ log2(253) ≈ 7.983 and uniformity / NIST tests fail. (With
    ``n = 5·13 = 65`` the entropy would be ≈ 6.02, the order of the paper's 6.0314; the
    paper does not state its modulus.)
``csprng``
    ChaCha20 keystream (``cryptography``), 256-bit key
    ``SHA-256("keras_dkg.baselines.chacha20:<seed>")``, all-zero 16-byte nonce/counter;
    ``seed=None`` reads ``os.urandom`` instead. The "ideal" reference.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from keras_dkg.errors import InputError

DEFAULT_SHAPE = (256, 256, 3)

LOGISTIC_R = 3.99
LOGISTIC_BURN_IN = 1000
LOGISTIC_SCALE = 1e14
LCG_A, LCG_C, LCG_M = 1664525, 1013904223, 1 << 32  # Numerical Recipes (2nd ed.)
RC4_KEY_BYTES = 16
RSA_PRIMES = (11, 23)


def _check_seed(seed) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise InputError(f"seed must be a non-negative integer or None, got {seed!r}")
    return int(seed)


def _seed_digest(label: str, seed: int | None) -> bytes:
    material = os.urandom(32) if seed is None else f"keras_dkg.baselines.{label}:{seed}".encode()
    return hashlib.sha256(material).digest()


def chaotic_bytes(n: int, seed: int | None = 0) -> np.ndarray:
    """``n`` bytes from the logistic map (r = 3.99, burn-in 1000, floor(x·1e14) mod 256)."""
    digest = _seed_digest("logistic", seed)
    x = 0.1 + 0.8 * (int.from_bytes(digest[:8], "little") / 2.0**64)
    r = LOGISTIC_R
    for _ in range(LOGISTIC_BURN_IN):
        x = r * x * (1.0 - x)
    out = bytearray(n)
    scale = LOGISTIC_SCALE
    for i in range(n):
        x = r * x * (1.0 - x)
        out[i] = int(x * scale) & 0xFF
    return np.frombuffer(bytes(out), dtype=np.uint8)


def lcg_bytes(n: int, seed: int | None = 0) -> np.ndarray:
    """``n`` bytes from the Numerical Recipes LCG, top byte of each 32-bit state."""
    x = (int.from_bytes(_seed_digest("lcg", None)[:4], "little") if seed is None else seed) % LCG_M
    a, c, mask = LCG_A, LCG_C, LCG_M - 1
    out = bytearray(n)
    for i in range(n):
        x = (a * x + c) & mask
        out[i] = x >> 24
    return np.frombuffer(bytes(out), dtype=np.uint8)


def mersenne_twister_bytes(n: int, seed: int | None = 0) -> np.ndarray:
    """``n`` bytes from Python's MT19937: ``random.Random(seed).randbytes(n)``."""
    return np.frombuffer(random.Random(seed).randbytes(n), dtype=np.uint8)


def rc4_bytes(n: int, seed: int | None = 0, key: bytes | None = None) -> np.ndarray:
    """``n`` bytes of RC4 keystream (KSA + PRGA, nothing dropped).

    ``key`` defaults to ``SHA-256("keras_dkg.baselines.rc4:<seed>")[:16]``.
    """
    if key is None:
        key = _seed_digest("rc4", seed)[:RC4_KEY_BYTES]
    if not 1 <= len(key) <= 256:
        raise InputError(f"RC4 key must have 1..256 bytes, got {len(key)}")
    s = list(range(256))
    j = 0
    for i in range(256):  # KSA
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray(n)
    i = j = 0
    for k in range(n):  # PRGA
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out[k] = s[(s[i] + s[j]) & 0xFF]
    return np.frombuffer(bytes(out), dtype=np.uint8)


def rsa_parameters(seed: int | None = 0, primes: tuple[int, int] = RSA_PRIMES) -> dict:
    """Textbook RSA parameters for the ``rsa`` baseline: n, e, d and the counter offset."""
    p, q = (int(v) for v in primes)
    n, phi = p * q, (p - 1) * (q - 1)
    if p == q or n > 256 or any(v < 2 or any(v % k == 0 for k in range(2, math.isqrt(v) + 1)) for v in (p, q)):
        raise InputError(f"RSA baseline needs two distinct primes with p·q <= 256, got {primes}")
    exponents = [e for e in range(3, phi) if math.gcd(e, phi) == 1]
    digest = _seed_digest("rsa", seed)
    e = exponents[int.from_bytes(digest[:8], "little") % len(exponents)]
    offset = int.from_bytes(digest[8:16], "little") % n
    return {"p": p, "q": q, "n": n, "e": e, "d": pow(e, -1, phi), "offset": offset}


def rsa_bytes(n_bytes: int, seed: int | None = 0, primes: tuple[int, int] = RSA_PRIMES) -> np.ndarray:
    """``n_bytes`` bytes ``c_i = ((offset + i) mod n)^e mod n`` (textbook RSA, counter mode)."""
    params = rsa_parameters(seed, primes)
    n, e = params["n"], params["e"]
    table = np.array([pow(m, e, n) for m in range(n)], dtype=np.uint8)
    counter = (params["offset"] + np.arange(n_bytes, dtype=np.int64)) % n
    return table[counter]


def csprng_bytes(n: int, seed: int | None = 0) -> np.ndarray:
    """``n`` bytes of ChaCha20 keystream keyed by the seed; OS entropy when seed is None."""
    if seed is None:
        return np.frombuffer(os.urandom(n), dtype=np.uint8)
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    except ImportError as exc:
        raise InputError(
            "the csprng baseline needs the 'cryptography' package: pip install 'keras-dkg[hardened]'"
        ) from exc
    key = _seed_digest("chacha20", seed)
    encryptor = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    return np.frombuffer(encryptor.update(bytes(n)), dtype=np.uint8)


@dataclass(frozen=True)
class BaselineMethod:
    """One registered key generator: ``function(n_bytes, seed) -> uint8 array``."""

    name: str
    label: str  # as in the paper's tables
    description: str
    function: Callable[[int, int | None], np.ndarray]


METHODS: dict[str, BaselineMethod] = {
    m.name: m
    for m in (
        BaselineMethod("chaotic", "Chaotic system",
                       f"logistic map r={LOGISTIC_R}, burn-in {LOGISTIC_BURN_IN}, floor(x*1e14) mod 256", chaotic_bytes),
        BaselineMethod("lcg", "LCG", "Numerical Recipes a=1664525 c=1013904223 m=2^32, top byte", lcg_bytes),
        BaselineMethod("mersenne_twister", "Mersenne Twister", "Python random.Random(seed).randbytes (MT19937)",
                       mersenne_twister_bytes),
        BaselineMethod("rc4", "RC4", "RC4 KSA+PRGA, 16-byte key SHA-256(seed label)[:16], no drop", rc4_bytes),
        BaselineMethod("rsa", "RSA", f"textbook RSA counter mode, n={RSA_PRIMES[0]}*{RSA_PRIMES[1]}, byte = c",
                       rsa_bytes),
        BaselineMethod("csprng", "CSPRNG (ideal)", "ChaCha20 keystream, key SHA-256(seed label); os.urandom if no seed",
                       csprng_bytes),
    )
}


def parse_shape(text: str | tuple | list) -> tuple[int, ...]:
    """``"256x256x3"`` / ``"64x64"`` / (256, 256, 3) -> tuple of positive ints (2 or 3 dims)."""
    try:
        dims = tuple(int(v) for v in (text.lower().split("x") if isinstance(text, str) else text))
    except (TypeError, ValueError) as exc:
        raise InputError(f"shape {text!r}: expected HxW or HxWxC, e.g. 256x256x3") from exc
    if len(dims) not in (2, 3) or any(d <= 0 for d in dims):
        raise InputError(f"shape {text!r}: expected 2 or 3 positive sizes, e.g. 256x256x3")
    return dims


def generate(method: str, shape=DEFAULT_SHAPE, seed: int | None = 0) -> np.ndarray:
    """A key image from a classical generator.

    Parameters
    ----------
    method : str
        One of ``METHODS`` ("chaotic", "lcg", "mersenne_twister", "rc4", "rsa", "csprng").
    shape : tuple or "HxWxC" string, default (256, 256, 3)
    seed : int >= 0, or None for OS entropy

    Returns
    -------
    numpy.ndarray, uint8, of ``shape``, filled in C order from the method's byte stream.
    """
    if method not in METHODS:
        raise InputError(f"unknown baseline {method!r}; choose from {', '.join(METHODS)}")
    dims = parse_shape(shape)
    seed = _check_seed(seed)
    count = int(np.prod(dims))
    stream = np.asarray(METHODS[method].function(count, seed), dtype=np.uint8)
    return stream[:count].reshape(dims).copy()

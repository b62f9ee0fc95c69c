"""What an attacker gets from a plain XOR cipher: known plaintext, key reuse, wrong keys.

All functions work on the reference XOR (:func:`keras_dkg.analysis.differential.raw_xor`:
raw little-endian bytes XOR the first N key bytes, never tiled), not on the production
cipher in ``keras_dkg.runtime.ciphers``; for ``cipher="xor"`` the two agree.

* :func:`known_plaintext_attack` — one (P, C) pair gives the key bytes ``K = P ⊕ C``;
  :func:`apply_recovered_key` then decrypts any other ciphertext made with that key.
* :func:`key_reuse_leak` — two ciphertexts under one key give ``P1 ⊕ P2`` without any
  key; :func:`key_reuse_report` measures how much of P1 that reveals.
* :func:`decryption_grid` — encrypt with key i, decrypt with key j (imitation-attack
  grid, paper Fig. 10): only the diagonal decrypts; off-diagonal bytes match by chance
  (1/256 for independent uniform keys).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from keras_dkg.analysis.differential import raw_xor
from keras_dkg.analysis.metrics import checked_array, pearson, psnr
from keras_dkg.errors import InputError


def _bytes_of(array: np.ndarray) -> np.ndarray:
    """Raw little-endian bytes, as a flat uint8 array."""
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return little.reshape(-1).view(np.uint8)


def _same_layout(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape != b.shape or a.dtype.newbyteorder("=") != b.dtype.newbyteorder("="):
        raise InputError(
            f"{names[0]} ({a.shape} {a.dtype}) and {names[1]} ({b.shape} {b.dtype}) must have the same shape and dtype"
        )


# --------------------------------------------------------------------------- known plaintext


def known_plaintext_attack(plain, cipher, known_bytes: int | None = None) -> np.ndarray:
    """Recover key bytes from one plaintext/ciphertext pair: ``K = P ⊕ C`` on raw bytes.

    Parameters
    ----------
    plain, cipher : integer arrays of the same shape and dtype
    known_bytes : int, optional
        The attacker knows only the first ``known_bytes`` bytes of the plaintext (the
        paper's "intercepting the first part"); default: all of it.

    Returns
    -------
    numpy.ndarray, uint8
        The recovered key bytes. Same shape as ``plain`` when it is uint8 and fully
        known, else a flat array of ``known_bytes`` (or ``plain.nbytes``) bytes. These
        are exactly the first bytes of the true key.
    """
    plain = checked_array(plain, "plain")
    cipher = checked_array(cipher, "cipher")
    _same_layout(plain, cipher, ("plain", "cipher"))
    if plain.dtype.kind not in "ui":
        raise InputError(f"plain: integer samples expected, got {plain.dtype}")
    p, c = _bytes_of(plain), _bytes_of(cipher)
    count = p.size if known_bytes is None else int(known_bytes)
    if not 0 < count <= p.size:
        raise InputError(f"known_bytes must be in 1..{p.size}, got {known_bytes}")
    key = np.bitwise_xor(p[:count], c[:count])
    if count == p.size and plain.dtype == np.uint8:
        return key.reshape(plain.shape)
    return key


@dataclass
class Recovery:
    """Result of decrypting a ciphertext with recovered key bytes."""

    plaintext: np.ndarray = field(repr=False)  # estimate; bytes beyond the key are left as ciphertext
    covered_share: float  # share of ciphertext bytes the key covers
    exact_share: float | None  # share of bytes equal to the true plaintext (if given)
    psnr: float | None  # dB vs the true plaintext (inf when exact)

    def to_dict(self) -> dict:
        return {
            "covered_share": self.covered_share,
            "exact_share": self.exact_share,
            "psnr": None if self.psnr is None or math.isinf(self.psnr) else self.psnr,
            "psnr_infinite": self.psnr is not None and math.isinf(self.psnr),
        }


def apply_recovered_key(other_cipher, key, true_plain=None) -> Recovery:
    """Decrypt another ciphertext made with the same key using recovered key bytes.

    Parameters
    ----------
    other_cipher : integer array (any shape)
    key : uint8 array (recovered bytes, C order); may be shorter than the ciphertext
    true_plain : array like ``other_cipher``, optional — to score the recovery

    Returns
    -------
    Recovery with the plaintext estimate (``other_cipher``'s shape and dtype; bytes the
    key does not cover are left unchanged), the covered share, and, when ``true_plain``
    is given, the share of exactly recovered bytes and the PSNR.
    """
    cipher = checked_array(other_cipher, "other_cipher")
    if cipher.dtype.kind not in "ui":
        raise InputError(f"other_cipher: integer samples expected, got {cipher.dtype}")
    key_bytes = np.asarray(key)
    if key_bytes.dtype != np.uint8:
        raise InputError(f"key: expected uint8 bytes, got {key_bytes.dtype}")
    key_bytes = key_bytes.reshape(-1)
    stream = _bytes_of(cipher).copy()
    covered = min(stream.size, key_bytes.size)
    stream[:covered] ^= key_bytes[:covered]
    little = cipher.dtype.newbyteorder("<")
    estimate = stream.view(little).reshape(cipher.shape)
    exact = quality = None
    if true_plain is not None:
        truth = checked_array(true_plain, "true_plain")
        _same_layout(truth, cipher, ("true_plain", "other_cipher"))
        exact = float(np.mean(_bytes_of(truth) == stream))
        quality = psnr(np.ascontiguousarray(truth, dtype=little), estimate)
    return Recovery(estimate, covered / stream.size, exact, quality)


# --------------------------------------------------------------------------- key reuse


def key_reuse_leak(c1, c2) -> np.ndarray:
    """``C1 ⊕ C2`` for two ciphertexts under the same key, which equals ``P1 ⊕ P2``.

    Parameters
    ----------
    c1, c2 : integer arrays of the same shape and dtype

    Returns
    -------
    array of that shape (little-endian dtype): the XOR of the two plaintexts, obtained
    without the key.
    """
    c1 = checked_array(c1, "c1")
    c2 = checked_array(c2, "c2")
    _same_layout(c1, c2, ("c1", "c2"))
    if c1.dtype.kind not in "ui":
        raise InputError(f"c1: integer samples expected, got {c1.dtype}")
    little = c1.dtype.newbyteorder("<")
    return np.bitwise_xor(_bytes_of(c1), _bytes_of(c2)).view(little).reshape(c1.shape)


def key_reuse_report(c1, c2, p1, p2, p2_guess=None) -> dict:
    """Measure what two ciphertexts under one key reveal about the plaintexts.

    Parameters
    ----------
    c1, c2 : ciphertexts ``P1 ⊕ K``, ``P2 ⊕ K`` (same shape/dtype)
    p1, p2 : the true plaintexts (for scoring only)
    p2_guess : array or scalar, optional
        What the attacker assumes P2 to be; default 0 everywhere (black background,
        common in medical images). The estimate of P1 is ``(C1 ⊕ C2) ⊕ p2_guess``.

    Returns
    -------
    dict with ``leak_equals_p1_xor_p2`` (bool, always true for XOR),
    ``leak_correlation`` (Pearson r of C1⊕C2 vs P1⊕P2 bytes, 1.0),
    ``p1_bytes_recovered_with_known_p2`` (1.0), ``p1_bytes_recovered_with_guess``
    (share of P1 bytes recovered exactly with the guess) and ``guess_correct_share``.
    """
    leak = key_reuse_leak(c1, c2)
    p1 = checked_array(p1, "p1")
    p2 = checked_array(p2, "p2")
    _same_layout(p1, leak, ("p1", "c1"))
    _same_layout(p2, leak, ("p2", "c1"))
    leak_b, p1_b, p2_b = _bytes_of(leak), _bytes_of(p1), _bytes_of(p2)
    truth = np.bitwise_xor(p1_b, p2_b)
    if p2_guess is None:
        guess_b = np.zeros_like(p2_b)
    else:
        guess = np.broadcast_to(np.asarray(p2_guess, dtype=p2.dtype), p2.shape)
        guess_b = _bytes_of(np.asarray(guess))
    correlation = pearson(leak_b, truth) if truth.std() > 0 else math.nan
    return {
        "compared": "C1 xor C2 vs P1 xor P2 (two plaintexts encrypted with the same key)",
        "leak_equals_p1_xor_p2": bool(np.array_equal(leak_b, truth)),
        "leak_correlation": None if math.isnan(correlation) else correlation,
        "p1_bytes_recovered_with_known_p2": float(np.mean(np.bitwise_xor(leak_b, p2_b) == p1_b)),
        "p1_bytes_recovered_with_guess": float(np.mean(np.bitwise_xor(leak_b, guess_b) == p1_b)),
        "guess_correct_share": float(np.mean(guess_b == p2_b)),
    }


# --------------------------------------------------------------------------- decryption grid


@dataclass
class DecryptionGrid:
    """Encrypt with key i (rows), decrypt with key j (columns); mean over plaintexts."""

    names: list[str]
    exact_share: np.ndarray  # (n, n) float: share of bytes equal to the plaintext
    psnr: np.ndarray  # (n, n) float dB; inf on the diagonal
    n_plaintexts: int

    def to_dict(self) -> dict:
        return {
            "compared": "D_j(E_i(P)) vs P: row i = encryption key, column j = decryption key",
            "names": list(self.names),
            "exact_share": self.exact_share.tolist(),
            "psnr": [[None if math.isinf(v) else float(v) for v in row] for row in self.psnr],
            "n_plaintexts": self.n_plaintexts,
        }


def decryption_grid(keys: Mapping[str, np.ndarray], plaintexts) -> DecryptionGrid:
    """Mutual-decryption grid (paper Fig. 10 / imitation-learning attack).

    Parameters
    ----------
    keys : mapping name -> uint8 key (each with at least as many bytes as every plaintext)
    plaintexts : one integer array, or a sequence / mapping of them

    Returns
    -------
    DecryptionGrid; ``exact_share[i, j]`` is the mean over plaintexts of the share of
    bytes of ``(P ⊕ K_i) ⊕ K_j`` equal to P — 1.0 when i == j, ≈ 1/256 for independent
    uniform keys (a byte decrypts correctly only where K_i and K_j agree); ``psnr`` is
    the mean PSNR in dB (inf on the diagonal).
    """
    if not keys:
        raise InputError("decryption_grid: no keys given")
    if isinstance(plaintexts, Mapping):
        plains = list(plaintexts.values())
    elif isinstance(plaintexts, np.ndarray):
        plains = [plaintexts]
    elif isinstance(plaintexts, Sequence):
        plains = list(plaintexts)
    else:
        plains = [plaintexts]
    if not plains:
        raise InputError("decryption_grid: no plaintexts given")
    names = list(keys)
    n = len(names)
    exact = np.zeros((n, n))
    quality = np.zeros((n, n))
    for plain in plains:
        plain = checked_array(plain, "plaintext")
        ciphers = [raw_xor(plain, keys[name]) for name in names]
        for i in range(n):
            for j in range(n):
                decrypted = raw_xor(ciphers[i], keys[names[j]])
                exact[i, j] += float(np.mean(_bytes_of(decrypted) == _bytes_of(plain)))
                quality[i, j] += psnr(np.ascontiguousarray(plain, dtype=decrypted.dtype), decrypted)
    return DecryptionGrid(names, exact / len(plains), quality / len(plains), len(plains))

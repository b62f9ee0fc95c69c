"""SP 800-22 section 2.10: linear complexity, with a Berlekamp-Massey vectorised
across blocks (polynomials packed into uint64 words)."""

from __future__ import annotations

import numpy as np

from .result import ALPHA, NistResult, as_bits, igamc, not_applicable, require, result

# 2.10.4 step 6 / 3.10: the spec's pi_0..pi_6 (pi_0 = 1/96, pi_6 = 1/48 rounded).
PI_SPEC = (0.010417, 0.03125, 0.125, 0.5, 0.25, 0.0625, 0.020833)
# The reference sts code has 0.01047 for pi_0 (a typo); SP 800-22's Appendix B and the
# 2.10.8 example were produced with it.
PI_REFERENCE = (0.01047, 0.03125, 0.12500, 0.50000, 0.25000, 0.06250, 0.020833)

_ONE = np.uint64(1)
_SHIFT63 = np.uint64(63)


def _shl1(a: np.ndarray) -> np.ndarray:
    out = a << _ONE
    out[:, 1:] |= a[:, :-1] >> _SHIFT63
    return out


def _parity(a: np.ndarray) -> np.ndarray:
    x = np.bitwise_xor.reduce(a, axis=1)
    for s in (32, 16, 8, 4, 2, 1):
        x ^= x >> np.uint64(s)
    return (x & _ONE).astype(bool)


def berlekamp_massey(blocks) -> np.ndarray:
    """Linear complexity (shortest LFSR length) of each row of a (N, M) 0/1 array."""
    blocks = np.asarray(blocks, dtype=np.uint8)
    if blocks.ndim == 1:
        blocks = blocks[None, :]
    N, M = blocks.shape
    W = M // 64 + 1  # bits 0..M
    C = np.zeros((N, W), dtype=np.uint64)   # connection polynomial, bit i = coefficient of x^i
    C[:, 0] = 1
    Bs = np.zeros((N, W), dtype=np.uint64)  # x^(shift) * B, kept pre-shifted
    Bs[:, 0] = 2
    R = np.zeros((N, W), dtype=np.uint64)   # bit i = s[k - i] at step k
    L = np.zeros(N, dtype=np.int64)
    cols = blocks.astype(np.uint64)
    for k in range(M):
        R = _shl1(R)
        R[:, 0] |= cols[:, k]
        d = _parity(C & R)
        change = d & (2 * L <= k)
        dmask = np.where(d, ~np.uint64(0), np.uint64(0))[:, None]
        old_c = C
        C = C ^ (Bs & dmask)
        Bs = _shl1(np.where(change[:, None], old_c, Bs))
        L = np.where(change, k + 1 - L, L)
    return L


def linear_complexity(bits, M: int = 500, alpha: float = ALPHA, *, pi="spec") -> NistResult:
    """2.10 Linear complexity: N = n // M blocks, L_i by Berlekamp-Massey,
    T_i = (-1)^M (L_i - mu) + 2/9 in K + 1 = 7 classes, p = igamc(3, chi2/2).

    ``pi``: "spec" (default, ``PI_SPEC``), "reference" (``PI_REFERENCE``, the sts code's
    table with pi_0 = 0.01047, which reproduces Appendix B's 0.826335 for e), or 7 numbers.
    """
    if isinstance(pi, str):
        require(pi in ("spec", "reference"), f"pi must be 'spec', 'reference' or 7 numbers, got {pi!r}")
        pi = PI_SPEC if pi == "spec" else PI_REFERENCE
    require(len(pi) == 7, "linear_complexity: pi needs 7 values")
    require(M >= 2, f"linear_complexity: M must be >= 2, got {M}")
    bits = as_bits(bits)
    n = bits.size
    N = n // M
    if N < 1:
        return not_applicable("linear_complexity", f"n = {n} < one block of M = {M} bits")
    L = berlekamp_massey(bits[: N * M].reshape(N, M))
    mu = M / 2.0 + (9.0 + (-1.0) ** (M + 1)) / 36.0 - (M / 3.0 + 2.0 / 9.0) / 2.0**M
    T = (-1.0) ** M * (L - mu) + 2.0 / 9.0
    edges = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
    classes = np.searchsorted(edges, T, side="left")  # T <= -2.5 -> 0, ..., T > 2.5 -> 6
    v = np.bincount(classes, minlength=7)
    expected = N * np.asarray(pi, dtype=np.float64)
    chi2 = float(np.sum((v - expected) ** 2 / expected))
    note = "" if N >= 200 else f"N = {N} blocks < 200 recommended (2.10.7)"
    return result("linear_complexity", igamc(3.0, chi2 / 2.0), alpha, note, M=M, N=N,
                  v=v.tolist(), chi2=chi2)

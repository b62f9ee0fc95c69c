"""SP 800-22 section 2.5: binary matrix rank, with true GF(2) elimination."""

from __future__ import annotations

import math

import numpy as np

from .result import ALPHA, NistResult, as_bits, not_applicable, require, result


def pack_rows(bits: np.ndarray, M: int, Q: int) -> np.ndarray:
    """Cut the sequence into N = n // (M Q) matrices (filled row by row, as the reference
    code does) and pack each Q-bit row into a uint64, first bit most significant."""
    require(1 <= Q <= 64 and M >= 1, f"rank: need 1 <= Q <= 64 and M >= 1, got M = {M}, Q = {Q}")
    N = bits.size // (M * Q)
    cube = bits[: N * M * Q].reshape(N, M, Q).astype(np.uint64)
    shifts = np.arange(Q - 1, -1, -1, dtype=np.uint64)
    return np.bitwise_or.reduce(cube << shifts, axis=2)


def gf2_rank(rows: np.ndarray, ncols: int) -> np.ndarray:
    """Rank over GF(2) of many matrices at once.

    ``rows`` is (N, M) uint64: matrix k's row i is ``rows[k, i]`` with column 0 in bit
    ``ncols - 1``. Gauss-Jordan elimination with XOR, vectorised across the N matrices.
    """
    A = np.array(rows, dtype=np.uint64, copy=True)
    if A.ndim == 1:
        A = A[None, :]
    N, M = A.shape
    rank = np.zeros(N, dtype=np.int64)
    row_idx = np.arange(M)
    for c in range(ncols):
        bit = np.uint64(1) << np.uint64(ncols - 1 - c)
        has = (A & bit) != 0
        cand = has & (row_idx[None, :] >= rank[:, None])
        found = np.flatnonzero(cand.any(axis=1))
        if found.size == 0:
            continue
        piv = cand[found].argmax(axis=1)
        r = rank[found]
        prow = A[found, piv]
        A[found, piv] = A[found, r]
        A[found, r] = prow
        sub = A[found]
        mask = (sub & bit) != 0
        mask[np.arange(found.size), r] = False
        sub ^= np.where(mask, prow[:, None], np.uint64(0))
        A[found] = sub
        rank[found] += 1
        if rank.min() >= M:
            break
    return rank


def rank_probabilities(M: int, Q: int) -> tuple[float, float, float]:
    """P(rank = m), P(rank = m - 1), P(rank <= m - 2) for a random M x Q GF(2) matrix,
    m = min(M, Q) (3.5; the reference code computes the same products)."""
    m = min(M, Q)

    def p(r: int) -> float:
        prod = 1.0
        for i in range(r):
            prod *= (1.0 - 2.0 ** (i - Q)) * (1.0 - 2.0 ** (i - M)) / (1.0 - 2.0 ** (i - r))
        return 2.0 ** (r * (Q + M - r) - M * Q) * prod

    p_full, p_minus1 = p(m), p(m - 1)
    return p_full, p_minus1, 1.0 - p_full - p_minus1


def rank(bits, M: int = 32, Q: int = 32, alpha: float = ALPHA, *,
         probabilities: tuple[float, float, float] | None = None) -> NistResult:
    """2.5 Binary matrix rank: chi2 over full rank / rank - 1 / lower, p = exp(-chi2/2).

    ``probabilities`` overrides the exact (p_full, p_full-1, p_rest); the spec's 3 x 3
    worked example (2.5.4) uses the 32 x 32 values rounded to 0.2888, 0.5776, 0.1336.
    """
    bits = as_bits(bits)
    require(1 <= Q <= 64 and M >= 1, f"rank: need 1 <= Q <= 64 and M >= 1, got M = {M}, Q = {Q}")
    if probabilities is not None:
        require(len(probabilities) == 3, "rank: probabilities needs 3 numbers")
    n = bits.size
    N = n // (M * Q)
    if N < 1:
        return not_applicable("rank", f"n = {n} < one {M}x{Q} matrix ({M * Q} bits)")
    ranks = gf2_rank(pack_rows(bits, M, Q), Q)
    m = min(M, Q)
    f_full = int(np.count_nonzero(ranks == m))
    f_minus1 = int(np.count_nonzero(ranks == m - 1))
    counts = (f_full, f_minus1, N - f_full - f_minus1)
    probs = rank_probabilities(M, Q) if probabilities is None else tuple(probabilities)
    chi2 = sum((f - p * N) ** 2 / (p * N) for f, p in zip(counts, probs, strict=True))
    note = "" if N >= 38 else f"N = {N} matrices < 38 recommended (2.5.7)"
    return result("rank", math.exp(-chi2 / 2.0), alpha, note, N=N, counts=list(counts), chi2=chi2)

"""SP 800-22 section 2.9: Maurer's "universal statistical" test."""

from __future__ import annotations

import math

import numpy as np

from .result import ALPHA, NistResult, as_bits, erfc, not_applicable, require, result

# 2.9.4 step 5 table: L -> (expectedValue, variance); L = 1..5 for hand-worked examples.
EXPECTED = {1: 0.7326495, 2: 1.5374383, 3: 2.4016068, 4: 3.3112247, 5: 4.2534266,
            6: 5.2177052, 7: 6.1962507, 8: 7.1836656, 9: 8.1764248, 10: 9.1723243,
            11: 10.170032, 12: 11.168765, 13: 12.168070, 14: 13.167693, 15: 14.167488,
            16: 15.167379}
VARIANCE = {1: 0.690, 2: 1.338, 3: 1.901, 4: 2.358, 5: 2.705, 6: 2.954, 7: 3.125, 8: 3.238,
            9: 3.311, 10: 3.356, 11: 3.384, 12: 3.401, 13: 3.410, 14: 3.416, 15: 3.419,
            16: 3.421}
# 2.9.7: the smallest n for each L (Q = 10 * 2^L, K = 1000 * 2^L).
_L_BY_N = ((1_059_061_760, 16), (496_435_200, 15), (231_669_760, 14), (107_560_960, 13),
           (49_643_520, 12), (22_753_280, 11), (10_342_400, 10), (4_654_080, 9),
           (2_068_480, 8), (904_960, 7), (387_840, 6))


def choose_L(n: int) -> int | None:
    for min_n, L in _L_BY_N:
        if n >= min_n:
            return L
    return None


def universal(bits, L: int | None = None, Q: int | None = None, alpha: float = ALPHA, *,
              correction: bool = True) -> NistResult:
    """2.9 Maurer's universal test.

    L (block length) and Q = 10 * 2^L initialisation blocks are chosen from n by the
    2.9.7 table (n >= 387,840, else not applicable); K = n // L - Q test blocks.
    sigma = c(L, K) sqrt(variance / K) with c = 0.7 - 0.8/L + (4 + 32/L) K^(-3/L) / 15.
    ``correction=False`` uses sigma = sqrt(variance), as the small worked example of
    2.9.4 does (L = 2, Q = 4, n = 20).
    """
    bits = as_bits(bits)
    n = bits.size
    if L is None:
        L = choose_L(n)
        if L is None:
            return not_applicable("universal", f"n = {n} < 387,840 (2.9.7: L >= 6 needs that many bits)")
    require(L in EXPECTED, f"universal: L = {L} outside 1..16")
    if Q is None:
        Q = 10 * (1 << L)
    require(Q >= 1, f"universal: Q must be >= 1, got {Q}")
    blocks = n // L
    K = blocks - Q
    if K < 1:
        return not_applicable("universal", f"n = {n} leaves no test blocks (L = {L}, Q = {Q})")
    values = bits[: blocks * L].reshape(blocks, L).astype(np.int64) @ (1 << np.arange(L - 1, -1, -1))
    # previous occurrence of each block's value (-1 when none): sort stably by value
    order = np.argsort(values, kind="stable")
    sv = values[order]
    prev = np.full(blocks, -1, dtype=np.int64)
    same = sv[1:] == sv[:-1]
    prev[order[1:][same]] = order[:-1][same]
    idx = np.arange(Q, blocks, dtype=np.int64)
    p = prev[Q:]
    dist = np.where(p >= 0, idx - p, idx + 1)  # 1-based block index minus last position (0 if none)
    fn = float(np.sum(np.log2(dist))) / K
    if correction:
        c = 0.7 - 0.8 / L + (4.0 + 32.0 / L) * K ** (-3.0 / L) / 15.0
        sigma = c * math.sqrt(VARIANCE[L] / K)
    else:
        sigma = math.sqrt(VARIANCE[L])
    pval = erfc(abs(fn - EXPECTED[L]) / (math.sqrt(2.0) * sigma))
    return result("universal", pval, alpha, "", L=L, Q=Q, K=K, fn=fn, sigma=sigma)

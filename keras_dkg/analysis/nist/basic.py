"""SP 800-22 sections 2.1-2.4 and 2.13: frequency, block frequency, runs, longest run,
cumulative sums."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from .result import ALPHA, NistResult, as_bits, erfc, igamc, not_applicable, require, result

# Section 2.4.4 / 3.4: (M, class boundaries v_0..v_K, pi_i) for the longest-run test.
# The pi values are the spec's 4-digit table (they reproduce the worked example of
# 2.4.8 and the Appendix B value for the binary expansion of e).
_LONGEST_RUN_TABLES = (
    # (minimum n, M, lowest class "<= lo", highest class ">= hi", pi)
    (750_000, 10_000, 10, 16, (0.0882, 0.2092, 0.2483, 0.1933, 0.1208, 0.0675, 0.0727)),
    (6_272, 128, 4, 9, (0.1174, 0.2430, 0.2493, 0.1752, 0.1027, 0.1124)),
    (128, 8, 1, 4, (0.2148, 0.3672, 0.2305, 0.1875)),
)


def frequency(bits, alpha: float = ALPHA) -> NistResult:
    """2.1 Frequency (monobit): p = erfc(|S_n| / sqrt(2n))."""
    bits = as_bits(bits)
    n = bits.size
    s = 2 * int(np.count_nonzero(bits)) - n  # exact Python int
    s_obs = abs(s) / math.sqrt(n)
    note = "" if n >= 100 else f"n = {n} < 100 recommended (2.1.7)"
    return result("frequency", erfc(s_obs / math.sqrt(2.0)), alpha, note, s_n=s, s_obs=s_obs)


def block_frequency(bits, M: int = 128, alpha: float = ALPHA) -> NistResult:
    """2.2 Frequency within a block: chi2 = 4M sum (pi_i - 1/2)^2, p = igamc(N/2, chi2/2)."""
    bits = as_bits(bits)
    n = bits.size
    require(M >= 1, f"block_frequency: block length M must be >= 1, got {M}")
    N = n // M
    if N < 1:
        return not_applicable("block_frequency", f"n = {n} shorter than one block (M = {M})")
    ones = bits[: N * M].reshape(N, M).sum(axis=1, dtype=np.int64)
    # 4M sum (ones/M - 1/2)^2 == sum (2 ones - M)^2 / M, numerator exact in int64
    chi2 = float(np.sum((2 * ones - M) ** 2)) / M
    return result("block_frequency", igamc(N / 2.0, chi2 / 2.0), alpha, "", M=M, N=N, chi2=chi2)


def runs(bits, alpha: float = ALPHA) -> NistResult:
    """2.3 Runs. The frequency prerequisite |pi - 1/2| < 2/sqrt(n) failing gives p = 0."""
    bits = as_bits(bits)
    n = bits.size
    pi = np.count_nonzero(bits) / n
    tau = 2.0 / math.sqrt(n)
    if abs(pi - 0.5) >= tau:
        return result("runs", 0.0, alpha, f"frequency prerequisite failed: |pi - 1/2| = "
                      f"{abs(pi - 0.5):.6g} >= 2/sqrt(n) = {tau:.6g} (2.3.4 step 2); p-value set to 0",
                      pi=pi)
    v_obs = 1 + int(np.count_nonzero(bits[1:] != bits[:-1]))
    q = pi * (1.0 - pi)
    p = erfc(abs(v_obs - 2.0 * n * q) / (2.0 * math.sqrt(2.0 * n) * q))
    return result("runs", p, alpha, "", v_obs=v_obs, pi=pi)


def _longest_runs(blocks: np.ndarray) -> np.ndarray:
    """Longest run of ones in each row of a (N, M) 0/1 array."""
    N, M = blocks.shape
    padded = np.zeros((N, M + 1), dtype=np.uint8)
    padded[:, :M] = blocks
    flat = padded.ravel()
    zeros = np.flatnonzero(flat == 0)  # every row ends with a zero
    lengths = np.diff(np.concatenate(([-1], zeros))) - 1
    out = np.zeros(N, dtype=np.int64)
    np.maximum.at(out, zeros // (M + 1), lengths)
    return out


def longest_run(bits, alpha: float = ALPHA) -> NistResult:
    """2.4 Longest run of ones in a block; M = 8 / 128 / 10^4 by n, the spec's class tables."""
    bits = as_bits(bits)
    n = bits.size
    table = next((t for t in _LONGEST_RUN_TABLES if n >= t[0]), None)
    if table is None:
        return not_applicable("longest_run", f"n = {n} < 128 (2.4.2)")
    _, M, lo, hi, pi = table
    K = len(pi) - 1
    N = n // M
    longest = _longest_runs(bits[: N * M].reshape(N, M))
    classes = np.clip(longest, lo, hi) - lo
    v = np.bincount(classes, minlength=K + 1)
    expected = N * np.asarray(pi)
    chi2 = float(np.sum((v - expected) ** 2 / expected))
    return result("longest_run", igamc(K / 2.0, chi2 / 2.0), alpha, "", M=M, N=N, K=K,
                  v=v.tolist(), chi2=chi2)


def _tdiv(a: int, b: int) -> int:
    """C integer division (truncation toward zero), as in the reference implementation."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _cusum_p(n: int, z: int) -> float:
    """2.13.4 step 4; the summation limits follow the reference C code (integer division)."""
    if z == 0:
        return 1.0
    sqn = math.sqrt(n)
    k1 = np.arange(_tdiv(_tdiv(-n, z) + 1, 4), _tdiv(_tdiv(n, z) - 1, 4) + 1, dtype=np.float64)
    k2 = np.arange(_tdiv(_tdiv(-n, z) - 3, 4), _tdiv(_tdiv(n, z) - 1, 4) + 1, dtype=np.float64)
    phi = special.ndtr
    s1 = float(np.sum(phi((4 * k1 + 1) * z / sqn) - phi((4 * k1 - 1) * z / sqn)))
    s2 = float(np.sum(phi((4 * k2 + 3) * z / sqn) - phi((4 * k2 + 1) * z / sqn)))
    return 1.0 - s1 + s2


def cumulative_sums(bits, alpha: float = ALPHA) -> NistResult:
    """2.13 Cumulative sums: p_values = [forward (mode 0), backward (mode 1)].

    Partial sums are int64 (exact for any sequence that fits in memory).
    """
    bits = as_bits(bits)
    n = bits.size
    x = 2 * bits.astype(np.int64) - 1
    fwd = int(np.max(np.abs(np.cumsum(x, dtype=np.int64))))
    bwd = int(np.max(np.abs(np.cumsum(x[::-1], dtype=np.int64))))
    note = "" if n >= 100 else f"n = {n} < 100 recommended (2.13.7)"
    return result("cumulative_sums", [_cusum_p(n, fwd), _cusum_p(n, bwd)], alpha, note,
                  z_forward=fwd, z_backward=bwd, labels=["forward", "backward"])

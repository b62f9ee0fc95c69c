"""SP 800-22 sections 2.11 and 2.12: serial and approximate entropy tests."""

from __future__ import annotations

import math

import numpy as np

from .result import (
    ALPHA,
    NistResult,
    as_bits,
    igamc,
    not_applicable,
    pattern_counts,
    require,
    result,
)


def _phi(bits: np.ndarray, m: int) -> float:
    """phi^(m) = sum_i pi_i ln pi_i over the circular m-bit pattern frequencies."""
    if m == 0:
        return 0.0
    counts = pattern_counts(bits, m)
    c = counts[counts > 0] / bits.size
    return float(np.sum(c * np.log(c)))


def default_apen_m(n: int) -> int:
    """10, or the largest m < floor(log2 n) - 5 (2.12.7) when n is smaller."""
    return min(10, int(math.floor(math.log2(n))) - 6)


def approximate_entropy(bits, m: int | None = None, alpha: float = ALPHA) -> NistResult:
    """2.12 Approximate entropy: ApEn(m) = phi^(m) - phi^(m+1), chi2 = 2n(ln 2 - ApEn),
    p = igamc(2^(m-1), chi2/2). Default m = 10 (reduced for short sequences)."""
    bits = as_bits(bits)
    n = bits.size
    note = ""
    if m is None:
        m = default_apen_m(n)
        if m < 1:
            return not_applicable("approximate_entropy", f"n = {n} too short (2.12.7: m < log2(n) - 5)")
    else:
        require(1 <= m <= 24, f"approximate_entropy: m must be in 1..24, got {m}")
        if m >= math.floor(math.log2(n)) - 5:
            note = f"m = {m} >= floor(log2 n) - 5 (2.12.7): result unreliable"
    apen = _phi(bits, m) - _phi(bits, m + 1)
    chi2 = 2.0 * n * (math.log(2.0) - apen)
    return result("approximate_entropy", igamc(2.0 ** (m - 1), chi2 / 2.0), alpha, note,
                  m=m, apen=apen, chi2=chi2)


def _psi2(bits: np.ndarray, m: int) -> float:
    """psi^2_m = 2^m / n * sum v_i^2 - n (exact integer arithmetic, then one division)."""
    if m <= 0:
        return 0.0
    n = bits.size
    v = pattern_counts(bits, m)
    sum_sq = sum(int(c) * int(c) for c in v.tolist())
    return ((sum_sq << m) - n * n) / n


def default_serial_m(n: int) -> int:
    """16, or the largest m < floor(log2 n) - 2 (2.11.7) when n is smaller."""
    return min(16, int(math.floor(math.log2(n))) - 3)


def serial(bits, m: int | None = None, alpha: float = ALPHA) -> NistResult:
    """2.11 Serial: p_values = [igamc(2^(m-2), d psi^2 / 2), igamc(2^(m-3), d2 psi^2 / 2)].

    Default m = 16 (reduced for short sequences); SP 800-22 Appendix B uses m = 16 and
    the worked example 2.11.8 uses m = 2.
    """
    bits = as_bits(bits)
    n = bits.size
    note = ""
    if m is None:
        m = default_serial_m(n)
        if m < 2:
            return not_applicable("serial", f"n = {n} too short (2.11.7: m < log2(n) - 2)")
    else:
        require(2 <= m <= 24, f"serial: m must be in 2..24, got {m}")
        if m >= math.floor(math.log2(n)) - 2:
            note = f"m = {m} >= floor(log2 n) - 2 (2.11.7): result unreliable"
    psi = [_psi2(bits, m - k) for k in range(3)]
    d1 = psi[0] - psi[1]
    d2 = psi[0] - 2.0 * psi[1] + psi[2]
    p1 = igamc(2.0 ** (m - 2), d1 / 2.0)
    p2 = igamc(2.0 ** (m - 3), d2 / 2.0)
    return result("serial", [p1, p2], alpha, note, m=m, psi2=psi, del1=d1, del2=d2,
                  labels=["p1", "p2"])

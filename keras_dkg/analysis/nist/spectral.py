"""SP 800-22 section 2.6: discrete Fourier transform (spectral) test, rev. 1a form."""

from __future__ import annotations

import math

import numpy as np

from .result import ALPHA, NistResult, as_bits, erfc, result


def dft_threshold(n: int) -> float:
    """T = sqrt(ln(1/0.05) n): 95 % of the |S_j| of a random sequence lie below it."""
    return math.sqrt(math.log(1.0 / 0.05) * n)


def dft_statistic(n: int, n1: int) -> tuple[float, float]:
    """(d, p) for N1 peaks below T: N0 = 0.95 n / 2, d = (N1 - N0) / sqrt(n 0.95 0.05 / 4),
    p = erfc(|d| / sqrt 2)."""
    n0 = 0.95 * n / 2.0
    d = (n1 - n0) / math.sqrt(n * 0.95 * 0.05 / 4.0)
    return d, float(erfc(abs(d) / math.sqrt(2.0)))


def dft(bits, alpha: float = ALPHA) -> NistResult:
    """2.6 DFT: count N1 of the moduli |S_j|, j = 0 .. n/2 - 1, of the FFT of 2 eps - 1
    below T (the reference code's index range), then ``dft_statistic``."""
    bits = as_bits(bits)
    n = bits.size
    x = 2.0 * bits.astype(np.float64) - 1.0
    modulus = np.abs(np.fft.rfft(x)[: n // 2])
    threshold = dft_threshold(n)
    n1 = int(np.count_nonzero(modulus < threshold))
    d, p = dft_statistic(n, n1)
    note = "" if n >= 1000 else f"n = {n} < 1000 recommended (2.6.7)"
    return result("dft", p, alpha, note, n0=0.95 * n / 2.0, n1=n1, d=d, threshold=threshold)

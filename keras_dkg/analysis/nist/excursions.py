"""SP 800-22 sections 2.14 and 2.15: random excursions and random excursions variant."""

from __future__ import annotations

import math

import numpy as np

from .result import ALPHA, NistResult, as_bits, erfc, igamc, not_applicable, result

EXCURSION_STATES = (-4, -3, -2, -1, 1, 2, 3, 4)
VARIANT_STATES = tuple(x for x in range(-9, 10) if x != 0)


def excursion_pi(x: int) -> tuple[float, ...]:
    """pi_k(x), k = 0..4 and >= 5 (3.14): 1 - 1/(2|x|), (1/(4x^2))(1 - 1/(2|x|))^(k-1),
    (1/(2|x|))(1 - 1/(2|x|))^4."""
    a = abs(x)
    q = 1.0 - 1.0 / (2.0 * a)
    return (q, *[(1.0 / (4.0 * a * a)) * q ** (k - 1) for k in range(1, 5)], (1.0 / (2.0 * a)) * q**4)


def _walk(bits: np.ndarray) -> tuple[np.ndarray, int]:
    """Partial sums S_1..S_n (int64) and J, the number of cycles (zero crossings of
    S' = 0, S, 0; a final S_n = 0 does not open an empty cycle, as in the reference code)."""
    s = np.cumsum(2 * bits.astype(np.int64) - 1, dtype=np.int64)
    zeros = int(np.count_nonzero(s == 0))
    return s, zeros + (1 if s[-1] != 0 else 0)


def _min_cycles(n: int) -> float:
    return max(0.005 * math.sqrt(n), 500.0)


def random_excursions(bits, alpha: float = ALPHA, *, min_cycles: float | None = None) -> NistResult:
    """2.14 Random excursions: p_values for x = -4..-1, 1..4 (``stats["states"]``), each
    chi2 = sum_k (v_k(x) - J pi_k(x))^2 / (J pi_k(x)), p = igamc(5/2, chi2/2).

    Not applicable when J < max(0.005 sqrt(n), 500) (the reference code's rule);
    ``min_cycles`` overrides that bound (e.g. 0 for the 10-bit example of 2.14.4).
    """
    bits = as_bits(bits)
    n = bits.size
    s, J = _walk(bits)
    bound = _min_cycles(n) if min_cycles is None else min_cycles
    if J < bound or J == 0:
        return not_applicable("random_excursions", f"J = {J} cycles < {bound:g} (2.14.7)", J=J)
    # cycle index of each step = number of zeros strictly before it
    is_zero = s == 0
    cycle = np.cumsum(is_zero) - is_zero
    keep = (np.abs(s) <= 4) & ~is_zero
    state_idx = s[keep] + 4  # 0..8, 4 unused
    visits = np.bincount(cycle[keep] * 9 + state_idx, minlength=J * 9).reshape(J, 9)
    p_values, chi2s, table = [], [], []
    for x in EXCURSION_STATES:
        v = np.bincount(np.minimum(visits[:, x + 4], 5), minlength=6)
        expected = J * np.asarray(excursion_pi(x))
        chi2 = float(np.sum((v - expected) ** 2 / expected))
        p_values.append(igamc(2.5, chi2 / 2.0))
        chi2s.append(chi2)
        table.append(v.tolist())
    return result("random_excursions", p_values, alpha, "", J=J, states=list(EXCURSION_STATES),
                  chi2=chi2s, v=table, labels=[f"x={x:+d}" for x in EXCURSION_STATES])


def random_excursions_variant(bits, alpha: float = ALPHA, *,
                              min_cycles: float | None = None) -> NistResult:
    """2.15 Random excursions variant: for x = -9..-1, 1..9 (``stats["states"]``),
    p = erfc(|xi(x) - J| / sqrt(2 J (4|x| - 2))), xi(x) = total visits to x.

    Not applicable when J < max(0.005 sqrt(n), 500); ``min_cycles`` overrides that.
    """
    bits = as_bits(bits)
    n = bits.size
    s, J = _walk(bits)
    bound = _min_cycles(n) if min_cycles is None else min_cycles
    if J < bound or J == 0:
        return not_applicable("random_excursions_variant", f"J = {J} cycles < {bound:g} (2.15.7)", J=J)
    near = s[np.abs(s) <= 9]
    counts = np.bincount(near + 9, minlength=19)
    xi = [int(counts[x + 9]) for x in VARIANT_STATES]
    p_values = [erfc(abs(c - J) / math.sqrt(2.0 * J * (4.0 * abs(x) - 2.0)))
                for c, x in zip(xi, VARIANT_STATES, strict=True)]
    return result("random_excursions_variant", p_values, alpha, "", J=J,
                  states=list(VARIANT_STATES), xi=xi, labels=[f"x={x:+d}" for x in VARIANT_STATES])

"""SP 800-22 sections 2.7 and 2.8: non-overlapping and overlapping template matching."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from keras_dkg.errors import InputError

from .result import ALPHA, NistResult, as_bits, igamc, not_applicable, require, result, window_codes

# Section 2.8.4 / 3.8, rev. 1a (Hamano-Kaneko corrected) for m = 9, M = 1032, K = 5.
OVERLAPPING_PI_REV1A = (0.364091, 0.185659, 0.139381, 0.100571, 0.0704323, 0.139865)


def is_aperiodic(template: int, m: int) -> bool:
    """True when the m-bit word has no proper border (no shift of it overlaps itself)."""
    for k in range(1, m):  # border of length k: top k bits == low k bits
        if (template >> (m - k)) == (template & ((1 << k) - 1)):
            return False
    return True


@lru_cache(maxsize=32)
def aperiodic_templates(m: int = 9) -> tuple[int, ...]:
    """All aperiodic m-bit templates in ascending order (the order of the reference
    ``templates/template<m>`` files: 000000001, 000000011, ... for m = 9 (148 of them))."""
    return tuple(t for t in range(1 << m) if is_aperiodic(t, m))


def template_str(template: int, m: int) -> str:
    return format(template, f"0{m}b")


def _parse_template(template, m: int | None) -> tuple[int, int]:
    if isinstance(template, str):
        require(bool(template) and not set(template) - {"0", "1"} and len(template) <= 24,
                f"template {template!r} must be a 0/1 string of 1..24 characters")
        return int(template, 2), len(template)
    require(0 <= int(template) < (1 << m), f"template {template} does not fit in m = {m} bits")
    return int(template), m


def _greedy_count(positions: np.ndarray, m: int) -> int:
    """Non-overlapping count of matches at sorted ``positions`` (skip m - 1 after a hit)."""
    count, next_free = 0, -1
    for pos in positions.tolist():
        if pos >= next_free:
            count += 1
            next_free = pos + m
    return count


def non_overlapping_template(bits, m: int = 9, N: int = 8, alpha: float = ALPHA, *,
                             templates=None) -> NistResult:
    """2.7 Non-overlapping template matching (rev. 1a variance, N degrees of freedom).

    mu = (M - m + 1) / 2^m, sigma^2 = M (1/2^m - (2m - 1)/2^(2m)),
    chi2 = sum_j (W_j - mu)^2 / sigma^2, p = igamc(N/2, chi2/2) for every template.
    By default all aperiodic m-bit templates (148 for m = 9); ``templates`` may list
    0/1 strings (e.g. ["001"] for the 2.7.4 example) or ints. p_values follow
    ``stats["templates"]``.
    """
    bits = as_bits(bits)
    require(1 <= m <= 24 and N >= 1, f"non_overlapping_template: need 1 <= m <= 24 and N >= 1, got m = {m}, N = {N}")
    n = bits.size
    if templates is None:
        tlist = [(t, m) for t in aperiodic_templates(m)]
    else:
        tlist = [_parse_template(t, m) for t in templates]
    require(bool(tlist), "non_overlapping_template: no templates")
    M = n // N
    lengths = {tm for _, tm in tlist}
    if len(lengths) == 1:
        m = next(iter(lengths))
    if M < max(lengths):
        return not_applicable("non_overlapping_template",
                              f"block length M = n // N = {M} < template length {max(lengths)}")
    p_values, labels, w_all = [], [], []
    for tm in sorted(lengths):
        mine = [t for t, mm in tlist if mm == tm]
        mu = (M - tm + 1) / 2.0**tm
        var = M * (1.0 / 2.0**tm - (2.0 * tm - 1.0) / 2.0 ** (2 * tm))
        codes = window_codes(bits[: N * M], tm, circular=False)
        W = np.zeros((len(mine), N), dtype=np.int64)
        for j in range(N):
            block = codes[j * M: j * M + M - tm + 1]
            counts = np.bincount(block, minlength=1 << tm)
            for i, t in enumerate(mine):
                if is_aperiodic(t, tm):  # occurrences cannot overlap: plain count
                    W[i, j] = counts[t]
                else:
                    W[i, j] = _greedy_count(np.flatnonzero(block == t), tm)
        chi2 = np.sum((W - mu) ** 2, axis=1) / var
        p = igamc(N / 2.0, chi2 / 2.0)
        for i, t in enumerate(mine):
            p_values.append(float(p[i]))
            labels.append(template_str(t, tm))
            w_all.append(W[i].tolist())
    # restore the caller's template order
    order = {template_str(t, tm): k for k, (t, tm) in enumerate(tlist)}
    idx = sorted(range(len(labels)), key=lambda k: order[labels[k]])
    periodic = [template_str(t, tm) for t, tm in tlist if not is_aperiodic(t, tm)]
    note = (f"periodic template(s) {', '.join(periodic[:3])}: the 2.7.4 variance assumes aperiodic "
            "templates" if periodic else "")
    return result("non_overlapping_template", [p_values[k] for k in idx], alpha, note,
                  m=m if len(lengths) == 1 else sorted(lengths), N=N, M=M,
                  templates=[labels[k] for k in idx], W=[w_all[k] for k in idx])


def overlapping_pi_exact(m: int, M: int, K: int = 5) -> tuple[float, ...]:
    """Exact P(k overlapping occurrences of 1^m in a random M-bit block), k = 0..K-1 and
    k >= K, by dynamic programming over (current run of ones, count). For m = 9,
    M = 1032 this reproduces the rev. 1a values (0.364091, ..., 0.139865)."""
    # state[r, c]: run of trailing ones r (capped at m), occurrences c (capped at K)
    state = np.zeros((m + 1, K + 1))
    state[0, 0] = 1.0
    for _ in range(M):
        new = np.zeros_like(state)
        new[0, :] += 0.5 * state.sum(axis=0)  # a zero resets the run
        new[1:m, :] += 0.5 * state[0:m - 1, :]  # a one extends a short run
        ext = 0.5 * (state[m - 1, :] + state[m, :])  # run reaches >= m: one more occurrence
        new[m, 1:] += ext[:-1]
        new[m, K] += ext[K]
        state = new
    return tuple(float(v) for v in state.sum(axis=0))


def overlapping_pi_approx(m: int, M: int, K: int = 5) -> tuple[float, ...]:
    """The spec's approximation (2.8.4 step 4, eta = lambda / 2), as used in its worked
    example with m = 2, M = 10."""
    lam = (M - m + 1) / 2.0**m
    eta = lam / 2.0

    def pr(u: int) -> float:
        if u == 0:
            return math.exp(-eta)
        return math.exp(-eta) / 2.0**u * sum(
            math.comb(u - 1, ell - 1) * eta**ell / math.factorial(ell) for ell in range(1, u + 1))

    head = [pr(u) for u in range(K)]
    return (*head, 1.0 - sum(head))


def _overlapping_pi(pi, m: int, M: int, K: int) -> np.ndarray:
    if isinstance(pi, str):
        if pi == "rev1a":
            pi = OVERLAPPING_PI_REV1A if (m, M, K) == (9, 1032, 5) else overlapping_pi_exact(m, M, K)
        elif pi == "exact":
            pi = overlapping_pi_exact(m, M, K)
        elif pi == "reference":
            pi = overlapping_pi_approx(m, M, K)
        else:
            raise InputError(f"pi must be 'rev1a', 'exact', 'reference' or K + 1 numbers, got {pi!r}")
    arr = np.asarray(pi, dtype=np.float64)
    require(arr.shape == (K + 1,) and bool(np.all(arr > 0)), f"pi needs K + 1 = {K + 1} positive values")
    return arr


def overlapping_template(bits, m: int = 9, M: int = 1032, K: int = 5, alpha: float = ALPHA, *,
                         pi="rev1a") -> NistResult:
    """2.8 Overlapping template matching of B = 1^m in N = n // M blocks, K + 1 classes,
    chi2 = sum (v_i - N pi_i)^2 / (N pi_i), p = igamc(K/2, chi2/2).

    ``pi``: "rev1a" (default) -- the rev. 1a table 0.364091, 0.185659, 0.139381,
    0.100571, 0.0704323, 0.139865 for (m, M, K) = (9, 1032, 5), which are the exact
    probabilities (``overlapping_pi_exact`` reproduces them; used for other m, M too);
    "reference" -- the spec's eta approximation (``overlapping_pi_approx``), which the
    reference sts code computes and with which Appendix B / 2.8.8 report 0.110434 for e;
    or K + 1 explicit numbers.
    """
    bits = as_bits(bits)
    require(1 <= m <= 24 and M >= 1 and K >= 1,
            f"overlapping_template: need 1 <= m <= 24, M >= 1, K >= 1, got m = {m}, M = {M}, K = {K}")
    n = bits.size
    N = n // M
    if N < 1 or M < m:
        return not_applicable("overlapping_template", f"n = {n} < one block of M = {M} bits")
    pi = _overlapping_pi(pi, m, M, K)
    target = (1 << m) - 1
    codes = window_codes(bits[: N * M], m, circular=False)
    # windows fully inside block j start at j*M .. j*M + M - m
    starts = np.arange(codes.size)
    inside = (starts % M) <= (M - m)
    hits = (codes == target) & inside
    per_block = np.bincount(starts[hits] // M, minlength=N)
    v = np.bincount(np.minimum(per_block, K), minlength=K + 1)
    expected = N * pi
    chi2 = float(np.sum((v - expected) ** 2 / expected))
    note = "" if N * pi.min() > 5 else f"N min(pi) = {N * pi.min():.3g} <= 5 (2.8.7): chi-square unreliable"
    return result("overlapping_template", igamc(K / 2.0, chi2 / 2.0), alpha, note,
                  m=m, M=M, N=N, v=v.tolist(), chi2=chi2, pi=pi.tolist())

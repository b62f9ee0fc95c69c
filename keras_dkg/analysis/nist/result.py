"""The result type shared by every NIST SP 800-22 test, and small numeric helpers.

Convention for ``passed`` (used by every test in this package):

* ``True``  -- every p-value in ``p_values`` is ``>= alpha``;
* ``False`` -- at least one p-value is ``< alpha`` (tests with several p-values --
  cumulative sums, serial, the 148 non-overlapping templates, the 8 + 18 random
  excursion states -- report all of them and pass only when all pass; with
  ``alpha = 0.01`` a truly random sequence therefore fails the 148-template test
  about 77 % of the time: judge such tests per p-value, as ``summarize`` does);
* ``None``  -- the test is not applicable to this sequence (too short, too few
  cycles, ...); ``note`` says why and ``p_values`` is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special

from keras_dkg.errors import InputError

ALPHA = 0.01


@dataclass
class NistResult:
    """Outcome of one SP 800-22 test on one sequence.

    ``stats`` carries diagnostics (test statistic, counts, the parameters used, the
    labels of multi-p-value tests); it is not part of ``to_dict``.
    """

    name: str
    p_values: list[float]
    passed: bool | None
    note: str = ""
    stats: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"name": self.name, "p_values": [float(p) for p in self.p_values],
                "passed": self.passed, "note": self.note}


def as_bits(bits) -> np.ndarray:
    """Validate a bit sequence: 1-D, values 0/1 only; returns a contiguous uint8 array."""
    arr = np.asarray(bits)
    if arr.ndim != 1:
        raise InputError(f"bit sequence must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError("bit sequence is empty")
    if arr.dtype == np.bool_:
        return np.ascontiguousarray(arr, dtype=np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all((arr == 0) | (arr == 1)):
            return arr.astype(np.uint8)
        raise InputError(f"bit sequence must hold integers 0/1, got dtype {arr.dtype}")
    if arr.dtype != np.uint8 and (arr.min() < 0 or arr.max() > 1):
        raise InputError("bit sequence holds values other than 0 and 1")
    if arr.dtype == np.uint8 and arr.max() > 1:
        raise InputError("bit sequence holds values other than 0 and 1")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def result(name: str, p_values, alpha: float, note: str = "", **stats) -> NistResult:
    """A computed result: ``passed`` is True when every p-value is >= alpha."""
    ps = [min(1.0, max(0.0, float(p))) for p in np.atleast_1d(p_values)]
    return NistResult(name, ps, all(p >= alpha for p in ps), note, stats)


def require(condition: bool, message: str) -> None:
    """Raise InputError(message) unless ``condition`` (bad test parameters)."""
    if not condition:
        raise InputError(message)


def not_applicable(name: str, reason: str, **stats) -> NistResult:
    return NistResult(name, [], None, f"not applicable: {reason}", stats)


def igamc(a, x):
    """Upper regularised incomplete gamma Q(a, x) (the spec's igamc)."""
    return special.gammaincc(a, x)


def erfc(x):
    return special.erfc(x)


def window_codes(bits: np.ndarray, m: int, circular: bool) -> np.ndarray:
    """Integer value of every m-bit window (first bit most significant).

    ``circular=True`` wraps the sequence (n windows, as in the serial and approximate
    entropy tests); otherwise the n - m + 1 windows that fit.
    """
    n = bits.size
    src = np.concatenate([bits, np.resize(bits, m - 1)]) if circular else bits
    count = n if circular else n - m + 1
    dtype = np.int32 if m < 31 else np.int64
    codes = np.zeros(max(count, 0), dtype=dtype)
    if count <= 0:
        return codes
    for j in range(m):
        codes <<= 1
        codes |= src[j:j + count]
    return codes


def pattern_counts(bits: np.ndarray, m: int) -> np.ndarray:
    """Counts of each of the 2**m overlapping (circular) m-bit patterns."""
    if m <= 0:
        return np.array([bits.size], dtype=np.int64)
    return np.bincount(window_codes(bits, m, circular=True), minlength=1 << m).astype(np.int64)

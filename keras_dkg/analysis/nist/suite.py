"""Running the whole SP 800-22 battery on one sequence."""

from __future__ import annotations

from collections.abc import Callable

from keras_dkg.errors import InputError

from .basic import block_frequency, cumulative_sums, frequency, longest_run, runs
from .complexity import linear_complexity
from .entropy import approximate_entropy, serial
from .excursions import random_excursions, random_excursions_variant
from .rank import rank
from .result import ALPHA, NistResult, as_bits, not_applicable
from .spectral import dft
from .templates import non_overlapping_template, overlapping_template
from .universal import universal

# Test name -> function, in the spec's order (2.1 ... 2.15).
TESTS: dict[str, Callable[..., NistResult]] = {
    "frequency": frequency,
    "block_frequency": block_frequency,
    "runs": runs,
    "longest_run": longest_run,
    "rank": rank,
    "dft": dft,
    "non_overlapping_template": non_overlapping_template,
    "overlapping_template": overlapping_template,
    "universal": universal,
    "linear_complexity": linear_complexity,
    "serial": serial,
    "approximate_entropy": approximate_entropy,
    "cumulative_sums": cumulative_sums,
    "random_excursions": random_excursions,
    "random_excursions_variant": random_excursions_variant,
}

# Recommended minimum lengths (Section 2.x.7) that ``run_all`` enforces by default.
# Tests with a hard limit of their own (longest run, universal, random excursions,
# approximate entropy / serial via m) decide inside the test function.
MIN_BITS: dict[str, tuple[int, str]] = {
    "frequency": (100, "2.1.7"),
    "block_frequency": (100, "2.2.7"),
    "runs": (100, "2.3.7"),
    "cumulative_sums": (100, "2.13.7"),
    "rank": (38 * 32 * 32, "2.5.7: at least 38 matrices"),
    "dft": (1000, "2.6.7"),
    "overlapping_template": (72 * 1032, "2.8.7: N min(pi) > 5"),
    "linear_complexity": (200 * 500, "2.10.7: N >= 200 blocks of M = 500"),
}


# The reference implementation, sts-2.1.2, differs from the spec's corrected constants in
# two tests; with these options our results equal sts's, so they can be compared with
# papers that ran sts (`dkg-analyze nist --sts`).
STS_OPTIONS: dict[str, dict] = {
    "overlapping_template": {"pi": "reference"},
    "linear_complexity": {"pi": "reference"},
}


def run_all(bits, alpha: float = ALPHA, tests: list[str] | None = None, *,
            options: dict[str, dict] | None = None, enforce_min_length: bool = True) -> list[NistResult]:
    """Run the SP 800-22 tests (all 15 by default, in the spec's order) on one sequence.

    ``tests`` selects by name (see ``TESTS``); ``options`` passes keyword arguments per
    test, e.g. ``{"serial": {"m": 2}, "block_frequency": {"M": 64}}``. With
    ``enforce_min_length`` a test whose recommended minimum length (``MIN_BITS``) is not
    met is reported as not applicable (passed=None) instead of run.
    See ``NistResult`` for the meaning of ``passed`` with several p-values.
    """
    bits = as_bits(bits)
    names = list(TESTS) if tests is None else list(tests)
    unknown = [t for t in names if t not in TESTS]
    if unknown:
        raise InputError(f"unknown NIST test(s) {', '.join(unknown)}; choose from {', '.join(TESTS)}")
    options = options or {}
    bad = [t for t in options if t not in TESTS]
    if bad:
        raise InputError(f"options for unknown NIST test(s) {', '.join(bad)}")
    out = []
    n = bits.size
    for name in names:
        if enforce_min_length and name in MIN_BITS and n < MIN_BITS[name][0]:
            need, where = MIN_BITS[name]
            out.append(not_applicable(name, f"n = {n} < {need} bits recommended ({where})"))
            continue
        out.append(TESTS[name](bits, alpha=alpha, **options.get(name, {})))
    return out

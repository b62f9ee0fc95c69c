"""NIST SP 800-22 rev. 1a statistical test suite (all 15 tests), vectorised numpy/scipy.

Validated against the worked examples of the spec's Section 2 and its Appendix B
results for the first 10^6 bits of e (see tests/test_nist*.py).

``passed`` convention: True when *every* p-value of the test is >= alpha, False when
any is below, None when the test is not applicable (reason in ``note``). Multi-p-value
tests (cumulative sums, serial, non-overlapping templates, random excursions and its
variant) report all their p-values; ``summarize`` judges many sequences per p-value.
"""

from .basic import block_frequency, cumulative_sums, frequency, longest_run, runs
from .complexity import berlekamp_massey, linear_complexity
from .entropy import approximate_entropy, serial
from .excursions import (
    EXCURSION_STATES,
    VARIANT_STATES,
    random_excursions,
    random_excursions_variant,
)
from .io import bits_from_bytes, read_bits
from .rank import gf2_rank, rank, rank_probabilities
from .result import ALPHA, NistResult
from .spectral import dft
from .suite import MIN_BITS, STS_OPTIONS, TESTS, run_all
from .summary import summarize
from .templates import (
    OVERLAPPING_PI_REV1A,
    aperiodic_templates,
    non_overlapping_template,
    overlapping_pi_approx,
    overlapping_pi_exact,
    overlapping_template,
)
from .universal import universal

__all__ = [
    "ALPHA", "EXCURSION_STATES", "MIN_BITS", "OVERLAPPING_PI_REV1A", "STS_OPTIONS", "TESTS", "VARIANT_STATES",
    "NistResult", "approximate_entropy", "aperiodic_templates", "berlekamp_massey",
    "bits_from_bytes", "block_frequency", "cumulative_sums", "dft", "frequency", "gf2_rank",
    "linear_complexity", "longest_run", "non_overlapping_template", "overlapping_pi_approx",
    "overlapping_pi_exact", "overlapping_template", "random_excursions",
    "random_excursions_variant", "rank", "rank_probabilities", "read_bits", "run_all", "runs",
    "serial", "summarize", "universal",
]

"""NIST SP 800-22 rev. 1a, Appendix B and the e-based worked examples of Section 2.

The first 1,000,000 bits of the binary expansion of e (the spec's ``data.e``) are
generated here with mpmath (floor(e * 2^(10^6 - 2)), ~3 s) once per session.

Published values checked (tolerance 1e-6; the spec prints 6 digits):

=========================  =============================  ================================
test                       published (source)             notes
=========================  =============================  ================================
frequency                  0.953749 (App. B)
block_frequency M=128      0.211072 (App. B)
cumulative_sums fwd/bwd    0.669887 / 0.724266 (App. B)   we get 0.6698865 / 0.7242653
runs                       0.561917 (App. B)
longest_run (M=10^4)       0.718945 (App. B)
rank                       0.306156 (App. B); 0.532069    2.5.8 uses the first 10^5 bits
                           chi2 1.2619656 (2.5.8)
dft                        0.847187 (App. B)
non_overlapping 000000001  0.078790 (App. B)
overlapping_template       0.110434, chi2 8.965859,       with pi="reference" (the sts
                           v = 329,164,150,111,78,136     code's eta approximation; see
                           (App. B, 2.8.8)                below for the rev. 1a table)
universal                  0.282568 (App. B)
approximate_entropy m=10   0.700073 (App. B)
random_excursions          x=+1 0.786868 (App. B); all 8
                           states + chi2 (2.14.8)
random_excursions_variant  x=-1 0.826009 (App. B); all 18
                           states + counts (2.15.8)
serial m=16                0.766182 / 0.462921 (App. B)
serial m=2                 0.843764 / 0.561915 (2.11.8)
linear_complexity M=500    0.826335 (App. B)              with pi="reference" (0.01047)
linear_complexity M=1000   0.845406, chi2 2.700348,       with pi="reference"
                           v = 11,31,116,501,258,57,26
                           (2.10.8)
=========================  =============================  ================================
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from keras_dkg.analysis import nist

N_BITS = 1_000_000
TOL = 1e-6


def _e_bits(n: int = N_BITS) -> np.ndarray:
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workprec(n + 100):
        value = int(mpmath.e * mpmath.mpf(2) ** (n - 2))  # e = 10.1011011111..._2
    assert value.bit_length() == n
    raw = np.frombuffer(value.to_bytes((n + 7) // 8, "big"), dtype=np.uint8)
    return np.unpackbits(raw)[-n:]


@pytest.fixture(scope="session")
def e_bits() -> np.ndarray:
    bits = _e_bits()
    bits.setflags(write=False)
    return bits


@pytest.fixture(scope="session")
def e_results(e_bits) -> dict[str, nist.NistResult]:
    return {r.name: r for r in nist.run_all(e_bits)}


def test_e_bits_match_data_e(e_bits):
    # the spec's data.e starts "10101101111110000101..."
    assert "".join(map(str, e_bits[:20])) == "10101101111110000101"
    assert e_bits.size == N_BITS
    # 2.11.8: 500,029 ones; circular 2-bit counts 00, 01, 10, 11
    assert int(e_bits.sum()) == 500_029
    from keras_dkg.analysis.nist.result import pattern_counts

    assert pattern_counts(e_bits, 2).tolist() == [250116, 249855, 249855, 250174]


@pytest.mark.parametrize(("name", "index", "expected"), [
    ("frequency", 0, 0.953749),
    ("block_frequency", 0, 0.211072),
    ("cumulative_sums", 0, 0.669887),
    ("cumulative_sums", 1, 0.724266),
    ("runs", 0, 0.561917),
    ("longest_run", 0, 0.718945),
    ("rank", 0, 0.306156),
    ("dft", 0, 0.847187),
    ("non_overlapping_template", 0, 0.078790),  # template 000000001
    ("universal", 0, 0.282568),
    ("approximate_entropy", 0, 0.700073),
    ("random_excursions", 4, 0.786868),  # x = +1
    ("random_excursions_variant", 8, 0.826009),  # x = -1
    ("serial", 0, 0.766182),
    ("serial", 1, 0.462921),
])
def test_appendix_b_default_parameters(e_results, name, index, expected):
    res = e_results[name]
    assert res.passed is not None, res.note
    assert res.p_values[index] == pytest.approx(expected, abs=TOL)


def test_appendix_b_parameters_used(e_results):
    assert e_results["block_frequency"].stats["M"] == 128
    assert e_results["longest_run"].stats["M"] == 10_000
    assert e_results["rank"].stats["N"] == 976
    assert e_results["non_overlapping_template"].stats["templates"][0] == "000000001"
    assert e_results["universal"].stats["L"] == 7 and e_results["universal"].stats["Q"] == 1280
    assert e_results["approximate_entropy"].stats["m"] == 10
    assert e_results["serial"].stats["m"] == 16
    assert e_results["random_excursions"].stats["J"] == 1490


def test_overlapping_template_e(e_bits, e_results):
    # 2.8.8 / Appendix B: counts and p with the reference code's probabilities
    ref = nist.overlapping_template(e_bits, pi="reference")
    assert ref.stats["N"] == 968
    assert ref.stats["v"] == [329, 164, 150, 111, 78, 136]
    assert ref.stats["chi2"] == pytest.approx(8.965859, abs=TOL)
    assert ref.p_values[0] == pytest.approx(0.110434, abs=TOL)
    # default: the rev. 1a table (exact probabilities); same counts, p = 0.159032
    default = e_results["overlapping_template"]
    assert default.stats["v"] == ref.stats["v"]
    assert default.stats["pi"] == list(nist.OVERLAPPING_PI_REV1A)
    assert default.p_values[0] == pytest.approx(0.159032, abs=TOL)


def test_linear_complexity_e(e_bits, e_results):
    # Appendix B (M = 500) with the reference code's pi_0 = 0.01047
    assert nist.linear_complexity(e_bits, pi="reference").p_values[0] == pytest.approx(0.826335, abs=TOL)
    # 2.10.8 (M = 1000): v, chi2 and P as printed
    r = nist.linear_complexity(e_bits, M=1000, pi="reference")
    assert r.stats["v"] == [11, 31, 116, 501, 258, 57, 26]
    assert r.stats["chi2"] == pytest.approx(2.700348, abs=TOL)
    assert r.p_values[0] == pytest.approx(0.845406, abs=TOL)
    # default: the spec's pi table (pi_0 = 0.010417) -- same counts, p = 0.826194
    default = e_results["linear_complexity"]
    assert default.stats["v"] == [21, 52, 250, 1006, 492, 135, 44]
    assert default.p_values[0] == pytest.approx(0.826194, abs=TOL)


def test_rank_first_100000_bits_of_e(e_bits):
    # 2.5.8: N = 97, F_32 = 23, F_31 = 60, rest 14, chi2 = 1.2619656, P = 0.532069
    r = nist.rank(e_bits[:100_000])
    assert r.stats["counts"] == [23, 60, 14]
    assert r.stats["chi2"] == pytest.approx(1.2619656, abs=1e-7)
    assert r.p_values[0] == pytest.approx(0.532069, abs=TOL)


def test_serial_m2_e(e_bits):
    # 2.11.8: del psi^2 = 0.339764, del^2 psi^2 = 0.336400, P1 = 0.843764, P2 = 0.561915
    r = nist.serial(e_bits, m=2)
    assert r.stats["del1"] == pytest.approx(0.339764, abs=TOL)
    assert r.stats["del2"] == pytest.approx(0.336400, abs=TOL)
    assert r.p_values == pytest.approx([0.843764, 0.561915], abs=TOL)


def test_random_excursions_e_all_states(e_results):
    # 2.14.8: J = 1490; chi2 and P for x = -4..-1, +1..+4
    r = e_results["random_excursions"]
    assert r.stats["states"] == [-4, -3, -2, -1, 1, 2, 3, 4]
    assert r.p_values == pytest.approx(
        [0.573306, 0.197996, 0.164011, 0.007779, 0.786868, 0.440912, 0.797854, 0.778186], abs=TOL)
    assert r.stats["chi2"][:4] == pytest.approx([3.835698, 7.318707, 7.861927, 15.692617], abs=TOL)
    assert r.passed is False  # x = -1 is below 0.01


def test_random_excursions_variant_e_all_states(e_results):
    # 2.15.8: J = 1490, visit counts xi(x) and P for x = -9..-1, +1..+9
    r = e_results["random_excursions_variant"]
    assert r.stats["J"] == 1490
    assert r.stats["xi"] == [1450, 1435, 1380, 1366, 1412, 1475, 1480, 1468, 1502,
                             1409, 1369, 1396, 1479, 1599, 1628, 1619, 1620, 1610]
    assert r.p_values == pytest.approx(
        [0.858946, 0.794755, 0.576249, 0.493417, 0.633873, 0.917283, 0.934708, 0.816012, 0.826009,
         0.137861, 0.200642, 0.441254, 0.939291, 0.505683, 0.445935, 0.512207, 0.538635, 0.593930],
        abs=TOL)


def test_cumulative_sums_e_statistics(e_results):
    r = e_results["cumulative_sums"]
    assert (r.stats["z_forward"], r.stats["z_backward"]) == (956, 898)


def test_approximate_entropy_statistic_e(e_results):
    r = e_results["approximate_entropy"]
    # chi2 = 2n(ln 2 - ApEn) must be small and positive for e (ApEn close to ln 2)
    assert 0 < math.log(2) - r.stats["apen"] < 1e-3
    assert r.stats["chi2"] == pytest.approx(2 * N_BITS * (math.log(2) - r.stats["apen"]))


def test_sts_mode_reproduces_the_reference_implementation(e_bits, tmp_path, capsys):
    """`dkg-analyze nist --sts` uses sts-2.1.2's constants: Appendix B's values for e, which
    the spec's corrected constants (the default) do not give."""
    import json

    from keras_dkg.analysis import cli

    source = tmp_path / "data.e"
    source.write_bytes(b"".join(b"1" if bit else b"0" for bit in e_bits.tolist()))
    tests = "overlapping_template,linear_complexity"
    assert cli.main(["nist", str(source), "--sts", "--json", "--tests", tests]) == 0
    sts = {r["name"]: r["p_values"][0] for r in json.loads(capsys.readouterr().out)["tests"]}
    assert sts["overlapping_template"] == pytest.approx(0.110434, abs=TOL)
    assert sts["linear_complexity"] == pytest.approx(0.826335, abs=TOL)
    assert cli.main(["nist", str(source), "--json", "--tests", tests]) == 0
    spec = {r["name"]: r["p_values"][0] for r in json.loads(capsys.readouterr().out)["tests"]}
    assert spec["overlapping_template"] != pytest.approx(0.110434, abs=TOL)

"""NIST SP 800-22 rev. 1a: the small worked examples of Section 2, the API and I/O.

Appendix B (10^6 bits of e) lives in test_nist_e.py; known-pitfall regressions and
random / degenerate sequences in test_nist_regression.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from keras_dkg.analysis import nist
from keras_dkg.analysis.nist.spectral import dft_statistic, dft_threshold
from keras_dkg.errors import InputError

TOL = 1e-6
# The 100-bit sequence of 2.1.8, 2.2.8, 2.3.8, 2.6.8, 2.12.8, 2.13.8 (the first 100 bits
# of pi = 11.0010010000111111..._2; see test_pi_100_bits_are_pi).
PI100 = ("11001001000011111101101010100010001000010110100011"
         "00001000110100110001001100011001100010100010111000")
# 2.4.8
LONGEST_RUN_128 = ("11001100000101010110110001001100111000000000001001001101010100010001"
                   "001111010110100000001101011111001100111001101101100010110010")


def B(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), dtype=np.uint8) - ord("0")


def test_pi_100_bits_are_pi():
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workprec(200):
        value = int(mpmath.pi * mpmath.mpf(2) ** 98)
    assert format(value, "b") == PI100


# ----------------------------------------------------------------------- 2.1 frequency

def test_frequency_2_1_4():
    r = nist.frequency(B("1011010101"))
    assert r.stats["s_obs"] == pytest.approx(0.632455532, abs=1e-9)
    assert r.p_values[0] == pytest.approx(0.527089, abs=TOL)
    assert r.passed is True


def test_frequency_2_1_8():
    r = nist.frequency(B(PI100))
    assert r.stats["s_n"] == -16 and r.stats["s_obs"] == pytest.approx(1.6)
    assert r.p_values[0] == pytest.approx(0.109599, abs=TOL)


# ----------------------------------------------------------------- 2.2 block frequency

def test_block_frequency_2_2_4():
    r = nist.block_frequency(B("0110011010"), M=3)
    assert r.stats["chi2"] == pytest.approx(1.0)
    assert r.p_values[0] == pytest.approx(0.801252, abs=TOL)


def test_block_frequency_2_2_8():
    r = nist.block_frequency(B(PI100), M=10)
    assert r.stats["chi2"] == pytest.approx(7.2)
    assert r.p_values[0] == pytest.approx(0.706438, abs=TOL)


# ------------------------------------------------------------------------- 2.3 runs

def test_runs_2_3_4():
    r = nist.runs(B("1001101011"))
    assert r.stats["v_obs"] == 7
    assert r.p_values[0] == pytest.approx(0.147232, abs=TOL)


def test_runs_2_3_8():
    r = nist.runs(B(PI100))
    assert r.stats["v_obs"] == 52 and r.stats["pi"] == pytest.approx(0.42)
    assert r.p_values[0] == pytest.approx(0.500798, abs=TOL)


# ------------------------------------------------------------------ 2.4 longest run

def test_longest_run_2_4_8():
    r = nist.longest_run(B(LONGEST_RUN_128))
    assert (r.stats["M"], r.stats["N"], r.stats["K"]) == (8, 16, 3)
    assert r.stats["v"] == [4, 9, 3, 0]
    assert r.stats["chi2"] == pytest.approx(4.882605, abs=TOL)
    # The spec prints P = 0.180609, but igamc(3/2, 4.882605/2) = 0.180598 (its own chi2).
    assert r.p_values[0] == pytest.approx(0.180598, abs=TOL)


def test_longest_run_block_lengths_by_n():
    rng = np.random.default_rng(1)
    for n, M in [(128, 8), (6271, 8), (6272, 128), (749_999, 128), (750_000, 10_000)]:
        assert nist.longest_run(rng.integers(0, 2, n, dtype=np.uint8)).stats["M"] == M
    short = nist.longest_run(B("1" * 127))
    assert short.passed is None and "128" in short.note


# ------------------------------------------------------------------------- 2.5 rank

def test_rank_2_5_4():
    # 3 x 3 matrices; the example uses the 32 x 32 probabilities rounded to 4 digits
    r = nist.rank(B("01011001001010101101"), M=3, Q=3, probabilities=(0.2888, 0.5776, 0.1336))
    assert r.stats["counts"] == [1, 1, 0]  # ranks 3 and 2
    assert r.stats["chi2"] == pytest.approx(0.596953, abs=TOL)
    assert r.p_values[0] == pytest.approx(0.741948, abs=TOL)


def test_rank_probabilities_32():
    p32, p31, p30 = nist.rank_probabilities(32, 32)
    assert (round(p32, 4), round(p31, 4), round(p30, 4)) == (0.2888, 0.5776, 0.1336)


# -------------------------------------------------------------------------- 2.6 DFT

def test_dft_statistic_2_6_4_and_2_6_8():
    # d and P for the printed N1 (4 of n/2 = 5 for n = 10; 46 for n = 100).
    d, p = dft_statistic(10, 4)
    assert d == pytest.approx(-2.176429, abs=TOL) and p == pytest.approx(0.029523, abs=TOL)
    d, p = dft_statistic(100, 46)
    assert d == pytest.approx(-1.376494, abs=TOL) and p == pytest.approx(0.168669, abs=TOL)
    assert dft_threshold(100) == pytest.approx(math.sqrt(2.995732 * 100), abs=1e-5)
    # NOTE: for these two inputs the reference algorithm (which reproduces Appendix B's
    # 0.847187, see test_nist_e.py) counts N1 = 5 and 48, not the printed 4 and 46; the
    # spec's small DFT examples are not reproducible, so only d -> P is checked here.
    assert nist.dft(B("1001010011")).stats["n1"] == 5
    assert nist.dft(B(PI100)).stats["n1"] == 48


def test_dft_detects_periodicity():
    rng = np.random.default_rng(7)
    block = rng.integers(0, 2, 64, dtype=np.uint8)
    periodic = np.tile(block, 2**14 // 64)  # all energy in n/64 harmonics
    r = nist.dft(periodic)
    assert r.passed is False and r.stats["n1"] > r.stats["n0"]
    assert nist.dft(rng.integers(0, 2, 2**14, dtype=np.uint8)).passed is True


# ------------------------------------------------------- 2.7 non-overlapping template

def test_non_overlapping_template_2_7_4():
    r = nist.non_overlapping_template(B("10100100101110010110"), N=2, templates=["001"])
    assert r.stats["M"] == 10 and r.stats["W"] == [[2, 1]]
    assert r.p_values[0] == pytest.approx(0.344154, abs=TOL)  # chi2 = 2.133333


def test_aperiodic_templates():
    t9 = nist.aperiodic_templates(9)
    assert len(t9) == 148 and len(nist.aperiodic_templates(10)) == 284
    assert format(t9[0], "09b") == "000000001" and format(t9[1], "09b") == "000000011"
    assert format(t9[-1], "09b") == "111111110"
    assert [format(t, "03b") for t in nist.aperiodic_templates(3)] == ["001", "011", "100", "110"]
    # brute force with strings: no proper prefix equals a suffix
    for t in t9:
        s = format(t, "09b")
        assert all(s[:k] != s[-k:] for k in range(1, 9))
    periodic = [t for t in range(512) if t not in set(t9)]
    for t in periodic:
        s = format(t, "09b")
        assert any(s[:k] == s[-k:] for k in range(1, 9))


def test_non_overlapping_periodic_template_is_counted_without_overlap():
    # a user template with a border ("11"): matches may not overlap
    r = nist.non_overlapping_template(B("1111011100"), N=1, templates=["11"])
    assert r.stats["W"] == [[3]]  # 11|11|0|11|100


# ---------------------------------------------------------- 2.8 overlapping template

def test_overlapping_template_pi_tables():
    exact = nist.overlapping_pi_exact(9, 1032, 5)
    assert exact == pytest.approx(nist.OVERLAPPING_PI_REV1A, abs=1e-6)
    # 2.8.4 example values (m = 2, M = 10: lambda = 2.25, eta = 1.125)
    approx = nist.overlapping_pi_approx(2, 10, 5)
    assert approx[:2] == pytest.approx((0.324652, 0.182617), abs=TOL)


def test_overlapping_template_counts_overlaps():
    # 2.8.4's blocks of 10 with B = 11: 5, 1, 3, 4, 1 overlapping matches
    ε = "10111011110010110100011100101110111110000101101001"
    r = nist.overlapping_template(B(ε), m=2, M=10, K=5, pi="reference")
    assert r.stats["v"] == [0, 2, 0, 1, 1, 1]
    # The spec's printed P-value for this example (0.274932) does not follow from its
    # printed chi2 (igamc(5/2, 3.167729/2) = 0.674145), so only counts are checked.


# ------------------------------------------------------------------- 2.9 universal

def test_universal_2_9_4():
    # L = 2, Q = 4, K = 6; the example uses sigma = sqrt(variance) (no c(L, K) factor)
    r = nist.universal(B("01011010011101010111"), L=2, Q=4, correction=False)
    assert r.stats["K"] == 6
    assert r.stats["fn"] == pytest.approx(1.1949875, abs=1e-7)
    assert r.p_values[0] == pytest.approx(0.767189, abs=TOL)


def test_universal_block_length_by_n():
    from keras_dkg.analysis.nist.universal import choose_L

    assert choose_L(387_839) is None and choose_L(387_840) == 6
    assert choose_L(904_960) == 7 and choose_L(1_000_000) == 7 and choose_L(2_068_480) == 8
    r = nist.universal(np.ones(1000, dtype=np.uint8))
    assert r.passed is None and "387,840" in r.note


# ----------------------------------------------------------- 2.10 linear complexity

def _bm_reference(s: list[int]) -> int:
    """Textbook Berlekamp-Massey on Python lists."""
    n = len(s)
    c, b = [1] + [0] * n, [1] + [0] * n
    L, m = 0, -1
    for i in range(n):
        d = s[i]
        for j in range(1, L + 1):
            d ^= c[j] & s[i - j]
        if d:
            t = c[:]
            for j in range(n - i + m):
                c[i - m + j] ^= b[j]
            if 2 * L <= i:
                L, m, b = i + 1 - L, i, t
    return L


def test_berlekamp_massey_2_10_4_and_reference():
    assert nist.berlekamp_massey(B("1101011110001"))[0] == 4  # 2.10.4 step 2
    assert nist.berlekamp_massey(B("00000000"))[0] == 0
    assert nist.berlekamp_massey(B("00000001"))[0] == 8
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 2, (300, 130), dtype=np.uint8)
    blocks[:20] = np.tile(B("1101"), 33)[:130]  # periodic: low complexity
    got = nist.berlekamp_massey(blocks)
    assert got.tolist() == [_bm_reference(row.tolist()) for row in blocks]


def test_linear_complexity_not_applicable_when_short():
    assert nist.linear_complexity(B("1" * 499)).passed is None


# -------------------------------------------------------------------- 2.11 serial

def test_serial_2_11_4():
    r = nist.serial(B("0011011101"), m=3)
    assert r.stats["psi2"] == pytest.approx([2.8, 1.2, 0.4])
    assert (r.stats["del1"], r.stats["del2"]) == pytest.approx((1.6, 0.8))
    # 2.11.6 (2.11.4 step 5 misprints 0.9057 / 0.8805)
    assert r.p_values == pytest.approx([0.808792, 0.670320], abs=TOL)


# ------------------------------------------------------- 2.12 approximate entropy

def test_approximate_entropy_2_12_4():
    r = nist.approximate_entropy(B("0100110101"), m=3)
    assert r.stats["apen"] == pytest.approx(0.190954, abs=TOL)  # phi3 - phi4
    # the spec prints chi2 = 0.502193 but 2*10*(ln 2 - 0.190954) = 10.043859
    assert r.stats["chi2"] == pytest.approx(10.043859, abs=TOL)
    assert r.p_values[0] == pytest.approx(0.261961, abs=TOL)


def test_approximate_entropy_2_12_8():
    r = nist.approximate_entropy(B(PI100), m=2)
    assert r.stats["apen"] == pytest.approx(0.665393, abs=TOL)
    assert r.stats["chi2"] == pytest.approx(5.550792, abs=TOL)
    assert r.p_values[0] == pytest.approx(0.235301, abs=TOL)


# --------------------------------------------------------- 2.13 cumulative sums

def test_cumulative_sums_2_13_4():
    r = nist.cumulative_sums(B("1011010111"))
    assert r.stats["z_forward"] == 4
    assert r.p_values[0] == pytest.approx(0.4116588, abs=TOL)


def test_cumulative_sums_2_13_8():
    r = nist.cumulative_sums(B(PI100))
    assert (r.stats["z_forward"], r.stats["z_backward"]) == (16, 19)
    assert r.p_values == pytest.approx([0.219194, 0.114866], abs=TOL)


# ------------------------------------------------------ 2.14 / 2.15 random excursions

def test_random_excursions_2_14_4():
    r = nist.random_excursions(B("0110110101"), min_cycles=0)
    assert r.stats["J"] == 3
    plus1 = r.stats["states"].index(1)
    assert r.stats["v"][plus1] == [1, 1, 0, 1, 0, 0]
    # The spec prints chi2 = 4.333033 / P = 0.502529, from its 4-digit pi table
    # (pi_4(1) = pi_5(1) = 0.0312); with the exact pi (1/32) chi2 is 13/3.
    assert r.stats["chi2"][plus1] == pytest.approx(13 / 3, abs=1e-12)
    assert r.p_values[plus1] == pytest.approx(0.502529, abs=5e-5)
    # default bound: J < 500 cycles -> not applicable, no crash
    default = nist.random_excursions(B("0110110101"))
    assert default.passed is None and default.p_values == [] and "J = 3" in default.note


def test_random_excursions_variant_2_15_4():
    r = nist.random_excursions_variant(B("0110110101"), min_cycles=0)
    k = r.stats["states"].index(1)
    assert r.stats["J"] == 3 and r.stats["xi"][k] == 4
    assert r.p_values[k] == pytest.approx(0.683091, abs=TOL)
    assert nist.random_excursions_variant(B("0110110101")).passed is None


# --------------------------------------------------------------------- API and I/O

def test_result_to_dict_and_passed_convention():
    r = nist.cumulative_sums(B(PI100))
    d = r.to_dict()
    assert set(d) == {"name", "p_values", "passed", "note"}
    assert d["name"] == "cumulative_sums" and len(d["p_values"]) == 2
    json.dumps(d)
    assert r.passed is all(p >= nist.ALPHA for p in r.p_values)
    strict = nist.cumulative_sums(B(PI100), alpha=0.2)  # 0.114866 < 0.2
    assert strict.passed is False


def test_run_all_names_order_and_selection():
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2, 50_000, dtype=np.uint8)
    results = nist.run_all(bits)
    names = [r.name for r in results]
    assert names == list(nist.TESTS) and len(names) == 15
    assert set(names) == {
        "frequency", "block_frequency", "cumulative_sums", "runs", "longest_run", "rank", "dft",
        "non_overlapping_template", "overlapping_template", "universal", "approximate_entropy",
        "random_excursions", "random_excursions_variant", "serial", "linear_complexity"}
    by = {r.name: r for r in results}
    assert by["universal"].passed is None  # n < 387,840
    assert len(by["non_overlapping_template"].p_values) == 148
    for r in results:
        assert (r.passed is None) == (r.p_values == [])
        assert all(0.0 <= p <= 1.0 for p in r.p_values)
        assert r.passed is None or r.note == "" or "recommended" in r.note or "unreliable" in r.note
    sel = nist.run_all(bits, tests=["runs", "frequency"], options={"runs": {}})
    assert [r.name for r in sel] == ["runs", "frequency"]
    serial2 = nist.run_all(bits, tests=["serial"], options={"serial": {"m": 2}})[0]
    assert serial2.stats["m"] == 2


def test_run_all_rejects_bad_input():
    with pytest.raises(InputError, match="unknown NIST test"):
        nist.run_all(B("0101"), tests=["frequency", "bogus"])
    with pytest.raises(InputError):
        nist.run_all(np.array([0, 1, 2]))
    with pytest.raises(InputError):
        nist.run_all(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(InputError):
        nist.frequency(np.array([], dtype=np.uint8))
    with pytest.raises(InputError):
        nist.frequency(np.array([0.5, 1.0]))


def test_run_all_short_sequence_is_not_applicable_not_a_crash():
    results = nist.run_all(B("0110110101"))
    assert len(results) == 15 and all(r.passed is None for r in results)
    for r in results:
        assert r.passed is None or isinstance(r.passed, bool)
        if r.passed is None:
            assert r.note.startswith("not applicable")
    # without the recommended minimum lengths, what can be computed is
    loose = {r.name: r for r in nist.run_all(B(PI100), enforce_min_length=False)}
    assert loose["frequency"].p_values[0] == pytest.approx(0.109599, abs=TOL)
    assert loose["rank"].passed is None and loose["longest_run"].passed is None


def test_bits_from_bytes():
    assert nist.bits_from_bytes(b"\x80\x01").tolist() == [1] + [0] * 14 + [1]
    arr = np.array([1, 256], dtype=np.uint16)  # little-endian bytes 01 00 00 01
    assert nist.bits_from_bytes(arr).tolist() == nist.bits_from_bytes(b"\x01\x00\x00\x01").tolist()
    big = arr.astype(">u2")
    assert nist.bits_from_bytes(big).tolist() == nist.bits_from_bytes(arr).tolist()
    img = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert nist.bits_from_bytes(img).tolist() == np.unpackbits(np.arange(12, dtype=np.uint8)).tolist()
    with pytest.raises(InputError):
        nist.bits_from_bytes("0101")


def test_read_bits_ascii_raw_and_errors(tmp_path):
    ascii_file = tmp_path / "data.e"
    ascii_file.write_text("   10101101111\n  1100 00101\r\n")
    assert "".join(map(str, nist.read_bits(ascii_file))) == "101011011111100" + "00101"
    raw = tmp_path / "key.bin"
    raw.write_bytes(b"\xff\x00\x30")
    assert nist.read_bits(raw).tolist() == [1] * 8 + [0] * 8 + [0, 0, 1, 1, 0, 0, 0, 0]
    with pytest.raises(InputError, match="no such file"):
        nist.read_bits(tmp_path / "missing.bin")
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        nist.read_bits(tmp_path / "empty.bin")


def test_read_bits_image(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rgb = np.random.default_rng(5).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    path = tmp_path / "key.png"
    assert cv2.imwrite(str(path), rgb[..., ::-1])  # cv2 writes BGR
    assert np.array_equal(nist.read_bits(path), np.unpackbits(rgb.reshape(-1)))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(InputError):
        nist.read_bits(bad)

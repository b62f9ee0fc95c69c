"""Hand-computed cases and statistical checks for keras_dkg.analysis.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keras_dkg.analysis import differential, metrics
from keras_dkg.errors import InputError, KeyMaterialError

KEY_SHAPE = (256, 256, 3)


@pytest.fixture(scope="module")
def random_keys():
    rng = np.random.default_rng(20210301)
    return [rng.integers(0, 256, KEY_SHAPE, dtype=np.uint8) for _ in range(2)]


@pytest.fixture(scope="module")
def gradient():
    y, x = np.mgrid[0:128, 0:128]
    return np.stack([x + y, 2 * x, 2 * y], axis=-1).astype(np.uint8)


# --------------------------------------------------------------------------- entropy / histogram


def test_entropy_constant_is_zero():
    assert metrics.entropy(np.full((8, 8, 3), 17, np.uint8)) == 0.0
    assert metrics.entropy_per_channel(np.zeros((4, 4, 3), np.uint8)) == [0.0, 0.0, 0.0]


def test_entropy_of_256_equally_frequent_values_is_8():
    image = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert metrics.entropy(image) == pytest.approx(8.0, abs=1e-12)
    colour = np.stack([image, image[::-1], image.T], axis=-1)
    assert metrics.entropy(colour) == pytest.approx(8.0, abs=1e-12)
    assert metrics.entropy_per_channel(colour) == pytest.approx([8.0, 8.0, 8.0])


def test_entropy_two_values_is_one_bit_and_16_bit_levels():
    assert metrics.entropy(np.array([[0, 255], [255, 0]], np.uint8)) == pytest.approx(1.0)
    wide = np.arange(1024, dtype=np.uint16).reshape(32, 32)
    assert metrics.entropy(wide) == pytest.approx(10.0)
    assert metrics.histogram(wide).size == 65536


def test_random_key_entropy_near_8(random_keys):
    value = metrics.entropy(random_keys[0])
    assert 7.99 < value < 8.0
    assert all(7.99 < v <= 8.0 for v in metrics.entropy_per_channel(random_keys[0]))


def test_histogram_and_chi_square():
    image = np.arange(256, dtype=np.uint8).reshape(16, 16).repeat(4, axis=0)
    counts = metrics.histogram(image)
    assert counts.shape == (256,) and counts.dtype == np.int64
    assert counts.sum() == image.size and (counts == 4).all()
    perfect = metrics.chi_square_uniformity(image)
    assert perfect.statistic == 0.0 and perfect.df == 255 and perfect.p_value == pytest.approx(1.0)
    constant = metrics.chi_square_uniformity(np.zeros((64, 64), np.uint8))
    assert constant.statistic == pytest.approx(255 * 4096) and constant.p_value < 1e-100


def test_random_key_passes_chi_square(random_keys):
    assert metrics.chi_square_uniformity(random_keys[0]).p_value > 0.001


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4), np.int32), np.zeros((0, 3), np.uint8),
                                 np.zeros(5, np.uint8), np.array([["a"]])])
def test_level_metrics_reject_bad_input(bad):
    with pytest.raises(InputError):
        metrics.entropy(bad)


# --------------------------------------------------------------------------- NPCR / UACI


def test_npcr_uaci_identical_is_zero(random_keys):
    assert differential.npcr_uaci(random_keys[0], random_keys[0]) == (0.0, 0.0)


def test_npcr_uaci_hand_example():
    a = np.zeros((2, 2), np.uint8)
    b = np.array([[255, 0], [51, 0]], np.uint8)
    npcr, uaci = differential.npcr_uaci(a, b)
    assert npcr == pytest.approx(50.0)
    assert uaci == pytest.approx(100 * (255 + 51) / 255 / 4)  # 30 %


def test_npcr_uaci_against_inverse(gradient):
    inverse = 255 - gradient
    result = differential.npcr_uaci(gradient, inverse)
    assert result.npcr == 100.0  # 2a == 255 has no integer solution
    expected = 100 * np.mean(np.abs(2 * gradient.astype(int) - 255)) / 255
    assert result.uaci == pytest.approx(expected)


def test_wu_critical_values_match_published_table():
    # Wu, Noonan, Agaian 2011, Tables for 256x256 and 512x512 8-bit images.
    c = differential.npcr_uaci_critical((256, 256), alpha=0.05)
    assert (round(c.npcr_critical, 4), round(c.uaci_lower, 4), round(c.uaci_upper, 4)) == (99.5693, 33.2824, 33.6447)
    c = differential.npcr_uaci_critical((256, 256), alpha=0.001)
    assert (round(c.npcr_critical, 4), round(c.uaci_lower, 4), round(c.uaci_upper, 4)) == (99.5341, 33.1594, 33.7677)
    c = differential.npcr_uaci_critical(512 * 512, alpha=0.01)
    assert round(c.npcr_critical, 4) == 99.5810
    assert c.npcr_mean == pytest.approx(differential.IDEAL_NPCR) == pytest.approx(99.609375)
    assert c.uaci_mean == pytest.approx(differential.IDEAL_UACI) and round(differential.IDEAL_UACI, 4) == 33.4635


def test_wu_critical_rejects_bad_arguments():
    with pytest.raises(InputError):
        differential.npcr_uaci_critical((256, 256), alpha=1.5)
    with pytest.raises(InputError):
        differential.npcr_uaci_critical(0)


def test_independent_random_images_near_ideal(random_keys):
    result = differential.npcr_uaci(*random_keys)
    critical = differential.npcr_uaci_critical(KEY_SHAPE, alpha=0.001)
    assert critical.npcr_pass(result.npcr) and critical.uaci_pass(result.uaci)
    assert result.npcr == pytest.approx(99.61, abs=6 * critical.npcr_std)
    assert result.uaci == pytest.approx(33.46, abs=6 * critical.uaci_std)


def test_npcr_uaci_rejects_mismatch():
    with pytest.raises(InputError, match="shape"):
        differential.npcr_uaci(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(InputError, match="dtype"):
        differential.npcr_uaci(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint16))


# --------------------------------------------------------------------------- similarity


def test_mse_psnr_ssim_hand_and_limits(random_keys, gradient):
    a = np.zeros((2, 2), np.uint8)
    b = np.array([[2, 0], [0, 4]], np.uint8)
    assert metrics.mse(a, b) == pytest.approx((4 + 16) / 4)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 5))
    assert metrics.psnr(gradient, gradient) == math.inf
    assert metrics.ssim(gradient, gradient) == pytest.approx(1.0)
    assert abs(metrics.ssim(*random_keys)) < 0.02
    assert metrics.mse(*random_keys) == pytest.approx(2 * (256**2 - 1) / 12, rel=0.02)  # 2·Var(uniform byte)
    gray = gradient[..., 0]
    assert metrics.ssim(gray, gray) == pytest.approx(1.0)
    assert metrics.ssim(gray[:5, :5], 255 - gray[:5, :5]) < 1.0  # small images use a smaller window
    with pytest.raises(InputError):
        metrics.ssim(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8))


# --------------------------------------------------------------------------- correlation


def test_correlation_of_gradient_is_near_one(gradient):
    for direction, result in metrics.correlations(gradient, pairs=2000).items():
        assert result.direction == direction
        assert result.r > 0.95
        assert result.n_pairs == 2000 and result.x.shape == (2000,) and result.y.shape == (2000,)


def test_correlation_of_random_is_near_zero(random_keys):
    for result in metrics.correlations(random_keys[0]).values():
        assert abs(result.r) < 0.05  # sd ~ 1/sqrt(10000) = 0.01
        assert result.n_pairs == metrics.DEFAULT_PAIRS


def test_correlation_all_pairs_is_exact():
    image = np.random.default_rng(3).integers(0, 256, (9, 11, 2), dtype=np.uint8)
    result = metrics.adjacent_correlation(image, "diagonal", all_pairs=True)
    x = image[:-1, :-1, :].ravel().astype(float)
    y = image[1:, 1:, :].ravel().astype(float)
    assert result.n_pairs == 8 * 10 * 2
    assert result.r == pytest.approx(np.corrcoef(x, y)[0, 1])
    horizontal = metrics.adjacent_correlation(image[..., 0], "horizontal", all_pairs=True)
    assert horizontal.r == pytest.approx(np.corrcoef(image[:, :-1, 0].ravel(), image[:, 1:, 0].ravel())[0, 1])


def test_correlation_sampling_is_seeded_and_clamped():
    image = np.random.default_rng(4).integers(0, 256, (32, 32), dtype=np.uint8)
    one = metrics.adjacent_correlation(image, "vertical", pairs=100, seed=7)
    two = metrics.adjacent_correlation(image, "vertical", pairs=100, seed=7)
    other = metrics.adjacent_correlation(image, "vertical", pairs=100, seed=8)
    assert np.array_equal(one.x, two.x) and one.r == two.r
    assert not np.array_equal(one.x, other.x)
    assert metrics.adjacent_correlation(image, "vertical", pairs=10**6).n_pairs == 31 * 32
    assert one.to_dict()["n_pairs"] == 100 and "x" in one.to_dict(include_pairs=True)


def test_correlation_edge_cases():
    assert math.isnan(metrics.adjacent_correlation(np.zeros((8, 8), np.uint8), all_pairs=True).r)
    assert metrics.adjacent_correlation(np.zeros((8, 8), np.uint8), all_pairs=True).to_dict()["r"] is None
    with pytest.raises(InputError):
        metrics.adjacent_correlation(np.zeros((8, 8), np.uint8), "sideways")
    with pytest.raises(InputError):
        metrics.adjacent_correlation(np.zeros((1, 8), np.uint8))


# --------------------------------------------------------------------------- XOR and differentials


def test_raw_xor_round_trip_and_key_length(random_keys):
    plain = np.arange(64 * 64 * 3, dtype=np.uint16).reshape(64, 64, 3)
    cipher = differential.raw_xor(plain, random_keys[0])
    assert cipher.shape == plain.shape and cipher.dtype == np.dtype("<u2")
    assert np.array_equal(differential.raw_xor(cipher, random_keys[0]), plain)
    big_endian = plain.astype(">u2")
    assert np.array_equal(differential.raw_xor(big_endian, random_keys[0]), cipher)
    with pytest.raises(KeyMaterialError):
        differential.raw_xor(np.zeros((300, 300, 3), np.uint8), random_keys[0])
    with pytest.raises(KeyMaterialError):
        differential.raw_xor(plain, random_keys[0].astype(np.int16))


def test_key_sensitivity_names_the_pair(random_keys):
    report = differential.key_sensitivity(*random_keys)
    assert "key_a vs key_b" in report["compared"]
    assert report["npcr_pass"] and report["uaci_pass"]
    assert report["npcr"] == pytest.approx(differential.npcr_uaci(*random_keys).npcr)


def test_chosen_plaintext_and_ciphertext_reduce_to_key_difference(random_keys, gradient):
    plain = np.zeros(KEY_SHAPE, np.uint8)
    plain[:128, :128] = gradient
    key_a, key_b = random_keys
    # keys that differ in a few bytes only: the paper's "one-pixel seed change" done badly
    key_c = key_a.copy()
    key_c[0, :10, 0] ^= 0xFF
    cpa = differential.chosen_plaintext(plain, key_a, key_c)
    assert "one plaintext, two keys" in cpa["compared"]
    assert cpa["npcr"] == pytest.approx(cpa["key_npcr"]) == pytest.approx(100 * 10 / plain.size)
    assert not cpa["npcr_pass"]
    cca = differential.chosen_ciphertext(differential.raw_xor(plain, key_a), key_a, key_b)
    assert "one ciphertext, two keys" in cca["compared"]
    assert cca["npcr"] == pytest.approx(differential.npcr_uaci(key_a, key_b).npcr)


def test_plaintext_differential_of_xor_changes_one_sample(random_keys, gradient):
    plain = np.zeros(KEY_SHAPE, np.uint8)
    plain[:128, :128] = gradient
    report = differential.plaintext_differential(plain, random_keys[0], index=5)
    assert "same key" in report["compared"]
    assert report["npcr"] == pytest.approx(100 / plain.size) == pytest.approx(report["expected_npcr"])
    assert report["changed"]["index"] == 5 and report["changed"]["to"] == (report["changed"]["from"] + 1) % 256
    assert not report["npcr_pass"]
    seeded = differential.plaintext_differential(plain, random_keys[0], seed=1)
    assert seeded["npcr"] == pytest.approx(100 / plain.size)

"""What plain XOR leaks: known plaintext, key reuse, the mutual-decryption grid."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keras_dkg.analysis import attacks
from keras_dkg.analysis.differential import raw_xor
from keras_dkg.errors import InputError

SHAPE = (256, 256, 3)


@pytest.fixture(scope="module")
def key():
    return np.random.default_rng(11).integers(0, 256, SHAPE, dtype=np.uint8)


def _phantom(shift: int) -> np.ndarray:
    """A medical-looking plaintext: a bright disc on a black background."""
    y, x = np.mgrid[0:256, 0:256]
    inside = (x - 128 - shift) ** 2 + (y - 128) ** 2 < 70**2
    value = np.where(inside, 100 + (x + y + shift) % 120, 0).astype(np.uint8)
    return np.stack([value] * 3, axis=-1)


def test_known_plaintext_recovers_key_and_other_plaintext(key):
    p1, p2 = _phantom(0), _phantom(30)
    recovered = attacks.known_plaintext_attack(p1, raw_xor(p1, key))
    assert recovered.shape == SHAPE and np.array_equal(recovered, key)
    result = attacks.apply_recovered_key(raw_xor(p2, key), recovered, true_plain=p2)
    assert np.array_equal(result.plaintext, p2)
    assert result.exact_share == 1.0 and result.covered_share == 1.0 and math.isinf(result.psnr)
    assert result.to_dict()["psnr_infinite"] is True


def test_partial_known_plaintext_recovers_prefix(key):
    p1, p2 = _phantom(0), _phantom(-20)
    known = p1.size // 4
    recovered = attacks.known_plaintext_attack(p1, raw_xor(p1, key), known_bytes=known)
    assert recovered.shape == (known,) and np.array_equal(recovered, key.reshape(-1)[:known])
    result = attacks.apply_recovered_key(raw_xor(p2, key), recovered, true_plain=p2)
    assert result.covered_share == pytest.approx(0.25)
    assert np.array_equal(result.plaintext.reshape(-1)[:known], p2.reshape(-1)[:known])
    assert 0.25 <= result.exact_share < 0.3


def test_known_plaintext_on_16_bit_images(key):
    plain = (np.arange(128 * 128, dtype=np.uint16) * 7).reshape(128, 128)
    recovered = attacks.known_plaintext_attack(plain, raw_xor(plain, key))
    assert recovered.dtype == np.uint8 and np.array_equal(recovered, key.reshape(-1)[: plain.nbytes])
    other = plain[::-1].copy()
    assert attacks.apply_recovered_key(raw_xor(other, key), recovered, true_plain=other).exact_share == 1.0


def test_known_plaintext_rejects_mismatch():
    with pytest.raises(InputError):
        attacks.known_plaintext_attack(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(InputError):
        attacks.known_plaintext_attack(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), known_bytes=99)


def test_key_reuse_leaks_xor_of_plaintexts(key):
    p1, p2 = _phantom(0), _phantom(40)
    c1, c2 = raw_xor(p1, key), raw_xor(p2, key)
    leak = attacks.key_reuse_leak(c1, c2)
    assert np.array_equal(leak, p1 ^ p2)
    report = attacks.key_reuse_report(c1, c2, p1, p2)
    assert "same key" in report["compared"]
    assert report["leak_equals_p1_xor_p2"] is True
    assert report["leak_correlation"] == pytest.approx(1.0)
    assert report["p1_bytes_recovered_with_known_p2"] == 1.0
    # guessing a black P2 reveals P1 exactly wherever P2 really is background
    background = float(np.mean(p2 == 0))
    assert report["guess_correct_share"] == pytest.approx(background)
    assert report["p1_bytes_recovered_with_guess"] >= background > 0.5


def test_decryption_grid_diagonal_only(key):
    rng = np.random.default_rng(12)
    keys = {"A": key, **{name: rng.integers(0, 256, SHAPE, dtype=np.uint8) for name in "BCD"}}
    grid = attacks.decryption_grid(keys, [_phantom(0), _phantom(25)])
    assert grid.names == ["A", "B", "C", "D"] and grid.n_plaintexts == 2
    assert np.array_equal(np.diag(grid.exact_share), np.ones(4))
    off = grid.exact_share[~np.eye(4, dtype=bool)]
    assert np.allclose(off, 1 / 256, atol=0.001)  # sd ~ sqrt(p(1-p)/N) = 1.4e-4
    assert np.isinf(np.diag(grid.psnr)).all() and (grid.psnr[~np.eye(4, dtype=bool)] < 12).all()
    data = grid.to_dict()
    assert data["psnr"][0][0] is None and data["exact_share"][0][0] == 1.0
    single = attacks.decryption_grid({"A": key, "B": keys["B"]}, _phantom(3))
    assert single.n_plaintexts == 1 and single.exact_share.shape == (2, 2)
    with pytest.raises(InputError):
        attacks.decryption_grid({}, _phantom(0))

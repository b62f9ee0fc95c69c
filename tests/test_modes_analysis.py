"""XOR vs hardened side by side (keras_dkg.analysis.modes, `dkg-analyze modes`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_dkg.analysis import modes
from keras_dkg.analysis.cli import main
from keras_dkg.errors import InputError

pytest.importorskip("cryptography")
pytest.importorskip("pydicom")  # the embedded CT plaintext

SIZE = (256, 256)  # 256×256×3 bytes = 1.57 M key-stream bits: every NIST test has enough data


@pytest.fixture(scope="module")
def plaintexts():
    return modes.default_plaintexts(SIZE)


def structured_key(shape=(*SIZE, 3)) -> np.ndarray:
    """A poor key image (smoothed Gaussian noise around 128), like an untrained or weak generator's."""
    import cv2

    noise = np.random.default_rng(3).normal(0.0, 1.0, shape).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2)
    return np.clip(128 + smooth / smooth.std() * 50, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def comparison(plaintexts):
    p1, p2, _ = plaintexts
    key, _ = modes.default_key(SIZE, seed=0)
    return modes.compare_modes(key, p1, p2, seed=0)


def test_plaintexts_are_the_real_ct_slice(plaintexts):
    p1, p2, labels = plaintexts
    assert p1.shape == (*SIZE, 3) and p1.dtype == np.uint8 and p1.std() > 20
    assert np.array_equal(p2, p1[::-1, ::-1]) and not np.array_equal(p1, p2)
    assert "CT_small.dcm" in labels[0]


def test_both_modes_decrypt_and_keep_the_image_shape(comparison):
    assert comparison["plaintext"] == {"shape": [256, 256, 3], "dtype": "uint8", "bytes": 196608}
    for mode in modes.MODES:
        assert comparison["modes"][mode]["decrypts_bit_exact"]
        assert comparison["modes"][mode]["cipher"] == mode


def test_hardened_key_stream_passes_nist(comparison):
    """Fixed seed (salt, nonce) → a fixed outcome: every applicable test passes by SP 800-22's
    proportion rule, strictly (every p-value ≥ 0.01) all but at most one multi-p-value test."""
    nist = comparison["modes"]["hardened"]["keystream"]["nist"]
    assert nist["bits"] == 8 * 196608
    assert nist["applicable"] >= 13  # the two random-excursion tests depend on the walk's cycle count
    assert nist["judged_passed"] == nist["applicable"]
    assert nist["passed"] >= nist["applicable"] - 1
    names = [t["name"] for t in nist["tests"]]
    assert len(names) == 15 and names[0] == "frequency" and names[-1] == "random_excursions_variant"
    for test in nist["tests"]:
        if test["passed"] is None:
            assert test["note"].startswith("not applicable") and test["min_p"] is None
    hardened = comparison["modes"]["hardened"]["keystream"]
    assert not hardened["equals_key_bytes"] and hardened["entropy"] > 7.998 and hardened["chi_square_p"] > 0.01


def test_known_plaintext_and_key_reuse(comparison):
    xor, hardened = comparison["modes"]["xor"], comparison["modes"]["hardened"]
    # XOR: one (P1, C1) pair is the key; it decrypts C2 completely
    assert xor["keystream"]["equals_key_bytes"]
    assert xor["known_plaintext"]["recovered_key_share"] == 1.0
    assert xor["known_plaintext"]["exact_share"] == 1.0 and xor["known_plaintext"]["psnr_infinite"]
    assert xor["key_reuse"]["equal_share"] == 1.0 and xor["key_reuse"]["leak_equals_p1_xor_p2"]
    assert xor["same_plaintext_identical_share"] == 1.0
    # hardened: chance level (1/256 ≈ 0.4 %)
    assert hardened["known_plaintext"]["recovered_key_share"] <= 0.02
    assert hardened["known_plaintext"]["exact_share"] <= 0.02
    assert hardened["key_reuse"]["equal_share"] <= 0.02 and not hardened["key_reuse"]["leak_equals_p1_xor_p2"]
    assert hardened["same_plaintext_identical_share"] <= 0.02


def test_ciphertext_statistics(comparison):
    for mode in modes.MODES:
        report = comparison["modes"][mode]["ciphertext"]
        assert report["entropy"] > 7.9
        assert report["npcr_uaci"]["npcr"] > 99.0
        assert all(abs(r) < 0.05 for r in report["correlation"].values())


def test_a_poor_key_fails_nist_in_xor_but_not_in_hardened(plaintexts):
    p1, p2, _ = plaintexts
    result = modes.compare_modes(structured_key(), p1, p2, seed=1)
    xor, hardened = result["modes"]["xor"]["keystream"], result["modes"]["hardened"]["keystream"]
    assert xor["nist"]["passed"] <= xor["nist"]["applicable"] // 2 and xor["entropy"] < 7.9
    assert hardened["nist"]["judged_passed"] == hardened["nist"]["applicable"] >= 13
    assert result["modes"]["hardened"]["known_plaintext"]["exact_share"] <= 0.02


def test_fresh_randomness_and_input_checks(plaintexts):
    p1, p2, _ = plaintexts
    key, _ = modes.default_key(SIZE, seed=2)
    one = modes.compare_modes(key, p1, p2, seed=None, nist=False)
    two = modes.compare_modes(key, p1, p2, seed=None, nist=False)
    assert "nist" not in one["modes"]["hardened"]["keystream"]
    assert one["modes"]["xor"]["ciphertext"] == two["modes"]["xor"]["ciphertext"]  # deterministic
    assert one["modes"]["hardened"]["ciphertext"]["npcr_uaci"] != two["modes"]["hardened"]["ciphertext"]["npcr_uaci"]
    with pytest.raises(InputError, match="same image"):
        modes.compare_modes(key, p1, p1.copy())
    with pytest.raises(InputError, match="must match"):
        modes.compare_modes(key, p1, p2[:10])
    with pytest.raises(InputError, match="unknown mode"):
        modes.compare_modes(key, p1, p2, modes=("rot13",))


def test_prepare_plaintext_windows_and_resizes():
    ramp = np.arange(40 * 30, dtype=np.uint16).reshape(40, 30) * 50
    out = modes.prepare_plaintext(ramp, (16, 12))
    assert out.shape == (16, 12, 3) and out.dtype == np.uint8 and out.min() <= 8 and out.max() >= 247
    assert np.array_equal(out[..., 0], out[..., 2])
    rgba = np.zeros((8, 8, 4), np.uint8)
    assert modes.prepare_plaintext(rgba, (8, 8)).shape == (8, 8, 3)


def test_cli_json_and_table(tmp_path, capsys):
    import cv2

    key_path = tmp_path / "key.png"
    key, _ = modes.default_key((64, 64), seed=4)
    cv2.imwrite(str(key_path), cv2.cvtColor(key, cv2.COLOR_RGB2BGR))
    plain = tmp_path / "plain.png"
    cv2.imwrite(str(plain), np.random.default_rng(0).integers(0, 256, (50, 70), dtype=np.uint8))
    assert main(["modes", "--key", str(key_path), "--plain", str(plain), "--no-nist", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["inputs"]["key"] == str(key_path) and result["plaintext"]["shape"] == [64, 64, 3]
    assert result["modes"]["xor"]["known_plaintext"]["exact_share"] == 1.0
    assert main(["modes", "--size", "64", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "NIST frequency" in out and "KPA: P2 bytes recovered from C2" in out and "hardened" in out
    assert "100.00 %" in out
    assert main(["modes", "--key", str(tmp_path / "missing.png")]) == 2
    assert "dkg-analyze: error:" in capsys.readouterr().err

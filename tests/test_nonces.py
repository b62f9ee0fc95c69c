"""Nonce schemes (keras_dkg.runtime.keys.nonces): v1 unchanged, v2 keys as unrelated as a shuffle can make them."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from keras_dkg.errors import InputError
from keras_dkg.runtime.keys import nonces


def _old_v1(seed_uint8: np.ndarray, nonce) -> np.ndarray:
    """The first round's perturbation, written out again: v1 must never change."""
    digest = hashlib.sha256(b"keras_dkg/nonce/v1\x00" + str(nonce).encode("utf-8")).digest()
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(digest, "big")))
    values = seed_uint8.astype(np.int16) + rng.integers(-8, 9, size=seed_uint8.shape, dtype=np.int16)
    values = np.abs(values)
    return np.where(values > 255, 510 - values, values).astype(np.uint8)


def test_v1_is_the_first_rounds_perturbation():
    seed = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    for nonce in ("x", 7, "abc:3"):
        np.testing.assert_array_equal(nonces.perturb_seed(seed, nonce), _old_v1(seed, nonce))
    assert nonces.perturb_seed(seed, None) is seed


def _skewed_key(shape=(64, 64, 3), seed=0) -> np.ndarray:
    """A key with a far-from-uniform histogram, like a trained generator's (bytes pile up at 0 and 255)."""
    rng = np.random.default_rng(seed)
    values = np.clip(rng.normal(128, 90, size=shape), 0, 255)
    return np.rint(values).astype(np.uint8)


def test_v2_keys_agree_like_independent_keys_with_the_same_histogram():
    base = _skewed_key()
    one = nonces.permute_key(base, "n1", "sha256:m", "sha256:s")
    two = nonces.permute_key(base, "n2", "sha256:m", "sha256:s")
    counts = np.bincount(base.reshape(-1), minlength=256) / base.size
    chance = float((counts ** 2).sum())
    n = base.size
    share = float(np.mean(one == two))
    standard_error = math.sqrt(chance * (1 - chance) / n)
    assert abs(share - chance) < 4 * standard_error, (share, chance)
    # v1-like relatedness would be far outside: the base key against itself agrees everywhere
    assert float(np.mean(one == base)) < chance + 4 * standard_error


def test_v2_is_deterministic_keeps_the_histogram_and_depends_on_every_input():
    base = _skewed_key((16, 12, 3))
    key = nonces.permute_key(base, "n", "sha256:m", "sha256:s")
    np.testing.assert_array_equal(key, nonces.permute_key(base, "n", "sha256:m", "sha256:s"))
    assert key.shape == base.shape and key.dtype == np.uint8
    np.testing.assert_array_equal(np.sort(key.reshape(-1)), np.sort(base.reshape(-1)))
    for other in (("n2", "sha256:m", "sha256:s"), ("n", "sha256:m2", "sha256:s"), ("n", "sha256:m", "sha256:s2")):
        assert not np.array_equal(nonces.permute_key(base, *other), key)
    assert nonces.permute_key(base, None, "sha256:m", "sha256:s") is base


def test_v2_moves_differences_without_adding_any():
    """With the same digests and nonce, base keys that differ in k positions give keys that differ in exactly
    k positions. (A real seed change also changes the seed digest and so the whole permutation, which is why
    the Table IV sensitivity is measured on nonce-free keys: see the module docstring.)"""
    base = _skewed_key((16, 16, 3))
    changed = base.copy()
    changed.reshape(-1)[[3, 100, 500]] ^= 0xFF
    a = nonces.permute_key(base, "n", "sha256:m", "sha256:s")
    b = nonces.permute_key(changed, "n", "sha256:m", "sha256:s")
    assert int(np.sum(a != b)) == 3


def test_unknown_scheme_is_refused():
    assert nonces.check_scheme("v2") == "v2"
    with pytest.raises(InputError, match="unknown nonce scheme 'v9'"):
        nonces.check_scheme("v9")


def test_key_generator_uses_v3_by_default_and_keeps_v2_v1_selectable(tiny_onnx_model):
    from keras_dkg.embedded import seed_path
    from keras_dkg.runtime.formats.images import read_image
    from keras_dkg.runtime.keys.generator import KeyGenerator
    from keras_dkg.runtime.keys.preprocess import preprocess_uint8

    v3 = KeyGenerator(tiny_onnx_model, provider="cpu", backend="onnxruntime")
    base = v3.generate(seed_path(), (24, 20))
    for key, nonce in zip(v3.generate_many(seed_path(), (24, 20), ["a", "b"]), ["a", "b"], strict=True):
        assert key.record["nonce_scheme"].startswith("v3:")
        expected = nonces.block_key(base.pixels, (24, 20), nonce, v3.model_sha256, key.record["seed_sha256"])
        np.testing.assert_array_equal(key.pixels, expected)
    v2 = KeyGenerator(tiny_onnx_model, provider="cpu", backend="onnxruntime", nonce_scheme="v2")
    np.testing.assert_array_equal(v2.generate(seed_path(), (24, 20)).pixels, base.pixels)  # nonce-free: G's key
    keys = v2.generate_many(seed_path(), (24, 20), ["a", "b"])
    for key, nonce in zip(keys, ["a", "b"], strict=True):
        assert key.record["nonce_scheme"].startswith("v2:")
        expected = nonces.permute_key(base.pixels, nonce, v2.model_sha256, key.record["seed_sha256"])
        np.testing.assert_array_equal(key.pixels, expected)
    v1 = KeyGenerator(tiny_onnx_model, provider="cpu", backend="onnxruntime", nonce_scheme="v1")
    key = v1.generate(seed_path(), (24, 20), nonce="a")
    assert key.record["nonce_scheme"].startswith("v1:")
    perturbed = nonces.perturb_seed(preprocess_uint8(read_image(seed_path()), (24, 20)), "a")
    np.testing.assert_array_equal(key.pixels, v1.generate(perturbed, (24, 20)).pixels)

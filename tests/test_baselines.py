"""Classical key generators: determinism, shape, known answers, relative quality."""

from __future__ import annotations

import random

import numpy as np
import pytest

from keras_dkg.analysis import baselines, metrics
from keras_dkg.errors import InputError

SMALL = (32, 32, 3)


@pytest.mark.parametrize("method", list(baselines.METHODS))
def test_deterministic_shape_and_dtype(method):
    one = baselines.generate(method, SMALL, seed=5)
    two = baselines.generate(method, SMALL, seed=5)
    other = baselines.generate(method, SMALL, seed=6)
    assert one.shape == SMALL and one.dtype == np.uint8 and one.flags.c_contiguous
    assert np.array_equal(one, two)
    assert not np.array_equal(one, other)
    assert baselines.generate(method, "8x8", seed=5).shape == (8, 8)


@pytest.mark.parametrize("method", ["chaotic", "lcg", "mersenne_twister", "rc4", "csprng"])
def test_unseeded_uses_os_entropy(method):
    assert not np.array_equal(baselines.generate(method, SMALL, None), baselines.generate(method, SMALL, None))


def test_default_shape_is_key_shape():
    key = baselines.generate("mersenne_twister")
    assert key.shape == (256, 256, 3) and key.dtype == np.uint8


def test_rc4_known_answer():
    # RFC 6229 / Wikipedia test vector: key "Key" -> keystream EB9F7781B734CA72A719
    stream = baselines.rc4_bytes(10, key=b"Key")
    assert stream.tobytes().hex().upper() == "EB9F7781B734CA72A719"
    assert baselines.rc4_bytes(6, key=b"Wiki").tobytes().hex().upper() == "6044DB6D41B7"


def test_lcg_known_answer():
    x1 = 1013904223  # a*0 + c
    x2 = (1664525 * x1 + 1013904223) % 2**32
    assert baselines.lcg_bytes(2, seed=0).tolist() == [x1 >> 24, x2 >> 24]


def test_mersenne_twister_is_python_random():
    assert baselines.mersenne_twister_bytes(100, seed=9).tobytes() == random.Random(9).randbytes(100)


def test_rsa_is_textbook_and_decryptable():
    params = baselines.rsa_parameters(seed=3)
    n, e, d, offset = params["n"], params["e"], params["d"], params["offset"]
    assert n == 253 and (e * d) % ((params["p"] - 1) * (params["q"] - 1)) == 1
    stream = baselines.rsa_bytes(600, seed=3).astype(int)
    recovered = [pow(int(c), d, n) for c in stream]
    assert recovered == [(offset + i) % n for i in range(600)]
    assert stream.max() < n  # values n..255 never occur
    small = baselines.rsa_bytes(65 * 40, seed=3, primes=(5, 13))
    assert metrics.entropy(small.reshape(-1, 65)) == pytest.approx(np.log2(65))
    with pytest.raises(InputError):
        baselines.rsa_parameters(primes=(13, 23))  # 299 > 256


def test_rsa_entropy_is_lower_than_csprng():
    rsa = metrics.entropy(baselines.generate("rsa", seed=0))
    ideal = metrics.entropy(baselines.generate("csprng", seed=0))
    assert rsa < ideal - 0.01
    assert ideal > 7.998


def test_good_generators_look_uniform():
    for method in ("chaotic", "lcg", "mersenne_twister", "rc4", "csprng"):
        key = baselines.generate(method, (128, 128, 3), seed=1)
        assert metrics.entropy(key) > 7.99, method
        assert metrics.chi_square_uniformity(key).p_value > 1e-4, method


def test_bad_arguments():
    with pytest.raises(InputError, match="unknown baseline"):
        baselines.generate("quantum")
    with pytest.raises(InputError):
        baselines.generate("lcg", "256x0x3")
    with pytest.raises(InputError):
        baselines.generate("lcg", "big")
    with pytest.raises(InputError):
        baselines.generate("lcg", SMALL, seed=-1)
    assert baselines.parse_shape("256X256x3") == (256, 256, 3)

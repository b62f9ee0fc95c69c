"""The chaotic transformation domains: invertible, entropies within stated tolerances."""

import json

import numpy as np
import pytest

from keras_dkg import embedded
from keras_dkg.analysis.metrics import entropy
from keras_dkg.domains import ChaoticCipher, build_domain, main
from keras_dkg.errors import InputError
from keras_dkg.runtime.keys.preprocess import preprocess_uint8


@pytest.fixture(scope="module")
def slices():
    return [preprocess_uint8(s, 64) for s in embedded.source_slices()[:8]]


@pytest.mark.parametrize("kind", ["chaotic", "chaotic-low"])
def test_cipher_is_invertible_and_keyed(slices, kind):
    cipher = ChaoticCipher(seed=7, kind=kind)
    for index, plain in enumerate(slices[:3]):
        encrypted = cipher.encrypt(plain, index)
        assert encrypted.shape == plain.shape and encrypted.dtype == np.uint8
        np.testing.assert_array_equal(cipher.decrypt(encrypted, index), plain)
    assert not np.array_equal(cipher.encrypt(slices[0], 0), ChaoticCipher(seed=8, kind=kind).encrypt(slices[0], 0))
    assert not np.array_equal(cipher.encrypt(slices[0], 0), cipher.encrypt(slices[0], 1))


def test_high_security_domain_entropy(slices):
    # Tolerance: a uniform byte source of N = 64*64*3 bytes has expected entropy
    # 8 - 255/(2 N ln 2) = 7.985; we accept 0.01 below that.
    cipher = ChaoticCipher(seed=0)
    values = [entropy(cipher.encrypt(p, i)) for i, p in enumerate(slices)]
    assert np.mean(values) > 7.975
    # Diffusion: one changed plaintext byte changes almost every ciphertext byte.
    changed = slices[0].copy()
    changed[0, 0, 0] ^= 1
    differ = np.mean(cipher.encrypt(changed, 0) != cipher.encrypt(slices[0], 0))
    assert differ > 0.99


def test_low_security_domain_keeps_the_anatomy(slices):
    cipher = ChaoticCipher(seed=0, kind="chaotic-low", low_bits=6)
    for index, plain in enumerate(slices):
        encrypted = cipher.encrypt(plain, index)
        # Top two bits pass through unchanged: the contour stays visible.
        np.testing.assert_array_equal(encrypted >> 6, plain >> 6)
        assert 6.0 < entropy(encrypted) < 7.9


def test_build_domain_writes_pngs_and_manifest(tmp_path):
    source = tmp_path / "src"
    embedded.materialize_source(source)
    manifest = build_domain(source, tmp_path / "dom", kind="chaotic", size=32, seed=1)
    assert manifest["count"] == 48
    stored = json.loads((tmp_path / "dom" / "manifest.json").read_text())
    assert stored["mean_entropy"] == manifest["mean_entropy"] > 7.9
    assert len(list((tmp_path / "dom").glob("domain_*.png"))) == 48


def test_cli_and_bad_inputs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "-o", str(tmp_path / "out")]) != 0
    assert "no images found" in capsys.readouterr().err
    with pytest.raises(InputError):
        ChaoticCipher(kind="rot13")

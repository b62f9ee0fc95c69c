"""Key engines (issue 27): onnxruntime and OpenVINO give keys of the right shape, deterministic per
engine and precision; `auto` measures once, caches and says why; an absent engine is one line
naming its extra; nonce scheme v3's permutations come from RFC 8439 ChaCha20 (known answers)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from keras_dkg.embedded import seed_path
from keras_dkg.errors import InputError
from keras_dkg.runtime.ciphers.metadata import key_size_for
from keras_dkg.runtime.ciphers.registry import decrypt_array, encrypt_array
from keras_dkg.runtime.keys import nonces
from keras_dkg.runtime.keys.engines import choice as engine_choice
from keras_dkg.runtime.keys.engines import registry as engines
from keras_dkg.runtime.keys.generator import KeyGenerator

HAS_OPENVINO = engines.OPENVINO in engines.available_backends()
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO is not installed (pip install 'keras-dkg[openvino]')")


def _precisions():
    yield engines.ONNXRUNTIME, engines.FP32
    if HAS_OPENVINO:
        yield engines.OPENVINO, engines.FP32
        if engines.cpu_has_bf16():
            yield engines.OPENVINO, engines.BF16


@pytest.mark.parametrize("backend,precision", list(_precisions()))
def test_every_engine_gives_deterministic_keys_of_the_right_shape(tiny_onnx_model, backend, precision):
    first = KeyGenerator(tiny_onnx_model, backend=backend, precision=precision)
    again = KeyGenerator(tiny_onnx_model, backend=backend, precision=precision)
    keys = [g.generate(seed_path(), (40, 52), nonce="n") for g in (first, again)]
    assert keys[0].pixels.shape == (40, 52, 3) and keys[0].pixels.dtype == np.uint8
    np.testing.assert_array_equal(keys[0].pixels, keys[1].pixels)
    engine = keys[0].record["engine"]
    assert engine["name"] == backend and engine["precision"] == precision and engine["version"]


@needs_openvino
def test_openvino_fp32_keys_match_onnxruntime_keys_almost_everywhere(tiny_onnx_model):
    ort_key = KeyGenerator(tiny_onnx_model, backend="onnxruntime").generate(seed_path(), 64)
    ov_key = KeyGenerator(tiny_onnx_model, backend="openvino", precision="fp32").generate(seed_path(), 64)
    differ = np.abs(ort_key.pixels.astype(int) - ov_key.pixels.astype(int))
    assert differ.max() <= 1 and np.mean(differ > 0) < 0.01  # fp32 in both: rounding at quantisation edges only


@needs_openvino
def test_a_key_made_by_any_engine_decrypts_with_the_stored_key(tiny_onnx_model):
    plain = np.arange(24 * 20, dtype=np.uint16).reshape(24, 20)
    key = KeyGenerator(tiny_onnx_model, backend="openvino").generate(
        seed_path(), key_size_for(plain.shape, plain.dtype), nonce="x")
    ciphertext, meta = encrypt_array(plain, key.pixels, nonce="x")
    np.testing.assert_array_equal(decrypt_array(ciphertext, key.pixels, meta), plain)


def test_an_absent_engine_is_one_line_naming_its_extra(monkeypatch):
    monkeypatch.setitem(engines.ENGINES, engines.OPENVINO, "keras_dkg_no_such_module:Engine")
    with pytest.raises(InputError, match=r"^backend openvino is not installed \(pip install 'keras-dkg\[openvino\]'\)"):
        engines.engine_class(engines.OPENVINO)
    assert engines.OPENVINO not in engines.available_backends()


def test_bf16_is_refused_where_nothing_computes_it(tiny_onnx_model, monkeypatch):
    with pytest.raises(InputError, match="onnxruntime computes the generator in fp32"):
        KeyGenerator(tiny_onnx_model, backend="onnxruntime", precision="bf16")
    monkeypatch.setattr(engines, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(engine_choice, "cpu_has_bf16", lambda: False)
    with pytest.raises(InputError, match="precision bf16"):
        engine_choice.candidates("bf16")
    assert all(precision == "fp32" for _, precision, _ in engine_choice.candidates("auto"))


def test_auto_measures_once_caches_and_says_why(tiny_onnx_model, tmp_path, monkeypatch):
    cache = tmp_path / "engines.json"
    monkeypatch.setenv(engines.CACHE_ENV, str(cache))
    first = KeyGenerator(tiny_onnx_model, backend="auto", precision="fp32")
    assert "measured now" in first.engine_choice and str(cache) in first.engine_choice
    stored = json.loads(cache.read_text())
    (entry,) = stored["choices"].values()
    assert set(entry["ms_per_key_256"]) == {" ".join(c) for c in engine_choice.candidates("fp32")}
    best = min(entry["ms_per_key_256"], key=entry["ms_per_key_256"].get)
    assert entry["choice"] == best.split(" ") and first.engine.info.name == entry["choice"][0]
    second = KeyGenerator(tiny_onnx_model, backend="auto", precision="fp32")
    assert "cached in" in second.engine_choice and "measured now" not in second.engine_choice
    assert second.engine.info == first.engine.info
    assert json.loads(cache.read_text()) == stored  # nothing measured again


def test_keygen_cli_verbose_says_which_engine_and_why(tiny_onnx_model, tmp_path, capsys):
    from keras_dkg.runtime.cli import keygen as keygen_cli

    argv = ["--model", str(tiny_onnx_model), "--seed", str(seed_path()), "-o", str(tmp_path / "k.png"),
            "--size", "32", "--backend", "onnxruntime", "--precision", "fp32", "-v"]
    assert keygen_cli.main(argv) == 0
    err = capsys.readouterr().err
    assert err.startswith("dkg-keygen: backend onnxruntime: onnxruntime ") and "(as asked)" in err
    record = json.loads((tmp_path / "k.json").read_text())
    assert record["engine"]["name"] == "onnxruntime" and record["engine"]["precision"] == "fp32"


# ---- nonce scheme v3 ---------------------------------------------------------------------------

def test_v3_generator_is_rfc8439_chacha20():
    cryptography = pytest.importorskip("cryptography.hazmat.primitives.ciphers")
    digest_key = bytes(range(32))
    from randomgen import ChaCha

    raw = ChaCha(key=int.from_bytes(digest_key, "little"), counter=0, rounds=20).random_raw(8).tobytes()
    stream = cryptography.Cipher(cryptography.algorithms.ChaCha20(digest_key, bytes(16)), mode=None)
    assert raw == stream.encryptor().update(bytes(64))
    # RFC 8439 section 2.3.2's block function with key 00..1f: the test vector's nonce differs, so
    # pin our own known answer (counter 0, zero nonce) as well
    assert raw[:16].hex() == "39fd2b7dd9c5196a8dbd0377b8dc4a49"


def test_v3_permutation_known_answer():
    order = np.arange(10, dtype=np.int32)
    nonces.block_generator("sha256:m", "sha256:s", "n", 0).shuffle(order)
    assert order.tolist() == KNOWN_ORDER


KNOWN_ORDER = [3, 4, 9, 1, 5, 6, 2, 0, 8, 7]  # numpy Generator.shuffle over randomgen ChaCha(20)


def test_v3_blocks_are_permutations_of_the_base_and_cover_every_byte():
    base = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)  # 192 bytes a block
    key = nonces.block_key(base, (20, 12), "n", "sha256:m", "sha256:s")  # 720 bytes: 3 whole blocks + 144
    flat = key.reshape(-1)
    assert key.shape == (20, 12, 3)
    for start in range(0, 576, 192):
        assert sorted(flat[start:start + 192].tolist()) == sorted(base.reshape(-1).tolist())
    order = np.arange(192, dtype=np.int32)
    nonces.block_generator("sha256:m", "sha256:s", "n", 3).shuffle(order)
    np.testing.assert_array_equal(flat[576:], base.reshape(-1)[order[:144]])
    assert not np.array_equal(flat[:192], flat[192:384])


def test_v3_blocks_and_nonces_are_at_chance_relatedness():
    """Equal bytes between blocks of one key, and between two nonces' keys, within 3 SE of chance."""
    base = np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    histogram = np.bincount(base.reshape(-1), minlength=256) / base.size
    chance = float(np.sum(histogram ** 2))
    one = nonces.block_key(base, (64, 64 * 8), "a", "sha256:m", "sha256:s").reshape(8, -1)
    other = nonces.block_key(base, (64, 64 * 8), "b", "sha256:m", "sha256:s").reshape(8, -1)
    pairs = [np.mean(one[i] == one[j]) for i in range(8) for j in range(i + 1, 8)]
    pairs += [np.mean(one[i] == other[i]) for i in range(8)]
    se = math.sqrt(chance * (1 - chance) / one.shape[1])
    assert all(abs(share - chance) < 4 * se for share in pairs)  # each pair alone
    assert abs(np.mean(pairs) - chance) < 3 * se / math.sqrt(len(pairs))  # the mean of (nearly) independent pairs


def test_a_volume_encrypts_with_a_multi_block_v3_key_and_decrypts_bit_exact(tiny_onnx_model, tmp_path):
    nibabel = pytest.importorskip("nibabel")
    from keras_dkg.runtime.cli import encrypt as cipher_cli
    from keras_dkg.runtime.keystore.store import KeyStore

    volume = np.random.default_rng(2).integers(-1000, 3000, (64, 64, 40)).astype(np.int16)
    source = tmp_path / "t1.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), source)
    model, keys = str(tiny_onnx_model), str(tmp_path / "keys")
    assert cipher_cli.encrypt_main([str(source), "-o", str(tmp_path / "t1.enc.nii.gz"), "--model", model,
                                    "--seed", str(seed_path()), "--keys", keys, "--backend", "onnxruntime"]) == 0
    (entry,) = KeyStore(keys).entries()
    key = KeyStore(keys).load(entry["fingerprint"])
    assert key.record["nonce_scheme"].startswith("v3:")
    assert key.record["generation"]["scheme"] == "blocks/1" and key.record["generation"]["blocks"] >= 2
    assert cipher_cli.decrypt_main([str(tmp_path / "t1.enc.nii.gz"), "-o", str(tmp_path / "t1.back.nii.gz"),
                                    "--keys", keys]) == 0
    np.testing.assert_array_equal(np.asanyarray(nibabel.load(tmp_path / "t1.back.nii.gz").dataobj), volume)


@pytest.mark.parametrize("scheme", ["v1", "v2"])
def test_keys_of_older_schemes_in_a_store_still_decrypt(tiny_onnx_model, tmp_path, scheme):
    """Records of v1/v2 keys (no `engine` field, as written before issue 27) load and decrypt."""
    from keras_dkg.runtime.keys.artifact import load_key

    old = KeyGenerator(tiny_onnx_model, nonce_scheme=scheme).generate(seed_path(), (24, 20), nonce="old")
    old.record.pop("engine")  # what the older code wrote
    path = old.save(tmp_path / "old.png")
    plain = np.arange(24 * 20 * 3, dtype=np.uint8).reshape(24, 20, 3)
    ciphertext, meta = encrypt_array(plain, old.pixels, nonce="old")
    key = load_key(path)
    assert key.record["nonce_scheme"].startswith(f"{scheme}:") and "engine" not in key.record
    np.testing.assert_array_equal(decrypt_array(ciphertext, key.pixels, meta), plain)

"""Key generation with onnxruntime: sizes, nonces, records, model validation, dkg-keygen."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_dkg.embedded import seed_path
from keras_dkg.errors import InputError, KeyMaterialError, ModelError, OutputError
from keras_dkg.runtime.ciphers.metadata import fingerprint
from keras_dkg.runtime.cli import keygen as keygen_cli
from keras_dkg.runtime.keys.artifact import load_key
from keras_dkg.runtime.keys.engines.providers import CPU, CUDA, resolve_providers
from keras_dkg.runtime.keys.generator import KeyGenerator
from keras_dkg.runtime.keys.nonces import perturb_seed


@pytest.fixture(scope="module")
def generator(tiny_onnx_model) -> KeyGenerator:
    return KeyGenerator(tiny_onnx_model, provider="cpu", backend="onnxruntime")


def test_default_size_is_the_seeds_own(generator):
    key = generator.generate(seed_path())
    assert key.pixels.shape == (128, 128, 3) and key.pixels.dtype == np.uint8
    assert key.record["fingerprint"] == fingerprint(key.pixels)
    assert key.record["provider"] == CPU
    assert key.record["nonce"] is None


def test_odd_size_is_generated_at_multiple_of_4_then_cropped(generator):
    # the base key (no nonce): what the generator itself makes at the padded size
    odd = generator.generate(seed_path(), size="317x211")
    padded = generator.generate(seed_path(), size=(320, 212))
    assert odd.pixels.shape == (317, 211, 3)
    assert odd.record["generation_size"] == [320, 212]
    assert np.array_equal(odd.pixels, padded.pixels[:317, :211])


def test_nonces_give_distinct_reproducible_keys(generator):
    keys = generator.generate_many(seed_path(), 64, [None, "0", "1", 2])
    prints = {key.fingerprint for key in keys}
    assert len(prints) == 4
    again = generator.generate(seed_path(), 64, nonce="1")
    assert again.fingerprint == keys[2].fingerprint
    # a nonce changes most key bytes, not a handful
    assert np.mean(keys[1].pixels != keys[2].pixels) > 0.5


def test_batched_generation_matches_single(generator):
    nonces = [f"n{i}" for i in range(5)]
    batched = KeyGenerator(generator.model_path, provider="cpu", backend="onnxruntime", batch_size=2).generate_many(seed_path(), 48, nonces)
    for nonce, key in zip(nonces, batched, strict=True):
        single = generator.generate(seed_path(), 48, nonce=nonce)
        assert np.mean(single.pixels != key.pixels) < 0.001


def test_perturbation_is_small_and_in_range():
    seed = np.array([[[0, 255, 128]]], dtype=np.uint8).repeat(500, axis=0)
    perturbed = perturb_seed(seed, "x")
    delta = perturbed.astype(int) - seed
    assert perturbed.dtype == np.uint8 and np.abs(delta).max() <= 8
    assert (perturbed[:, :, 0] >= 0).all() and delta[:, :, 0].min() >= 0 and delta[:, :, 1].max() <= 0
    assert perturb_seed(seed, None) is seed
    assert not np.array_equal(perturb_seed(seed, "y"), perturbed)


def test_key_save_and_load_round_trip(generator, tmp_path):
    key = generator.generate(seed_path(), 32, nonce="s")
    path = key.save(tmp_path / "k.png")
    loaded = load_key(path)
    assert np.array_equal(loaded.pixels, key.pixels) and loaded.record == key.record
    with pytest.raises(OutputError):
        key.save(tmp_path / "k.png")
    path.with_suffix(".json").unlink()
    with pytest.raises(KeyMaterialError, match="record missing"):
        load_key(path)


def test_record_fields(generator):
    record = generator.generate(seed_path(), 16, nonce="r").record
    for field in ("shape", "fingerprint", "model_sha256", "seed_sha256", "nonce", "provider",
                  "package_version", "created", "nonce_scheme"):
        assert record[field] is not None, field
    assert record["model_sha256"].startswith("sha256:") and record["seed_sha256"].startswith("sha256:")


def test_corrupt_model_is_refused_naming_the_file(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07not an onnx model at all")
    with pytest.raises(ModelError, match="broken.onnx"):
        KeyGenerator(bad, provider="cpu")
    with pytest.raises(ModelError, match="missing.onnx"):
        KeyGenerator(tmp_path / "missing.onnx")


def _tiny_graph(tmp_path, name, input_shape, build):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, input_shape)
    graph = helper.make_graph(build(helper, TensorProto), name, [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def test_wrong_input_rank_is_refused(tmp_path):
    path = _tiny_graph(tmp_path, "rank3", ["n", "h", 3], lambda h, t: [h.make_node("Identity", ["x"], ["y"])])
    with pytest.raises(ModelError, match="rank 4"):
        KeyGenerator(path, provider="cpu")


def test_non_finite_output_is_refused(tmp_path):
    def build(helper, types):
        zero = helper.make_node("Constant", [], ["z"], value=helper.make_tensor("zv", types.FLOAT, [], [0.0]))
        return [zero, helper.make_node("Div", ["x", "z"], ["y"])]

    path = _tiny_graph(tmp_path, "nan", ["n", "h", "w", 3], build)
    with pytest.raises(ModelError, match="NaN or infinite"):
        KeyGenerator(path, provider="cpu")


def test_provider_resolution():
    import onnxruntime

    assert resolve_providers("cpu") == [CPU]
    if CUDA in onnxruntime.get_available_providers():
        assert resolve_providers("auto")[0] == CUDA
    else:
        assert resolve_providers("auto") == [CPU]
        with pytest.raises(InputError, match="onnxruntime-gpu"):
            resolve_providers("cuda")
    with pytest.raises(InputError):
        resolve_providers("tpu")


def test_cli_single_and_count(tiny_onnx_model, tmp_path, capsys):
    out = tmp_path / "key.png"
    args = ["--model", str(tiny_onnx_model), "--seed", str(seed_path()), "-o", str(out), "--provider", "cpu"]
    assert keygen_cli.main([*args, "--size", "60x44"]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["shape"] == [60, 44, 3] and load_key(out).fingerprint == record["fingerprint"]
    assert keygen_cli.main(args) == 2
    assert capsys.readouterr().err.startswith("dkg-keygen: error:")
    many = tmp_path / "many.png"
    assert keygen_cli.main([*args[:-4], "-o", str(many), "--count", "3", "--nonce", "batch", "--size", "32"]) == 0
    prints = {load_key(tmp_path / f"many_{i:03d}.png").fingerprint for i in range(3)}
    assert len(prints) == 3
    assert json.loads((tmp_path / "many_001.json").read_text())["nonce"] == "batch:1"

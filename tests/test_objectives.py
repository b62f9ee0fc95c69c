"""The key objectives (keras_dkg.train.losses): each term measures what it claims, and a run with all of
them on trains, logs them and resumes exactly (P's weights and optimizer are checkpointed)."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dkg import fit
from keras_dkg.train import checkpoints
from keras_dkg.train import losses as obj
from keras_dkg.train.model import DeepKeyGen
from keras_dkg.train.networks import build_predictor

TINY = ["--image-size", "32", "--residual-blocks", "1", "--no-progress"]
ALL_ON = ["--sensitivity-weight", "1", "--uniformity-weight", "0.5", "--predictor-weight", "1"]


def _uniform_keys(seed: int, shape=(2, 64, 64, 3)) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, shape), tf.float32)


def test_sensitivity_is_one_for_identical_keys_and_zero_for_independent_ones():
    keys = _uniform_keys(0)
    np.testing.assert_allclose(obj.sensitivity_loss(keys, keys), 1.0, atol=1e-6)
    assert float(tf.reduce_max(obj.sensitivity_loss(keys, _uniform_keys(1)))) < 0.01
    # a level or two of change (what the trained generators do) is nearly as bad as none
    nearby = tf.clip_by_value(keys + _uniform_keys(2) * (2 / 127.5), -1, 1)
    assert float(tf.reduce_min(obj.sensitivity_loss(keys, nearby))) > 0.9
    # the negated key differs a lot on average but is the same key: the correlation part catches it
    assert float(tf.reduce_min(obj.sensitivity_loss(keys, -keys))) > 0.49
    halfway = tf.where(_uniform_keys(3) > 0, keys, _uniform_keys(4))
    assert 0.05 < float(tf.reduce_mean(obj.sensitivity_loss(keys, halfway))) < 0.9


def test_uniformity_is_near_zero_for_uniform_bytes_and_large_for_a_narrow_bell():
    assert float(tf.reduce_max(obj.uniformity_loss(_uniform_keys(0)))) < 0.01
    bell = tf.constant(np.clip(np.random.default_rng(1).normal(0, 0.15, (2, 64, 64, 3)), -1, 1), tf.float32)
    assert float(tf.reduce_min(obj.uniformity_loss(bell))) > 1.0
    histogram = obj.soft_histogram(bell)
    np.testing.assert_allclose(tf.reduce_sum(histogram, axis=1), 1.0, atol=1e-5)
    with tf.GradientTape() as tape:  # differentiable: spreading the bell lowers the loss
        tape.watch(bell)
        loss = tf.reduce_sum(obj.uniformity_loss(bell))
    gradient = tape.gradient(loss, bell).numpy()
    outer = bell.numpy() > 0.2
    assert (gradient[outer] <= 0).mean() > 0.9  # pushing the upper tail further up lowers it


def test_perturbations_and_mask():
    seeds = tf.constant(np.random.default_rng(0).integers(0, 256, (2, 16, 16, 1)).repeat(3, -1) / 127.5 - 1,
                        tf.float32)
    changed = obj.one_pixel_change(seeds, tf.random.stateless_uniform([2, 3], seed=[1, 2])).numpy()
    differs = np.any(changed != seeds.numpy(), axis=-1)
    assert differs.sum(axis=(1, 2)).max() <= 1 and differs.any()
    assert np.all(changed[..., 0] == changed[..., 2])  # still gray
    nonce = obj.nonce_perturbation(seeds, tf.random.stateless_uniform(seeds.shape, seed=[3, 4])).numpy()
    assert np.abs(nonce).max() <= 1 + 1e-6
    levels = (nonce - seeds.numpy()) * 127.5
    inside = np.abs(seeds.numpy()) < 1 - 9 / 127.5  # away from the reflecting ends
    assert np.abs(levels[inside]).max() <= 8 + 1e-3 and np.allclose(levels[inside], np.round(levels[inside]), atol=1e-3)
    mask = obj.hidden_mask(tf.random.stateless_uniform([4, 32, 32, 1], seed=[5, 6])).numpy()
    assert mask.shape == (4, 32, 32, 1) and 0.2 < mask.mean() < 0.3


def test_predictor_learns_a_structured_key_and_gs_term_rewards_its_error():
    keras.utils.set_random_seed(0)
    predictor = build_predictor()
    optimizer = keras.optimizers.Adam(1e-3)
    stripes = np.tile(np.array([-0.8, 0.6], np.float32), (2, 16, 8, 3)).reshape(2, 16, 16, 3)
    keys = tf.constant(stripes)
    errors = []
    for step in range(40):
        mask = obj.hidden_mask(tf.random.stateless_uniform([2, 16, 16, 1], seed=[step, 7]))
        with tf.GradientTape() as tape:
            guesses = predictor(obj.predictor_inputs(keys, mask), training=True)
            error = tf.reduce_mean(obj.predictor_error(guesses, keys, mask))
        optimizer.apply_gradients(zip(tape.gradient(error, predictor.trainable_variables),
                                      predictor.trainable_variables, strict=True))
        errors.append(float(error))
    assert np.mean(errors[-5:]) < 0.3 * np.mean(errors[:5])
    error = tf.constant([0.0, 0.04, 0.2])
    with tf.GradientTape() as tape:
        tape.watch(error)
        term = obj.unpredictability_loss(error)
        total = tf.reduce_sum(term)
    np.testing.assert_allclose(term, [1.0, 1 - 0.04 * 12, 0.0], atol=1e-6)
    gradient = tape.gradient(total, error).numpy()
    assert gradient[0] < 0 and gradient[1] < 0 and gradient[2] == 0  # G gains by making P err, up to chance


def _final_weights(out: Path) -> dict[str, np.ndarray]:
    generator = keras.models.load_model(out / "generator.keras")
    return {f"g_{i:03d}": w for i, w in enumerate(generator.get_weights())}


def test_all_objectives_train_log_and_resume_exactly(tmp_path, monkeypatch, capsys):
    seen = {}
    original = DeepKeyGen.compile

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.update(objectives=self.objectives, p_lr=float(self.p_optimizer.learning_rate))

    monkeypatch.setattr(DeepKeyGen, "compile", spy)
    common = ["--checkpoint-every", "1", *TINY, *ALL_ON]
    assert fit.main(["--steps", "2", "--out", str(tmp_path / "straight"), *common]) == 0
    assert seen["objectives"] == obj.KeyObjectives(1.0, 0.5, 1.0, seed=0) and seen["p_lr"] == pytest.approx(2e-4)
    options = json.loads((tmp_path / "straight" / "run.json").read_text())["options"]
    assert (options["sensitivity_weight"], options["uniformity_weight"], options["predictor_weight"]) == (1, 0.5, 1)
    lines = (tmp_path / "straight" / "logs" / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    assert 0 < last["sensitivity"] <= 1 and last["uniformity"] > 0 and 0 < last["p_error"] and "unpredictability" in last

    assert fit.main(["--steps", "1", "--out", str(tmp_path / "split"), *common]) == 0
    assert (checkpoints.list_checkpoints(tmp_path / "split" / "checkpoints")[-1] / "state.npz").is_file()
    assert fit.main(["--steps", "2", "--out", str(tmp_path / "split"), "--resume", *common,
                     "--predictor-weight", "2"]) != 0
    assert "different settings (predictor_weight)" in capsys.readouterr().err
    assert fit.main(["--steps", "2", "--out", str(tmp_path / "split"), "--resume", *common]) == 0
    straight, split = (_final_weights(tmp_path / name) for name in ("straight", "split"))
    for name, value in straight.items():
        np.testing.assert_array_equal(value, split[name], err_msg=name)


def test_negative_weight_is_refused(tmp_path, capsys):
    assert fit.main(["--out", str(tmp_path / "run"), "--no-progress", "--uniformity-weight", "-1"]) != 0
    assert "--uniformity-weight must be at least 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

"""The key-quality ablations of `python -m keras_dkg.fit`: each does what it claims, defaults change nothing.

tests/data/fit_default_3steps_32px.npz holds the final G and D weights of
`fit --steps 3 --image-size 32 --checkpoint-every 3 --residual-blocks 1` made by the code
before the ablations existed (CPU, TensorFlow 2.21, Keras 3.15). The step that computes
G(x) twice (`reuse_generator_pass=False`, the old step) must still reproduce it exactly;
the default step, which reuses D's G(x) for G's update, the same numbers up to rounding.
"""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dkg import fit
from keras_dkg.train import checkpoints, losses, model, streams
from keras_dkg.train.config import ABLATION_DEFAULTS
from keras_dkg.train.data import ImageFolder, augment_image, augment_parameters, gray_domain
from keras_dkg.train.losses import Stabilizers
from keras_dkg.train.model import DeepKeyGen
from keras_dkg.train.networks import SpectralConv2D, build_discriminator
from keras_dkg.train.step_tf import r1_penalty

REFERENCE = Path(__file__).parent / "data" / "fit_default_3steps_32px.npz"
TINY = ["--image-size", "32", "--residual-blocks", "1", "--no-progress"]
ALL_ON = ["--g-lr", "1e-4", "--d-lr", "4e-4", "--d-history", "3", "--instance-noise", "0.1", "--r1", "1",
          "--d-spectral-norm", "--domain-gray", "--domain-augment"]


def _final_weights(out: Path, spectral_norm: bool = False) -> dict[str, np.ndarray]:
    generator = keras.models.load_model(out / "generator.keras")
    discriminator = build_discriminator(spectral_norm=spectral_norm)
    discriminator.load_weights(checkpoints.list_checkpoints(out / "checkpoints")[-1] / "discriminator.weights.h5")
    return {**{f"g_{i:03d}": w for i, w in enumerate(generator.get_weights())},
            **{f"d_{i:03d}": w for i, w in enumerate(discriminator.get_weights())}}


def _assert_reference(weights: dict, atol: float) -> None:
    with np.load(REFERENCE) as reference:
        assert sorted(reference.files) == sorted(weights)
        for name in reference.files:
            np.testing.assert_allclose(weights[name], reference[name], rtol=0, atol=atol, err_msg=name)


def test_the_old_step_is_bit_identical_to_the_reference(tmp_path, monkeypatch):
    original = DeepKeyGen.compile
    monkeypatch.setattr(DeepKeyGen, "compile", lambda self, *a, **k: original(self, *a, **k, reuse_generator_pass=False))
    out = tmp_path / "run"
    assert fit.main(["--steps", "3", "--checkpoint-every", "3", "--out", str(out), *TINY]) == 0
    # Exact on the machine that made the reference (TF 2.21 CPU); the tolerance only covers another
    # CPU's kernels: any change of what a step does moves weights by far more (~1e-4 after 3 steps).
    _assert_reference(_final_weights(out), atol=1e-6)


def test_default_run_matches_the_reference_and_old_records_resume(tmp_path):
    out = tmp_path / "run"
    assert fit.main(["--steps", "3", "--checkpoint-every", "3", "--out", str(out), *TINY]) == 0
    # G(x) once per step: the same arithmetic in another graph (TensorFlow fuses other kernels), so
    # rounding differs; Adam's m/sqrt(v) magnifies it on weights whose gradient is near 0. Measured:
    # 4.7e-6 after 3 steps on TF 2.21 CPU; a change of what the step does moves weights ~1e-4.
    _assert_reference(_final_weights(out), atol=3e-5)
    record = json.loads((out / "run.json").read_text())
    assert {k: record["options"][k] for k in ABLATION_DEFAULTS} == ABLATION_DEFAULTS
    assert record["options"]["g_learning_rate"] == record["options"]["d_learning_rate"] == 2e-4
    # a run recorded before the ablations existed resumes with the defaults
    for name in [*ABLATION_DEFAULTS, "g_learning_rate", "d_learning_rate"]:
        del record["options"][name]
    (out / "run.json").write_text(json.dumps(record))
    assert fit.main(["--steps", "3", "--checkpoint-every", "3", "--out", str(out), "--resume", *TINY]) == 0


def test_all_options_reach_the_model_and_resume_exactly(tmp_path, monkeypatch, capsys):
    seen = {}
    original = DeepKeyGen.compile

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.update(g_lr=float(self.g_optimizer.learning_rate), d_lr=float(self.d_optimizer.learning_rate),
                    stabilizers=self.stabilizers, pool=self.pool,
                    spectral=[type(layer).__name__ for layer in self.discriminator.layers])
        seen.setdefault("first_d", [w.copy() for w in self.discriminator.get_weights()])

    monkeypatch.setattr(DeepKeyGen, "compile", spy)
    common = ["--checkpoint-every", "2", *TINY, *ALL_ON, "--instance-noise-anneal", "4"]
    assert fit.main(["--steps", "4", "--out", str(tmp_path / "straight"), *common]) == 0
    assert seen["g_lr"] == pytest.approx(1e-4) and seen["d_lr"] == pytest.approx(4e-4)
    assert seen["stabilizers"] == Stabilizers(d_history=3, instance_noise=0.1, noise_anneal_steps=4, r1_gamma=1.0,
                                              seed=0)
    assert seen["pool"].buffer.shape[0] == 3 and seen["spectral"].count("SpectralConv2D") == 5
    options = json.loads((tmp_path / "straight" / "run.json").read_text())["options"]
    assert options | {"d_history": 3, "r1_gamma": 1.0, "d_spectral_norm": True, "domain_gray": True,
                      "domain_augment": True, "instance_noise_anneal": 4} == options
    metrics = [json.loads(line) for line in (tmp_path / "straight" / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 4 and metrics[-1]["r1"] > 0 and "noise_sigma" in metrics[-1]

    assert fit.main(["--steps", "2", "--out", str(tmp_path / "split"), *common]) == 0
    assert (checkpoints.list_checkpoints(tmp_path / "split" / "checkpoints")[-1] / "state.npz").is_file()
    assert fit.main(["--steps", "4", "--out", str(tmp_path / "split"), "--resume", *common, "--r1", "2"]) != 0
    assert "different settings (r1_gamma)" in capsys.readouterr().err
    assert fit.main(["--steps", "4", "--out", str(tmp_path / "split"), "--resume", *common]) == 0
    straight, split = (_final_weights(tmp_path / name, spectral_norm=True) for name in ("straight", "split"))
    for name, value in straight.items():
        np.testing.assert_array_equal(value, split[name], err_msg=name)
    assert any(not np.array_equal(a, straight[f"d_{i:03d}"]) for i, a in enumerate(seen["first_d"])), "D trained"


@pytest.mark.parametrize("args, message", [
    (["--instance-noise-anneal", "5"], "--instance-noise-anneal needs --instance-noise"),
    (["--d-lr", "0"], "--d-lr must be positive"),
    (["--d-history", "-1"], "--d-history must be at least 0"),
    (["--r1", "-1"], "--r1 must be at least 0"),
])
def test_bad_option_values(tmp_path, capsys, args, message):
    assert fit.main(["--out", str(tmp_path / "run"), "--no-progress", *args]) != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def _pool_outputs(seed: int) -> list[float]:
    """What D is given for 12 one-image batches of value 0..11 through a pool of 2."""
    buffer, count, returned = tf.zeros((2, 2, 2, 3)), tf.constant(0, tf.int32), []
    for i in range(12):
        draws = streams.pool_draws(seed, tf.constant(i, tf.int64), 1)
        out, buffer, count = losses.pool_query(tf.fill((1, 2, 2, 3), float(i)), buffer, count, draws)
        returned.append(float(out[0, 0, 0, 0]))
    return returned


def test_image_pool_passes_fakes_until_full_then_returns_old_ones():
    returned = _pool_outputs(seed=0)
    assert returned[:2] == [0.0, 1.0]
    assert all(value <= i for i, value in enumerate(returned)), "only the current or older fakes"
    old = [i for i, value in enumerate(returned) if value < i]
    assert old, "once full, the pool hands back older fakes"
    assert len(old) < len(returned) - 2, "and sometimes the newest one"
    assert returned == _pool_outputs(seed=0), "stateless: the same draws for the same seed"
    assert model.ImagePool(2, (2, 2, 3)).count.value == 0


def _largest_singular_value(kernel) -> float:
    kernel = np.asarray(kernel)
    return float(np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0])


def test_spectral_norm_bounds_the_discriminators_layers():
    keras.utils.set_random_seed(0)
    discriminator = build_discriminator(spectral_norm=True)
    convs = [layer for layer in discriminator.layers if isinstance(layer, SpectralConv2D)]
    assert len(convs) == 5
    images = tf.random.uniform((1, 32, 32, 3), -1, 1, seed=1)
    discriminator(images, training=True)
    for layer in convs:
        layer.kernel.assign(layer.kernel * 50.0)  # raw kernels far above norm 1
    assert min(_largest_singular_value(layer.kernel) for layer in convs) > 5
    for _ in range(20):
        discriminator(images, training=True)
    norms = [_largest_singular_value(layer.normalized_kernel()) for layer in convs]
    assert max(norms) <= 1.05 and min(norms) >= 0.9, norms


def test_r1_is_zero_when_ds_gradient_is_zero_and_positive_otherwise():
    keras.utils.set_random_seed(0)
    discriminator = build_discriminator()
    real = tf.random.uniform((2, 32, 32, 3), -1, 1, seed=2)
    penalty, logits = r1_penalty(discriminator, real)
    assert penalty.shape == (2,) and np.all(penalty.numpy() > 0)
    np.testing.assert_allclose(logits.numpy(), discriminator(real, training=True).numpy(), rtol=1e-6)
    last = discriminator.get_layer("state5_conv")
    last.kernel.assign(tf.zeros_like(last.kernel))  # D(x) = bias: no gradient with respect to x
    penalty, _ = r1_penalty(discriminator, real)
    assert np.all(penalty.numpy() == 0.0)


def test_instance_noise_changes_ds_input_and_anneals_to_zero():
    aids = Stabilizers(instance_noise=0.5, noise_anneal_steps=10, seed=3)
    assert [float(aids.noise_sigma(s)) for s in (0, 5, 10, 20)] == pytest.approx([0.5, 0.25, 0.0, 0.0])
    dkg = DeepKeyGen(num_residual_blocks=1)
    dkg.compile(stabilizers=aids)
    images = tf.zeros((1, 8, 8, 3))
    early = dkg.noisy(images, tf.constant(0, tf.int64), 0).numpy()
    assert early.std() == pytest.approx(0.5, rel=0.3)
    np.testing.assert_array_equal(early, dkg.noisy(images, tf.constant(0, tf.int64), 0).numpy())
    assert not np.array_equal(early, dkg.noisy(images, tf.constant(0, tf.int64), 1).numpy()), "real ≠ fake noise"
    np.testing.assert_array_equal(dkg.noisy(images, tf.constant(10, tf.int64), 0).numpy(), images.numpy())
    dkg.compile()  # off: D's input is the image itself
    assert dkg.noisy(images, tf.constant(0, tf.int64), 0) is images


def test_domain_gray_and_augment():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    gray = gray_domain(ImageFolder(Path("d"), [Path("a")] * 3, pixels)).pixels
    assert np.array_equal(gray[..., 0], pixels[..., 0]) and np.all(gray == gray[..., :1])
    parameters = augment_parameters(50, 3, (8, 8), seed=0)
    assert parameters.shape == (50, 3, 4) and np.array_equal(parameters, augment_parameters(50, 3, (8, 8), seed=0))
    assert np.array_equal(parameters[:20], augment_parameters(20, 3, (8, 8), seed=0)), "rows do not depend on steps"
    assert {tuple(np.unique(parameters[..., k])) for k in (2, 3)} == {(0, 1)}
    changed = 0
    for row in parameters[:10]:
        out = np.stack([augment_image(tf.constant(p), tf.constant(r)).numpy() for p, r in zip(pixels, row, strict=True)])
        for image, original in zip(out, pixels, strict=True):
            assert np.array_equal(np.sort(image, axis=None), np.sort(original, axis=None)), "same bytes, moved"
            changed += not np.array_equal(image, original)
    assert changed > 20
    shift = np.array([[1, 2, 0, 0]], np.int32)
    out = augment_image(tf.constant(pixels[0]), tf.constant(shift[0])).numpy()
    np.testing.assert_array_equal(out, np.roll(pixels[0], (1, 2), axis=(0, 1)))

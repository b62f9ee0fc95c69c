"""The GAN's train_step: both nets learn, losses are finite, LSGAN works, metrics exist."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dkg.train.losses import GANLoss
from keras_dkg.train.model import DeepKeyGen


def _data(size=32, batch=2):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    y = rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    return tf.data.Dataset.from_tensors((x, y)).repeat()


@pytest.mark.parametrize("loss", ["bce", "lsgan"])
def test_train_step_updates_both_networks(loss):
    keras.utils.set_random_seed(0)
    model = DeepKeyGen()
    model.compile(loss=loss)
    g_before = [v.numpy().copy() for v in model.generator.trainable_variables]
    d_before = [v.numpy().copy() for v in model.discriminator.trainable_variables]
    history = model.fit(_data(), steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    for name in ("g_loss", "d_loss", "d_acc_real", "d_acc_fake"):
        assert np.isfinite(history.history[name][-1]), name
    assert 0.0 <= history.history["d_acc_real"][-1] <= 1.0
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(g_before, model.generator.trainable_variables, strict=True))
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(d_before, model.discriminator.trainable_variables, strict=True))
    assert int(model.g_optimizer.iterations.numpy()) == 2
    assert int(model.d_optimizer.iterations.numpy()) == 2


def test_default_optimizer_is_the_papers_adam():
    model = DeepKeyGen()
    model.compile()
    for optimizer in (model.g_optimizer, model.d_optimizer):
        assert isinstance(optimizer, keras.optimizers.Adam)
        assert float(optimizer.learning_rate.numpy()) == pytest.approx(2e-4)
        assert optimizer.beta_1 == 0.5 and optimizer.beta_2 == 0.999


def test_bce_losses_match_hand_computation():
    loss = GANLoss("bce")
    logits = tf.zeros((1, 2, 2, 1))  # D(y) = 0.5 everywhere
    assert float(loss.discriminator(logits, logits)[0]) == pytest.approx(2 * np.log(2), rel=1e-6)
    assert float(loss.generator(logits)[0]) == pytest.approx(np.log(2), rel=1e-6)
    assert float(GANLoss("lsgan").generator(logits)[0]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        GANLoss("wgan")

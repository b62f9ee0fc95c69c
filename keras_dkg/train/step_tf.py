"""The TensorFlow train step (`DeepKeyGen.train_step`, run per replica by `strategy.run` under `tf.distribute`).

One G forward pass per step, on a tape kept open for the whole step: D's and P's updates
run with that tape's recording stopped, then G's loss is taken from the updated D on the
same keys and G's gradient comes back through the pass already made (model.py says why
that is the same step). Losses are averaged with `tf.nn.compute_average_loss`, so the
gradients summed across a strategy's replicas equal one device's on the global batch.
"""

from __future__ import annotations

import tensorflow as tf

from keras_dkg.train import losses, streams


def _pool(model, fakes, step):
    """The image pool's batch for D, its variables updated."""
    pool = model.pool
    draws = streams.pool_draws(model.stabilizers.seed, step, fakes.shape[0])
    batch, buffer, count = losses.pool_query(fakes, pool.buffer.value, pool.count.value, draws)
    pool.buffer.assign(buffer)
    pool.count.assign(count)
    return batch


def r1_penalty(discriminator, real):
    """Per-example R1 at the real images and D(real), so D runs once on the reals.

    Differentiable again: the caller's tape takes its gradient with respect to D's weights.
    """
    with tf.GradientTape() as input_tape:
        input_tape.watch(real)
        logits = discriminator(real, training=True)
        total = tf.reduce_sum(logits)
    return losses.r1_per_example(input_tape.gradient(total, real)), logits


def _update_discriminator(model, generated, target, step) -> dict:
    """Eq. (3) (+ R1) on `generated` (no gradient to G), applied to D; the per-example values."""
    aids = model.stabilizers
    fakes = generated if model.pool is None else _pool(model, generated, step)
    real = model.noisy(target, step, streams.NOISE_REAL)
    with tf.GradientTape() as d_tape:
        if aids.r1_gamma:
            r1, real_logits = r1_penalty(model.discriminator, real)
        else:
            real_logits = model.discriminator(real, training=True)
        fake_logits = model.discriminator(model.noisy(fakes, step, streams.NOISE_FAKE), training=True)
        d_per_example = model.gan_loss.discriminator(real_logits, fake_logits)
        if aids.r1_gamma:
            d_per_example = d_per_example + 0.5 * aids.r1_gamma * r1
        d_loss = tf.nn.compute_average_loss(d_per_example)
    d_vars = model.discriminator.trainable_variables
    model.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars, strict=True))
    values = {"d_loss": d_per_example, **model.gan_loss.accuracies(real_logits, fake_logits)}
    if aids.r1_gamma:
        values["r1"] = r1
    return values


def _update_predictor(model, generated, step):
    """P's update on this step's (pre-update) keys; returns the mask and P's per-example error."""
    mask = model.predictor_mask(generated, step)
    with tf.GradientTape() as p_tape:
        guesses = model.predictor(losses.predictor_inputs(generated, mask), training=True)
        p_error = losses.predictor_error(guesses, generated, mask)
        p_loss = tf.nn.compute_average_loss(p_error)
    p_vars = model.predictor.trainable_variables
    model.p_optimizer.apply_gradients(zip(p_tape.gradient(p_loss, p_vars), p_vars, strict=True))
    return mask, p_error


def train_step(model, data) -> dict:
    """D's update, then (P's and) G's, on one batch (source seeds, domain images)."""
    source, target = data
    goals = model.objectives
    step = tf.identity(model.d_optimizer.iterations)
    # a static batch size: slicing G's output at a tensor-valued size makes Grappler's remapper fail
    # on the gradient graph (it logs an error on every run); per-replica batches are static here
    batch = source.shape[0] if source.shape[0] is not None else tf.shape(source)[0]
    inputs = model.generator_inputs(source, step)
    values: dict = {}
    with tf.GradientTape() as g_tape:
        if model.reuse_generator_pass:
            keys = model.generator(inputs, training=True)
            generated = tf.stop_gradient(keys[:batch])
        else:
            with g_tape.stop_recording():
                generated = model.generator(source, training=True)
        with g_tape.stop_recording():
            values.update(_update_discriminator(model, generated, target, step))
            if model.predictor is not None:
                mask, values["p_error"] = _update_predictor(model, generated, step)
        if not model.reuse_generator_pass:
            keys = model.generator(inputs, training=True)
        fake = keys[:batch]
        adversarial = model.gan_loss.generator(model.discriminator(model.noisy(fake, step, streams.NOISE_G),
                                                                   training=True))
        guesses = None
        if model.predictor is not None:
            guesses = model.predictor(losses.predictor_inputs(fake, mask), training=True)
        terms = losses.key_terms(goals, keys, batch, guesses, None if guesses is None else mask)
        g_loss = tf.nn.compute_average_loss(losses.weighted_total(goals, adversarial, terms))
    g_vars = model.generator.trainable_variables
    model.g_optimizer.apply_gradients(zip(g_tape.gradient(g_loss, g_vars), g_vars, strict=True))

    values.update(terms, g_loss=adversarial)
    if model.stabilizers.instance_noise:
        values["noise_sigma"] = model.stabilizers.noise_sigma(step)
    for name, metric in model.tracked.items():
        metric.update_state(values[name])
    return {name: metric.result() for name, metric in model.tracked.items()}

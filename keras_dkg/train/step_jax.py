"""The JAX train step: the TensorFlow step's update (step_tf) as one pure, jitted function.

Keras 3's stateless API carries the state: `stateless_call` runs a network on given
variable values (returning its updated non-trainables, e.g. spectral norm's vector u),
`optimizer.stateless_apply` returns new weights and slots. G runs once per step:
`jax.vjp` keeps its pass, D (and P) update, and G's gradient is pulled back through the
kept pass from the gradient of G's loss under the updated D. The batches are gathered on
the device from the training images held there, so a step moves only its indices.

Data parallel over local devices (`keras.distribution.DataParallel`): the state is
replicated, the batch split on its first axis, and the losses are means over the global
batch, so the gradients are those of one device with the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import keras

from keras_dkg.train import losses, streams
from keras_dkg.train.data import batch_from


@dataclass
class Parts:
    """Which variable lists make up the step's state, in the order of `state_of`."""

    model: object

    def groups(self) -> dict[str, list]:
        m = self.model
        groups = {"g": m.generator.trainable_variables, "g_nt": m.generator.non_trainable_variables,
                  "d": m.discriminator.trainable_variables, "d_nt": m.discriminator.non_trainable_variables,
                  "g_opt": m.g_optimizer.variables, "d_opt": m.d_optimizer.variables}
        if m.pool is not None:
            groups["pool"] = m.pool.variables
        if m.predictor is not None:
            groups.update(p=m.predictor.trainable_variables, p_nt=m.predictor.non_trainable_variables,
                          p_opt=m.p_optimizer.variables)
        return groups


def state_of(model) -> dict[str, list]:
    """The model's current variable values as the step's state."""
    return {name: [v.value for v in variables] for name, variables in Parts(model).groups().items()}


def write_back(model, state: dict[str, list]) -> None:
    """Put a state's values into the model's variables (for checkpoints, sample keys, saving)."""
    for name, variables in Parts(model).groups().items():
        for variable, value in zip(variables, state[name], strict=True):
            variable.assign(value)


def make_step(model, augment: bool):
    """A jitted `step(state, source_pixels, domain_pixels, source_idx, domain_idx, params, step)`.

    Returns (new state, per-step metrics): the batch means of the values `model.metric_names`
    lists, the same numbers the TensorFlow step's metrics report.
    """
    generator, discriminator, predictor = model.generator, model.discriminator, model.predictor
    gan, aids, goals = model.gan_loss, model.stabilizers, model.objectives
    reuse = model.reuse_generator_pass

    noisy = model.noisy
    def run_generator(g_vars, g_nt, images):
        return generator.stateless_call(g_vars, g_nt, images, training=True)

    def d_loss(d_vars, d_nt, real, fakes):
        if aids.r1_gamma:
            def patch_sum(images):
                logits, nt = discriminator.stateless_call(d_vars, d_nt, images, training=True)
                return jnp.sum(logits), (logits, nt)
            input_gradients, (real_logits, d_nt) = jax.grad(patch_sum, has_aux=True)(real)
            r1 = losses.r1_per_example(input_gradients)
        else:
            real_logits, d_nt = discriminator.stateless_call(d_vars, d_nt, real, training=True)
        fake_logits, d_nt = discriminator.stateless_call(d_vars, d_nt, fakes, training=True)
        per_example = gan.discriminator(real_logits, fake_logits)
        values = {"d_loss": per_example, **gan.accuracies(real_logits, fake_logits)}
        if aids.r1_gamma:
            per_example = per_example + 0.5 * aids.r1_gamma * r1
            values.update(d_loss=per_example, r1=r1)
        return jnp.mean(per_example), (values, d_nt)

    def p_loss(p_vars, p_nt, keys, mask):
        guesses, p_nt = predictor.stateless_call(p_vars, p_nt, losses.predictor_inputs(keys, mask), training=True)
        error = losses.predictor_error(guesses, keys, mask)
        return jnp.mean(error), (error, p_nt)

    def g_loss(keys, d_vars, d_nt, p_vars, p_nt, mask, step, batch):
        logits, d_nt = discriminator.stateless_call(d_vars, d_nt, noisy(keys[:batch], step, streams.NOISE_G),
                                                    training=True)
        adversarial = gan.generator(logits)
        guesses = None
        if predictor is not None:
            guesses, p_nt = predictor.stateless_call(p_vars, p_nt, losses.predictor_inputs(keys[:batch], mask),
                                                     training=True)
        terms = losses.key_terms(goals, keys, batch, guesses, mask)
        total = losses.weighted_total(goals, adversarial, terms)
        return jnp.mean(total), ({"g_loss": adversarial, **terms}, d_nt, p_nt)

    def step_fn(state, source_pixels, domain_pixels, source_idx, domain_idx, params, step):
        state = dict(state)
        source = batch_from(source_pixels, source_idx)
        target = batch_from(domain_pixels, domain_idx, params if augment else None)
        batch = source.shape[0]
        inputs = model.generator_inputs(source, step)
        if reuse:
            keys, pull_back, g_nt = jax.vjp(lambda v: run_generator(v, state["g_nt"], inputs), state["g"],
                                            has_aux=True)
            generated = jax.lax.stop_gradient(keys[:batch])
        else:
            generated, _ = run_generator(state["g"], state["g_nt"], source)
        fakes = generated
        if model.pool is not None:
            buffer, count = state["pool"]
            draws = streams.pool_draws(aids.seed, step, batch)
            fakes, buffer, count = losses.pool_query(generated, buffer, count, draws)
            state["pool"] = [buffer, count]
        real = noisy(target, step, streams.NOISE_REAL)
        (_, (values, d_nt)), d_grads = jax.value_and_grad(d_loss, has_aux=True)(
            state["d"], state["d_nt"], real, noisy(fakes, step, streams.NOISE_FAKE))
        state["d"], state["d_opt"] = model.d_optimizer.stateless_apply(state["d_opt"], d_grads, state["d"])
        mask = p_vars = p_nt = None
        if predictor is not None:
            mask = model.predictor_mask(generated, step)
            (_, (values["p_error"], p_nt)), p_grads = jax.value_and_grad(p_loss, has_aux=True)(
                state["p"], state["p_nt"], generated, mask)
            p_vars, state["p_opt"] = model.p_optimizer.stateless_apply(state["p_opt"], p_grads, state["p"])
            state["p"] = p_vars
        if reuse:
            (_, (g_values, d_nt, p_nt)), key_grads = jax.value_and_grad(g_loss, has_aux=True)(
                keys, state["d"], d_nt, p_vars, p_nt, mask, step, batch)
            (g_grads,) = pull_back(key_grads)
        else:
            def g_from_weights(g_vars):
                keys, g_nt = run_generator(g_vars, state["g_nt"], inputs)
                loss, aux = g_loss(keys, state["d"], d_nt, p_vars, p_nt, mask, step, batch)
                return loss, (*aux, g_nt)
            (_, (g_values, d_nt, p_nt, g_nt)), g_grads = jax.value_and_grad(g_from_weights, has_aux=True)(state["g"])
        state["g"], state["g_opt"] = model.g_optimizer.stateless_apply(state["g_opt"], g_grads, state["g"])
        state["g_nt"], state["d_nt"] = g_nt, d_nt
        if predictor is not None:
            state["p_nt"] = p_nt
        values.update(g_values)
        if aids.instance_noise:
            values["noise_sigma"] = aids.noise_sigma(step)
        metrics = {name: jnp.mean(values[name]) for name in model.metric_names}
        return state, metrics

    return jax.jit(step_fn, donate_argnums=(0,))


def data_parallel():
    """`keras.distribution.DataParallel` over the local devices, or None on one device."""
    devices = jax.local_devices()
    if len(devices) < 2:
        return None
    return keras.distribution.DataParallel(devices=devices)

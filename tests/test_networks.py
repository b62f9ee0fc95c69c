"""Generator/discriminator shapes and parameter counts against the paper's tables."""

from pathlib import Path

import keras
import numpy as np
import pytest

from keras_dkg.train import architecture
from keras_dkg.train.networks import build_discriminator, build_generator


@pytest.fixture(scope="module")
def nets():
    keras.utils.set_random_seed(0)
    return build_generator(), build_discriminator()


@pytest.mark.parametrize("shape", [(32, 32), (64, 48), (100, 100), (36, 200)])
def test_fully_convolutional_shapes(nets, shape):
    generator, discriminator = nets
    x = np.random.default_rng(0).uniform(-1, 1, (2, *shape, 3)).astype("float32")
    y = np.asarray(generator(x))
    assert y.shape == x.shape
    assert np.all(np.abs(y) <= 1.0)
    patches = np.asarray(discriminator(x))
    assert patches.shape == (2, -(-shape[0] // 8), -(-shape[1] // 8), 1)


def test_parameter_counts_per_layer(nets):
    tables = architecture.parameter_table(*nets)
    generator_rows = {r.paper_row.split()[0] + r.paper_row.split()[1]: r for r in tables["generator"]}
    # Every non-residual row matches the paper's kernel count exactly.
    for row in tables["generator"]:
        if not row.paper_row.startswith("Residual"):
            assert row.our_kernel_params == row.paper_params, row
    # Residual blocks: the paper counts one conv per block, we (and ResNet) have two.
    assert generator_rows["Residualblock"].our_kernel_params == 2 * generator_rows["Residualblock"].paper_params
    assert sum(r.our_kernel_params for r in tables["generator"]) == 493_152
    assert sum(r.our_all_params for r in tables["generator"]) == nets[0].count_params() == 495_011
    # The paper's reported G total is its row sum minus the last row (a typo in Table I).
    assert sum(r.paper_params for r in tables["generator"]) - 2352 == architecture.PAPER_GENERATOR_TOTAL
    for row in tables["discriminator"][:4]:
        assert row.our_kernel_params == row.paper_params
    assert sum(r.our_kernel_params for r in tables["discriminator"]) == 174_848
    assert sum(r.our_all_params for r in tables["discriminator"]) == nets[1].count_params()
    assert "493152" in architecture.format_table(tables)


@pytest.mark.parametrize("blocks", [3, 6, 9, 12])
def test_attack_networks_come_from_the_same_builder(blocks):
    generator = build_generator(blocks)
    residual_convs = [layer for layer in generator.layers if layer.name.startswith("res") and layer.name.endswith(("conv1", "conv2"))]
    assert len(residual_convs) == 2 * blocks


def test_layers_are_initialised_independently():
    keras.utils.set_random_seed(3)
    generator = build_generator()
    first = generator.get_layer("res1_conv1").kernel.numpy()
    second = generator.get_layer("res2_conv1").kernel.numpy()
    assert not np.array_equal(first, second)
    assert abs(float(first.std()) - 0.02) < 0.002


def test_generator_is_repeatable_under_a_seed():
    keras.utils.set_random_seed(5)
    a = build_generator().get_weights()
    keras.utils.set_random_seed(5)
    b = build_generator().get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_save_and_load_round_trip(tmp_path, nets):
    generator = nets[0]
    path = tmp_path / "g.keras"
    generator.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(generator(x)), atol=1e-6)


def test_a_keras_file_from_before_the_train_package_still_loads():
    """Made by keras_dkg/networks.py before it moved to keras_dkg/train/ (1 residual block):
    the registered layer names are unchanged, so the old file loads and computes the same key."""
    data = Path(__file__).parent / "data"
    loaded = keras.models.load_model(data / "generator_1block_before_train_package.keras")
    with np.load(data / "generator_1block_before_train_package.npz") as expected:
        np.testing.assert_allclose(np.asarray(loaded(expected["x"])), expected["y"], rtol=0, atol=1e-6)

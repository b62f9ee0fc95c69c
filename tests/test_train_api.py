"""The training library: `TrainConfig` (validation, recipes, run.json round trip) and `train()`."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from keras_dkg.errors import TrainingError
from keras_dkg.train import TrainConfig, TrainResult, train
from keras_dkg.train.config import ABLATION_DEFAULTS, RESUME_FIELDS

TINY = {"image_size": 32, "residual_blocks": 1, "steps": 2, "checkpoint_every": 2}


@pytest.mark.parametrize("changes, message", [
    ({"image_size": 30}, "--image-size 30 must be a multiple of 4 and at least 16"),
    ({"steps": 0}, "--steps must be at least 1"),
    ({"learning_rate": 0.0}, "--lr must be positive"),
    ({"d_learning_rate": -1.0}, "--d-lr must be positive"),
    ({"r1_gamma": -1.0}, "--r1 must be at least 0"),
    ({"instance_noise_anneal": 5}, "--instance-noise-anneal needs --instance-noise"),
    ({"loss": "wgan"}, "--loss 'wgan' is not one of bce, lsgan"),
    ({"backend": "torch"}, "--backend 'torch' is not one of tensorflow, jax"),
    ({"recipe": "best"}, "--recipe 'best' is not a recipe"),
])
def test_invalid_configs_are_refused_with_the_flag_named(changes, message):
    with pytest.raises(TrainingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**changes)


def test_defaults_are_the_papers_and_resolve_on_construction(tmp_path):
    config = TrainConfig()
    assert (config.learning_rate, config.beta_1, config.beta_2, config.loss, config.image_size, config.steps,
            config.batch_size) == (2e-4, 0.5, 0.999, "bce", 256, 20000, 1)
    assert config.g_learning_rate == config.d_learning_rate == 2e-4 and config.domain_kind == "chaotic"
    assert TrainConfig(domain=str(tmp_path)).domain_kind is None
    noisy = TrainConfig(instance_noise=0.1, steps=50)
    assert noisy.instance_noise_anneal == 50
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 3  # type: ignore[misc]


def test_recipes_and_overrides():
    recommended = TrainConfig.from_recipe("recommended", steps=10)
    assert recommended.recipe == "recommended" and recommended.uniformity_weight == 1.0
    assert recommended.recipe_overrides == {}
    changed = TrainConfig.from_recipe("recommended", uniformity_weight=0.5, r1_gamma=2.0)
    assert changed.recipe_overrides == {"uniformity_weight": 0.5, "r1_gamma": 2.0}
    assert TrainConfig.from_recipe("paper") == TrainConfig()
    with pytest.raises(TrainingError, match="unknown TrainConfig fields: learning_rat"):
        TrainConfig.from_recipe("paper", learning_rat=1e-3)


def test_options_round_trip_and_resume_fields(tmp_path):
    config = TrainConfig.from_recipe("recommended", out=str(tmp_path / "r"), source=str(tmp_path), d_history=4,
                                     instance_noise=0.2, **TINY)
    options = json.loads(json.dumps(config.options()))  # what run.json holds
    assert "out" not in options and options["source"] == str(tmp_path.resolve())
    again = TrainConfig.from_options(options, out=str(tmp_path / "r"))
    assert again == config and again.options() == options
    assert again.resume_mismatches(options) == []
    assert config.replace(seed=3).resume_mismatches(options) == ["seed"]
    paper = TrainConfig(**TINY)
    assert paper.resume_mismatches(paper.options() | {"uniformity_weight": 1.0}) == ["uniformity_weight"]
    assert set(RESUME_FIELDS) <= set(paper.options())
    record = paper.options()
    old = {k: v for k, v in record.items() if k not in (*ABLATION_DEFAULTS, "g_learning_rate", "d_learning_rate")}
    assert paper.resume_mismatches(old) == [], "a run.json from before the ablations resumes as the paper's"
    assert TrainConfig.from_options(old) == TrainConfig.from_options(record)


def test_train_returns_its_result_and_raises_instead_of_exiting(tmp_path):
    config = TrainConfig(out=str(tmp_path / "run"), **TINY)
    result = train(config)
    assert isinstance(result, TrainResult)
    assert result.step == result.steps_this_session == 2 and result.generator.is_file()
    assert set(result.losses) == {"g_loss", "d_loss", "d_acc_real", "d_acc_fake"}
    assert result.wall_seconds > 0 and result.steps_per_second and result.steps_per_second > 0
    record = json.loads(result.run_json.read_text())
    assert record["summary"]["steps_done"] == 2 and record["options"] == config.options()
    assert record["versions"]["backend"] == "tensorflow"
    with pytest.raises(TrainingError, match="already holds a run"):
        train(config)
    resumed = train(config.replace(steps=3, resume=True))
    assert (resumed.step, resumed.steps_this_session) == (3, 1)


NO_TENSORFLOW = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'tf2onnx', 'tensorboard'):
            raise ModuleNotFoundError('blocked: ' + name, name=name)
sys.meta_path.insert(0, Block())
sys.argv = ['keras_dkg.fit', *sys.argv[1:]]
runpy.run_module('keras_dkg.fit', run_name='__main__')
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed (the dev extra has it)")
def test_a_tensorflow_run_resumes_on_jax_without_tensorflow(tmp_path):
    """`python -m keras_dkg.fit --backend jax` with TensorFlow unimportable (the lent GPU image has
    none) continues a TensorFlow run: checkpoints are backend-neutral (h5 weights, npz slots)."""
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), **TINY))
    done = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, "--backend", "jax", "--resume", "--out", str(out),
                           "--image-size", "32", "--residual-blocks", "1", "--steps", "4", "--checkpoint-every", "2",
                           "--no-progress"], env={**os.environ, "KERAS_BACKEND": "jax"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done: 4 steps" in done.stdout
    record = json.loads((out / "run.json").read_text())
    assert record["versions"]["backend"] == "jax" and record["summary"]["steps_done"] == 4
    assert record["summary"]["steps_this_session"] == 2 and "tensorflow" not in record["versions"]

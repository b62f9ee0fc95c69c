"""`python -m keras_dkg.fit --recipe paper|recommended`: what each resolves to, overrides, resume.

Tiny runs (32², one residual block, 2–3 steps): they test the mechanics, not key quality
(docs/key_quality.md, "Recipes", has the measurements behind `recommended`).
"""

import argparse
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_dkg import fit
from keras_dkg.train import checkpoints, model, recipes
from keras_dkg.train.config import ABLATION_DEFAULTS, RESUME_FIELDS
from keras_dkg.train.networks import build_discriminator

REFERENCE = Path(__file__).parent / "data" / "fit_default_3steps_32px.npz"  # see tests/test_fit_options.py
TINY = ["--image-size", "32", "--residual-blocks", "1", "--no-progress"]
LOGGED = {"r1": "r1", "sensitivity_weight": "sensitivity", "uniformity_weight": "uniformity",
          "predictor_weight": "p_error"}  # recipe option -> the metric a run logs when it is on


def _resolved(argv: list[str], recorded: str | None = None) -> tuple[dict, dict]:
    args = fit.build_parser().parse_args(argv)
    if recorded:  # what a run folder's run.json names
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(json.dumps({"options": {"recipe": recorded}}))
        args.resume = True
    options = fit.config_from(args).options()
    return options, {"recipe": options["recipe"], "recipe_overrides": options["recipe_overrides"]}


def _final_weights(out: Path) -> dict[str, np.ndarray]:
    generator = keras.models.load_model(out / "generator.keras")
    discriminator = build_discriminator()
    discriminator.load_weights(checkpoints.list_checkpoints(out / "checkpoints")[-1] / "discriminator.weights.h5")
    return {**{f"g_{i:03d}": w for i, w in enumerate(generator.get_weights())},
            **{f"d_{i:03d}": w for i, w in enumerate(discriminator.get_weights())}}


def test_paper_recipe_is_the_papers_training():
    assert recipes.DEFAULT == "paper" and recipes.RECIPES["paper"] == {}
    paper = recipes.PAPER
    assert (paper["lr"], paper["beta1"], paper["beta2"]) == (model.LEARNING_RATE, model.BETA_1, model.BETA_2)
    options, recipe = _resolved([])
    assert recipe == {"recipe": "paper", "recipe_overrides": {}}
    assert options == _resolved(["--recipe", "paper"])[0]
    assert {k: options[k] for k in ABLATION_DEFAULTS} == ABLATION_DEFAULTS
    assert (options["loss"], options["residual_blocks"], options["g_learning_rate"], options["d_learning_rate"]) == (
        "bce", 6, 2e-4, 2e-4)


def test_every_recipe_option_is_unset_unless_given():
    """A parser default would count as an explicit flag and silently beat the recipe."""
    actions = {a.dest: a for a in fit.build_parser()._actions}
    assert set(recipes.PAPER) <= set(actions)
    assert [d for d in recipes.PAPER if actions[d].default is not argparse.SUPPRESS] == []
    for name in recipes.RECIPES:
        assert set(recipes.recipe_values(name)) == set(recipes.PAPER)


def test_recipe_paper_is_bit_identical_to_no_recipe(tmp_path):
    runs = {"default": [], "paper": ["--recipe", "paper"]}
    weights = {}
    for name, extra in runs.items():
        out = tmp_path / name
        assert fit.main(["--steps", "3", "--checkpoint-every", "3", "--out", str(out), *TINY, *extra]) == 0
        weights[name] = _final_weights(out)
        assert json.loads((out / "run.json").read_text())["options"]["recipe"] == "paper"
    assert sorted(weights["default"]) == sorted(weights["paper"])
    for key, value in weights["default"].items():
        np.testing.assert_array_equal(value, weights["paper"][key], err_msg=key)
    with np.load(REFERENCE) as reference:  # and both are the code before recipes existed (tolerance: test_fit_options)
        for key in reference.files:
            np.testing.assert_allclose(weights["paper"][key], reference[key], rtol=0, atol=3e-5, err_msg=key)


def test_explicit_flags_override_the_recipe(tmp_path):
    values = recipes.recipe_values("recommended")
    assert values != recipes.PAPER, "recommended must change something"
    options, recipe = _resolved(["--recipe", "recommended"])
    assert recipe == {"recipe": "recommended", "recipe_overrides": {}}
    assert options["r1_gamma"] == values["r1"]
    assert options["domain_augment"] is values["domain_augment"]
    assert options["d_learning_rate"] == (values["d_lr"] or values["lr"])
    same_name = ("d_history", "instance_noise", "sensitivity_weight", "uniformity_weight", "predictor_weight")
    assert {k: options[k] for k in same_name} == {k: values[k] for k in same_name}
    flip = "--domain-augment" if not values["domain_augment"] else "--no-domain-augment"
    options, recipe = _resolved(["--recipe", "recommended", "--r1", "7", flip])
    assert options["r1_gamma"] == 7.0 and options["domain_augment"] is not values["domain_augment"]
    assert recipe["recipe_overrides"] == {"r1_gamma": 7.0, "domain_augment": not values["domain_augment"]}
    # a flag equal to the recipe's value is no override; a resumed run's recorded recipe applies
    assert _resolved(["--r1", str(values["r1"]), "--out", str(tmp_path / "old")], recorded="recommended")[1] == {
        "recipe": "recommended", "recipe_overrides": {}}


def test_recommended_run_records_its_recipe_and_resumes_without_repeating_it(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--checkpoint-every", "2", "--out", str(out), *TINY]
    assert fit.main(["--steps", "2", "--recipe", "recommended", *common]) == 0
    expected, _ = _resolved(["--steps", "2", "--recipe", "recommended", *common])
    options = json.loads((out / "run.json").read_text())["options"]
    assert options["recipe"] == "recommended" and options["recipe_overrides"] == {"residual_blocks": 1}
    assert {k: options[k] for k in RESUME_FIELDS} == {k: expected[k] for k in RESUME_FIELDS}
    values = recipes.recipe_values("recommended")
    metrics = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    for dest, logged in LOGGED.items():  # each term the recipe switches on reached the model
        assert (logged in metrics[-1]) == bool(values[dest]), (dest, metrics[-1])
    r1 = values["r1"]

    capsys.readouterr()
    assert fit.main(["--steps", "3", "--resume", "--recipe", "paper", *common]) != 0
    assert "--resume with different settings" in capsys.readouterr().err
    assert fit.main(["--steps", "3", "--resume", "--r1", str(r1 + 1), *common]) != 0
    assert "different settings (r1_gamma)" in capsys.readouterr().err
    assert fit.main(["--steps", "3", "--resume", *common]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["summary"]["steps_done"] == 3
    assert record["options"]["recipe"] == "recommended" and record["options"]["r1_gamma"] == r1


@pytest.mark.parametrize("argv", [["--recipe", "best"], ["--recipe", ""]])
def test_unknown_recipe_is_one_error_line(tmp_path, capfd, argv):
    out = tmp_path / "run"
    assert fit.main([*argv, "--out", str(out), *TINY]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("keras_dkg.fit: error: --recipe ") and "choose from paper, recommended" in err
    assert not out.exists()

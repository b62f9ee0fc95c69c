"""Training recipes of `python -m keras_dkg.fit --recipe NAME`: named sets of option values.

``paper`` is Ding et al.'s training exactly (Sec. IV) and stays the default, so a
reproduction needs no flag. ``recommended`` is the combination that measured best on key
quality (docs/key_quality.md, "Recipes"); change it here and nowhere else. A flag given on
the command line always wins over its recipe's value. No TensorFlow here: docs and tools
read the recipes without the training stack.
"""

from __future__ import annotations

from keras_dkg.errors import TrainingError

#: Every option a recipe may set (argparse dest -> the paper's value). keras_dkg.train.model's
#: LEARNING_RATE / BETA_1 / BETA_2 equal these (tests/test_recipes.py checks it).
PAPER: dict[str, object] = {
    "lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "loss": "bce", "residual_blocks": 6,
    "g_lr": None, "d_lr": None, "d_history": 0, "instance_noise": 0.0, "instance_noise_anneal": None,
    "r1": 0.0, "d_spectral_norm": False, "domain_gray": False, "domain_augment": False,
    "sensitivity_weight": 0.0, "uniformity_weight": 0.0, "predictor_weight": 0.0, "upsample": "transpose",
}
#: recipe name -> the options it changes from PAPER. recommended: of the candidates measured
#: at 128², 1,000 steps (--r1 1, --domain-augment, --d-lr 5e-5, --uniformity-weight 1,
#: --predictor-weight 1, uniformity + predictor) only the uniformity term raised the key
#: entropy without losing most of the key sensitivity (docs/key_quality.md, "Recipes");
#: --upsample resize then kept that entropy, raised the one-pixel NPCR, lowered the nonce
#: keys' relatedness and the period-2/4 spectral peaks (docs/key_quality.md, "Upsampling").
RECIPES: dict[str, dict[str, object]] = {
    "paper": {},
    "recommended": {"uniformity_weight": 1.0, "upsample": "resize"},
}
DEFAULT = "paper"


def recipe_values(name: str) -> dict[str, object]:
    """Every recipe option's value under recipe `name`."""
    if name not in RECIPES:
        raise TrainingError(f"--recipe {name!r} is not a recipe; choose from {', '.join(RECIPES)}")
    unknown = set(RECIPES[name]) - set(PAPER)
    if unknown:  # a programming error in RECIPES, caught by the tests
        raise TrainingError(f"recipe {name!r} sets unknown options {sorted(unknown)}")
    return {**PAPER, **RECIPES[name]}

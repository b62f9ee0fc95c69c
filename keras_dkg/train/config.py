"""`TrainConfig`: every setting of one training, validated once, recorded in run.json.

The library and the CLI share it: `python -m keras_dkg.fit` turns its flags into a
TrainConfig; a script builds one directly (`TrainConfig.from_recipe("recommended",
out="runs/x", steps=500)`). The recorded part (`options()`, what run.json's "options"
holds) round-trips through `from_options`; `RESUME_FIELDS` are those a `--resume` must
match. No Keras or TensorFlow here: docs and tools read configs without the stack.
Error texts name the CLI flags, the documented interface.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path

from keras_dkg.errors import TrainingError
from keras_dkg.train import recipes

LOSS_KINDS = ("bce", "lsgan")
#: How G doubles resolution twice (networks.build_generator): "transpose", the paper's stride-2
#: transposed 3×3 convolutions, or "resize", nearest ×2 then a 3×3 convolution (Odena et al.
#: 2016's checkerboard fix: every output pixel sees all kernel taps, so no stride-2 overlap
#: pattern can imprint a period-2/4 structure). Same weight count either way.
UPSAMPLE_KINDS = ("transpose", "resize")
BACKENDS = ("tensorflow", "jax")
DOMAIN_KINDS = ("chaotic", "chaotic-low")
#: Options that must match for --resume to continue the same run.
RESUME_FIELDS = ("image_size", "batch_size", "seed", "loss", "learning_rate", "beta_1", "beta_2",
                 "residual_blocks", "domain_kind", "source", "domain", "g_learning_rate", "d_learning_rate",
                 "d_history", "instance_noise", "instance_noise_anneal", "r1_gamma", "d_spectral_norm",
                 "domain_gray", "domain_augment", "sensitivity_weight", "uniformity_weight", "predictor_weight",
                 "upsample")
#: What a run recorded before the key-quality ablations existed used (docs/key_quality.md).
ABLATION_DEFAULTS = {"d_history": 0, "instance_noise": 0.0, "instance_noise_anneal": None, "r1_gamma": 0.0,
                     "d_spectral_norm": False, "domain_gray": False, "domain_augment": False,
                     "sensitivity_weight": 0.0, "uniformity_weight": 0.0, "predictor_weight": 0.0,
                     "upsample": "transpose"}
#: recipe option (the CLI's argparse dest) -> TrainConfig field, where the names differ
RECIPE_FIELDS = {"lr": "learning_rate", "beta1": "beta_1", "beta2": "beta_2", "r1": "r1_gamma",
                 "g_lr": "g_learning_rate", "d_lr": "d_learning_rate"}
#: fields that say how to run, not what to train: not in run.json's options
RUN_FIELDS = ("out", "resume", "log_every", "progress")


@dataclass(frozen=True)
class TrainConfig:
    """One training. Defaults are the paper's (Sec. IV) at the paper's size and step count.

    `source=None` trains on the embedded slices; with neither `domain` nor `domain_kind`
    the chaotic domain is built from the source. `g_learning_rate`/`d_learning_rate`
    None mean `learning_rate`; `instance_noise_anneal` None means `steps`. Both are
    resolved on construction, so a config always holds what the run uses.
    """

    out: str = "runs/dkg"
    source: str | None = None
    domain: str | None = None
    domain_kind: str | None = None
    domain_seed: int = 0
    seed_image: str | None = None
    image_size: int = 256
    steps: int = 20000
    batch_size: int = 1
    learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    loss: str = "bce"
    residual_blocks: int = 6
    seed: int = 0
    jit_compile: bool = False
    checkpoint_every: int = 500
    g_learning_rate: float | None = None
    d_learning_rate: float | None = None
    d_history: int = 0
    instance_noise: float = 0.0
    instance_noise_anneal: int | None = None
    r1_gamma: float = 0.0
    d_spectral_norm: bool = False
    domain_gray: bool = False
    domain_augment: bool = False
    sensitivity_weight: float = 0.0
    uniformity_weight: float = 0.0
    predictor_weight: float = 0.0
    upsample: str = "transpose"
    recipe: str = recipes.DEFAULT
    recipe_overrides: dict = field(default_factory=dict)
    backend: str = "tensorflow"
    resume: bool = False
    log_every: int = 10
    progress: bool = False

    def __post_init__(self) -> None:
        if self.instance_noise_anneal is not None and not self.instance_noise:
            raise TrainingError("--instance-noise-anneal needs --instance-noise SIGMA > 0")
        resolved = {
            "source": str(Path(self.source).resolve()) if self.source not in (None, "embedded") else None,
            "domain": str(Path(self.domain).resolve()) if self.domain else None,
            "domain_kind": None if self.domain else (self.domain_kind or "chaotic"),
            "g_learning_rate": self.learning_rate if self.g_learning_rate is None else self.g_learning_rate,
            "d_learning_rate": self.learning_rate if self.d_learning_rate is None else self.d_learning_rate,
            "instance_noise_anneal": (None if not self.instance_noise else
                                      self.steps if self.instance_noise_anneal is None else self.instance_noise_anneal),
        }
        for name, value in resolved.items():
            object.__setattr__(self, name, value)
        self._validate()

    def _validate(self) -> None:
        if self.image_size < 16 or self.image_size % 4:
            raise TrainingError(f"--image-size {self.image_size} must be a multiple of 4 and at least 16")
        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "residual_blocks"):
            if getattr(self, name) < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for flag, name in (("--lr", "learning_rate"), ("--g-lr", "g_learning_rate"), ("--d-lr", "d_learning_rate")):
            if not getattr(self, name) > 0:
                raise TrainingError(f"{flag} must be positive, got {getattr(self, name)}")
        for flag, name in (("--d-history", "d_history"), ("--instance-noise", "instance_noise"), ("--r1", "r1_gamma"),
                           ("--sensitivity-weight", "sensitivity_weight"), ("--uniformity-weight", "uniformity_weight"),
                           ("--predictor-weight", "predictor_weight")):
            if not getattr(self, name) >= 0:
                raise TrainingError(f"{flag} must be at least 0, got {getattr(self, name)}")
        if self.instance_noise_anneal is not None and self.instance_noise_anneal < 1:
            raise TrainingError(f"--instance-noise-anneal must be at least 1, got {self.instance_noise_anneal}")
        for flag, value, allowed in (("--loss", self.loss, LOSS_KINDS), ("--backend", self.backend, BACKENDS),
                                     ("--upsample", self.upsample, UPSAMPLE_KINDS),
                                     ("--domain-kind", self.domain_kind, (None, *DOMAIN_KINDS))):
            if value not in allowed:
                raise TrainingError(f"{flag} {value!r} is not one of {', '.join(str(a) for a in allowed if a)}")
        if self.recipe not in recipes.RECIPES:
            raise TrainingError(f"--recipe {self.recipe!r} is not a recipe; choose from {', '.join(recipes.RECIPES)}")

    @classmethod
    def from_recipe(cls, name: str = recipes.DEFAULT, **settings) -> TrainConfig:
        """Recipe `name`'s values, then `settings` (TrainConfig fields) on top; overrides recorded."""
        values = {RECIPE_FIELDS.get(k, k): v for k, v in recipes.recipe_values(name).items()}
        unknown = set(settings) - {f.name for f in fields(cls)}
        if unknown:
            raise TrainingError(f"unknown TrainConfig fields: {', '.join(sorted(unknown))}")
        overrides = {k: v for k, v in settings.items() if k in values and values[k] != v}
        return cls(**{**values, **settings, "recipe": name, "recipe_overrides": overrides})

    def options(self) -> dict:
        """What run.json records under "options" (everything but how to run it)."""
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in RUN_FIELDS}
        record["source"] = self.source or "embedded"
        record["recipe_overrides"] = dict(self.recipe_overrides)
        return record

    @classmethod
    def from_options(cls, options: dict, **run) -> TrainConfig:
        """The config a run.json "options" record describes (older records: the ablations off)."""
        names = {f.name for f in fields(cls)} - set(RUN_FIELDS)
        known = {k: v for k, v in {**ABLATION_DEFAULTS, **options}.items() if k in names}
        if known.get("source") == "embedded":
            known["source"] = None
        return cls(**known, **run)

    def replace(self, **changes) -> TrainConfig:
        """A copy with `changes` (validated again)."""
        return dataclasses.replace(self, **changes)

    def resume_mismatches(self, recorded: dict) -> list[str]:
        """The RESUME_FIELDS where a recorded run's options differ from this config."""
        legacy = {**ABLATION_DEFAULTS, "g_learning_rate": recorded.get("learning_rate"),
                  "d_learning_rate": recorded.get("learning_rate")}
        mine = self.options()
        return [k for k in RESUME_FIELDS if recorded.get(k, legacy.get(k)) != mine[k]]

"""Run profiles of `tools/reproduce_paper.py`: how big each experiment is.

``full`` is the paper's setting (Section IV: 256², batch 1, Adam 2e-4/0.5/0.999, 20,000
steps, four independent trainings; Table XXI: lr × batch size × 10k…30k steps) and wants
a GPU. ``quick`` fits in about half an hour on two CPU cores by shrinking images, steps
and the hyper-parameter grid; ``tiny`` exists for the test suite (minutes) and says
nothing about key quality. Every reduction is listed in ``Profile.reductions`` and
printed in the report's header.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from keras_dkg.errors import InputError

#: The paper's Table XXI rows (training "epochs", i.e. steps) and their share of 20,000.
PAPER_GRID_EPOCHS = (10000, 15000, 20000, 25000, 30000)
PAPER_STEPS = 20000
#: variant of network A's training -> (fit recipe, TrainConfig fields on top of it)
VARIANTS: dict[str, tuple[str, dict]] = {
    "recommended": ("recommended", {}),
    "unif3": ("recommended", {"uniformity_weight": 3.0}),
}


@dataclass(frozen=True)
class Profile:
    """Sizes of one reproduction run (all trainings share image size, steps and batch)."""

    name: str
    image_size: int  # training, key and plaintext size (paper: 256)
    steps: int  # steps per training (paper: 20,000 "epochs" of batch 1)
    batch_size: int  # paper: 1
    checkpoint_every: int
    otp_runs: int  # independent trainings with seeds 0..n-1 (paper: 4)
    attack_blocks: tuple[int, ...]  # Table XVI residual blocks (paper: 3, 6, 9, 12)
    leak_domains: tuple[str, ...]  # other domains for the structure-leak attack ("low", "high_seed1")
    grid_lrs: tuple[float, ...]  # Table XXI learning rates (paper: 0.02, 0.002, 0.0002)
    grid_batch_sizes: tuple[int, ...]  # Table XXI batch sizes (paper: 1, 6, 10)
    grid_rows: tuple[tuple[int, int], ...]  # (our steps, the paper row it stands for)
    plaintexts: int = 8  # per modality (paper: 8)
    correlation_pairs: int = 256  # the paper's N per direction; we also report all pairs
    timing_repeats: int = 5
    # extra trainings of network A under these variants (VARIANTS: a fit recipe of
    # keras_dkg/train/recipes.py, maybe with flags), beside the paper-faithful run in Tables
    # III, IV, XVII and XVIII; "unif3" shows the uniformity weight's trade-off
    recipes: tuple[str, ...] = ("recommended", "unif3")
    # Keras backend of the trainings: "tensorflow" in-process, "jax" through `fit --backend
    # jax` in a subprocess, "auto": jax when a GPU is visible to JAX, else tensorflow
    backend: str = "tensorflow"
    reductions: tuple[str, ...] = ()
    description: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def key_bytes(self) -> int:
        return self.image_size * self.image_size * 3


PROFILES: dict[str, Profile] = {
    "full": Profile(
        name="full", image_size=256, steps=PAPER_STEPS, batch_size=1, checkpoint_every=1000,
        otp_runs=4, attack_blocks=(3, 6, 9, 12), leak_domains=("low", "high_seed1"),
        grid_lrs=(0.02, 0.002, 0.0002), grid_batch_sizes=(1, 6, 10),
        grid_rows=tuple((e, e) for e in PAPER_GRID_EPOCHS),
        description="the paper's settings: 256², batch 1, 20,000 steps, 4 independent trainings, "
                    "full Table XXI grid (GPU advised: 9 + 9 trainings)",
    ),
    "quick": Profile(
        name="quick", image_size=64, steps=400, batch_size=1, checkpoint_every=200,
        otp_runs=4, attack_blocks=(3, 6, 9, 12), leak_domains=("low", "high_seed1"),
        grid_lrs=(0.02, 0.002, 0.0002), grid_batch_sizes=(1, 6),
        grid_rows=((100, 10000), (200, 20000), (300, 30000)),
        reductions=(
            "images, keys and plaintexts 64x64 instead of 256x256 (entropy and NPCR/UACI depend on "
            "the sample count: compare with the ideal for 64x64x3 given beside them)",
            "400 training steps instead of 20,000",
            "Table XXI: batch sizes 1 and 6 only (no 10), 3 rows (100/200/300 steps standing for "
            "10k/20k/30k) instead of 5",
        ),
        description="CPU, about 30 minutes on 2 cores: 64², 400 steps, reduced Table XXI grid",
    ),
    "tiny": Profile(
        name="tiny", image_size=32, steps=4, batch_size=1, checkpoint_every=2,
        otp_runs=2, attack_blocks=(3, 6), leak_domains=("low",),
        grid_lrs=(0.0002,), grid_batch_sizes=(1,),
        grid_rows=((2, 10000), (4, 20000)),
        plaintexts=8, timing_repeats=2,
        reductions=(
            "TEST PROFILE: 32x32 images, 4 training steps — the generators are essentially "
            "untrained; these numbers test the pipeline, not DeepKeyGen",
            "2 independent trainings instead of 4; attack networks with 3 and 6 blocks only; "
            "structure leak against the low-security domain only",
            "Table XXI: lr 0.0002, batch 1, 2 rows",
        ),
        description="pipeline test (CI): 32², 4 steps per training",
    ),
}


PROFILES["paper"] = replace(
    PROFILES["full"], name="paper", backend="auto",
    description="the paper's settings (as --full): every training at 256², 20,000 steps, through fit on JAX when "
                "a GPU is visible to JAX, else TensorFlow on the CPU (days)")

#: Measured training speeds, steps/s at batch 1 (docs/gpu.md, docs/key_quality.md): (backend, size) -> rate.
#: Only for the wall-time estimate printed before a run starts.
STEPS_PER_SECOND = {("jax", 256): 110.0, ("jax", 128): 250.0, ("jax", 64): 280.0,
                    ("tensorflow", 256): 3.5, ("tensorflow", 128): 6.0, ("tensorflow", 64): 17.0,
                    ("tensorflow", 32): 25.0, ("jax", 32): 280.0}


def scaled(profile: Profile, image_size: int | None = None, steps: int | None = None) -> Profile:
    """`profile` at another size and step count (a test or smoke run of a big profile): the
    Table XXI rows and the checkpoint interval shrink with the steps; recorded as a reduction."""
    if image_size is None and steps is None:
        return profile
    steps = steps or profile.steps
    ratio = steps / profile.steps

    def shrink(n: int) -> int:
        return max(1, round(n * ratio))

    note = f"overridden: {image_size or profile.image_size}², {steps} steps (profile {profile.name}: " \
           f"{profile.image_size}², {profile.steps})"
    return replace(profile, image_size=image_size or profile.image_size, steps=steps,
                   checkpoint_every=shrink(profile.checkpoint_every),
                   grid_rows=tuple((shrink(s), paper) for s, paper in profile.grid_rows),
                   reductions=(*profile.reductions, note))


def training_steps(profile: Profile) -> int:
    """Optimizer steps × batch size over every training of the profile (the main runs and the Table XXI grid)."""
    main = len(training_runs(profile)) * profile.steps * profile.batch_size
    longest = max(s for s, _ in profile.grid_rows)
    return main + sum(longest * b for _ in profile.grid_lrs for b in profile.grid_batch_sizes)


def expected_seconds(profile: Profile, backend: str) -> float:
    """A rough wall time of the trainings on `backend` (the nearest measured size's speed)."""
    sizes = sorted({size for b, size in STEPS_PER_SECOND if b == backend})
    nearest = min(sizes, key=lambda size: abs(size - profile.image_size))
    rate = STEPS_PER_SECOND[(backend, nearest)] * (nearest / profile.image_size) ** 2 if profile.image_size > nearest \
        else STEPS_PER_SECOND[(backend, nearest)]
    return training_steps(profile) / rate


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise InputError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}") from None


def training_runs(profile: Profile) -> dict[str, dict]:
    """Every training of the main experiment: name -> fit settings (domain by name).

    ``otp_<i>``: the paper's network (6 blocks) on the high-security domain with training
    seed i (one-time-pad claim, Fig. 5/10). ``otp_0`` is "network A", the key generator
    of every other table. ``blocks_<b>``: attack networks of Table XVI on the same domain.
    ``leak_<domain>``: the same network on another domain (structure leakage, Fig. 9);
    ``leak_low`` is also Sec. V-C's low-security generator. Attack runs keep every other
    setting of ``otp_0``, including its training seed. ``recipe_<name>``: network A's
    training under fit recipe <name> (the others use the paper's, ``--recipe paper``).
    """
    runs: dict[str, dict] = {}
    for seed in range(profile.otp_runs):
        runs[f"otp_{seed}"] = {"blocks": 6, "domain": "high", "seed": seed}
    for variant in profile.recipes:
        recipe, overrides = VARIANTS[variant]
        runs[recipe_run(variant)] = {"blocks": 6, "domain": "high", "seed": 0, "recipe": recipe,
                                     "overrides": dict(overrides)}
    for blocks in profile.attack_blocks:
        if blocks != 6:
            runs[f"blocks_{blocks}"] = {"blocks": blocks, "domain": "high", "seed": 0}
    for domain in profile.leak_domains:
        runs[f"leak_{domain}"] = {"blocks": 6, "domain": domain, "seed": 0}
    return runs


def variant_flags(variant: str) -> str:
    """The `fit` flags of a variant, e.g. "--recipe recommended --uniformity-weight 3"."""
    recipe, overrides = VARIANTS[variant]
    return " ".join([f"--recipe {recipe}", *(f"--{k.replace('_', '-')} {v:g}" for k, v in overrides.items())])


def recipe_run(recipe: str) -> str:
    """Name of the run that trained network A under fit recipe `recipe`."""
    return f"recipe_{recipe}"


def block_run(blocks: int) -> str:
    """Name of the run that trained the network with `blocks` residual blocks."""
    return "otp_0" if blocks == 6 else f"blocks_{blocks}"


def grid_name(lr: float, batch_size: int) -> str:
    return f"lr{lr:g}_bs{batch_size}"

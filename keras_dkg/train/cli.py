"""`python -m keras_dkg.fit` / `dkg-fit`: train DeepKeyGen end to end (a thin shell over `train`).

With no `--source` it trains on the embedded data (keras_dkg.embedded); with neither
`--domain` nor `--domain-kind` it builds the high-security chaotic domain from the source
images itself. The run folder gets `run.json` (every resolved option, written first,
completed at the end), `checkpoints/`, `logs/` (metrics.jsonl; TensorBoard under
TensorFlow), `samples/` keys from a held-back seed, and finally `generator.keras`.
Flags become a `TrainConfig`; Keras loads only after they are checked.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from argparse import SUPPRESS
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_dkg.common import quiet
from keras_dkg.errors import InputError, run_cli
from keras_dkg.options import add_output, add_random_seed
from keras_dkg.train import recipes, runfolder
from keras_dkg.train.config import BACKENDS, LOSS_KINDS, RECIPE_FIELDS, UPSAMPLE_KINDS, TrainConfig


def _paper(dest: str) -> str:
    """Help suffix: a recipe option has no argparse default (unset means "the recipe's")."""
    return f" (paper: {recipes.PAPER[dest]})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m keras_dkg.fit", description="Train the DeepKeyGen generator (paper eqs. 1-3).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--source", help="folder of source (seed-domain) images; default: the embedded brain EPI slices")
    group = data.add_mutually_exclusive_group()
    group.add_argument("--domain", help="folder of transformation-domain images (built at the training size)")
    group.add_argument("--domain-kind", choices=("chaotic", "chaotic-low"),
                       help="build this chaotic domain from the source images (default: chaotic)")
    data.add_argument("--domain-seed", type=int, default=0, help="master seed of the chaotic domain cipher")
    data.add_argument("--seed-image", help="held-back image for sample keys; default: embedded CT slice")
    train = parser.add_argument_group("training")
    train.add_argument("--image-size", type=int, default=256, help="square training size, multiple of 4 (paper: 256)")
    train.add_argument("--steps", type=int, default=20000, help="training steps (paper: 20000)")
    train.add_argument("--batch-size", type=int, default=1, help="global batch size (paper: 1)")
    train.add_argument("--recipe", default=SUPPRESS, metavar="|".join(recipes.RECIPES),
                       help="named option values (keras_dkg/train/recipes.py; docs/key_quality.md); explicit flags win. "
                            f"Default: {recipes.DEFAULT}, or with --resume the recipe the run recorded")
    train.add_argument("--lr", type=float, default=SUPPRESS, help="Adam learning rate for G and D" + _paper("lr"))
    train.add_argument("--beta1", type=float, default=SUPPRESS, help="Adam beta_1" + _paper("beta1"))
    train.add_argument("--beta2", type=float, default=SUPPRESS, help="Adam beta_2" + _paper("beta2"))
    train.add_argument("--loss", choices=LOSS_KINDS, default=SUPPRESS,
                       help="bce: the paper's log loss; lsgan: CycleGAN's" + _paper("loss"))
    train.add_argument("--residual-blocks", type=int, default=SUPPRESS,
                       help="generator residual blocks (Table XVI: 3/6/9/12)" + _paper("residual_blocks"))
    train.add_argument("--upsample", choices=UPSAMPLE_KINDS, default=SUPPRESS,
                       help="G's two ×2 upsamplings: transposed 3×3/2 convolutions (the paper) or nearest resize + "
                            "3×3 convolution (the checkerboard fix; same weight count)" + _paper("upsample"))
    add_random_seed(train, "seeds weights and data order; a CPU run is repeatable")
    train.add_argument("--jit-compile", action="store_true", help="compile the TensorFlow train step with XLA "
                       "(the JAX step is always compiled)")
    train.add_argument("--backend", choices=BACKENDS, default="tensorflow",
                       help="Keras backend: tensorflow (tf.distribute) or jax (keras.distribution; needs no TensorFlow)")
    aids = parser.add_argument_group("key-quality ablations (docs/key_quality.md; unset: the --recipe's value)")
    aids.add_argument("--g-lr", type=float, default=SUPPRESS,
                      help="generator learning rate (TTUR); None: the --lr value" + _paper("g_lr"))
    aids.add_argument("--d-lr", type=float, default=SUPPRESS,
                      help="discriminator learning rate (TTUR); None: the --lr value" + _paper("d_lr"))
    aids.add_argument("--d-history", type=int, default=SUPPRESS, metavar="N",
                      help="CycleGAN image pool of N old fakes for D's update (CycleGAN: 50); 0 = off"
                      + _paper("d_history"))
    aids.add_argument("--instance-noise", type=float, default=SUPPRESS, metavar="SIGMA",
                      help="Gaussian noise of this sigma (in [-1, 1] units) on D's inputs, annealed linearly to 0"
                      + _paper("instance_noise"))
    aids.add_argument("--instance-noise-anneal", type=int, default=SUPPRESS, metavar="STEPS",
                      help="step at which the instance noise reaches 0; None: the --steps value"
                      + _paper("instance_noise_anneal"))
    aids.add_argument("--r1", type=float, default=SUPPRESS, metavar="GAMMA",
                      help="R1 penalty (GAMMA/2)·||grad D(real)||² in D's loss; 0 = off" + _paper("r1"))
    aids.add_argument("--d-spectral-norm", action=argparse.BooleanOptionalAction, default=SUPPRESS,
                      help="spectral normalization on every D convolution" + _paper("d_spectral_norm"))
    aids.add_argument("--domain-gray", action=argparse.BooleanOptionalAction, default=SUPPRESS,
                      help="domain images as their first channel repeated to 3 channels (the seeds are gray)"
                      + _paper("domain_gray"))
    aids.add_argument("--domain-augment", action=argparse.BooleanOptionalAction, default=SUPPRESS,
                      help="random cyclic crops and flips of the domain images" + _paper("domain_augment"))
    aids.add_argument("--sensitivity-weight", type=float, default=SUPPRESS, metavar="W",
                      help="G term: keys of the seed, of it with one pixel changed and of its v1 nonce "
                           "perturbation should differ like independent uniform keys; 0 = off")
    aids.add_argument("--uniformity-weight", type=float, default=SUPPRESS, metavar="W",
                      help="G term: KL divergence of the key's soft 32-bin byte histogram from uniform; 0 = off")
    aids.add_argument("--predictor-weight", type=float, default=SUPPRESS, metavar="W",
                      help="G term against an adversarial predictor of hidden key pixels (De Bernardi et al. "
                           "2018); 0 = off")
    run = parser.add_argument_group("run")
    add_output(run, "run folder (required: a run writes checkpoints, logs, samples and generator.keras there; "
               "the paper's 20,000 steps at 256² take hours on a CPU)", dest="out")
    run.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    run.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints and sample keys")
    run.add_argument("--log-every", type=int, default=10, help="steps between TensorBoard scalars")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def config_from(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed flags: the recipe's values, then every flag given.

    The recipe is --recipe, else (with --resume) the one the run's run.json names, so a
    resume needs no --recipe repeated and resolves to the same options, else the paper's.
    """
    name = args.recipe if hasattr(args, "recipe") else (
        runfolder.recorded_recipe(Path(args.out)) if args.resume else None) or recipes.DEFAULT
    explicit = {RECIPE_FIELDS.get(dest, dest): getattr(args, dest) for dest in recipes.PAPER if hasattr(args, dest)}
    where = {"out": args.out} if args.out else {}  # main() requires it; the library has a default
    return TrainConfig.from_recipe(
        name, **explicit, **where, source=args.source, domain=args.domain,
        domain_kind=args.domain_kind, domain_seed=args.domain_seed, seed_image=args.seed_image,
        image_size=args.image_size, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
        jit_compile=args.jit_compile, checkpoint_every=args.checkpoint_every, backend=args.backend,
        resume=args.resume, log_every=args.log_every, progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)

    def fit() -> None:
        if args.out is None:  # never start an hours-long run into a folder nobody named
            raise InputError(f"--out RUN_DIR is required: the run folder for checkpoints, logs and the generator "
                             f"(this command would train {args.steps} steps at {args.image_size}²; "
                             "e.g. --out runs/dkg, and --steps for a shorter run)")
        config = config_from(args)
        from keras_dkg.train.loop import train

        # TensorFlow prints absl/oneDNN banners on stderr at import even at
        # TF_CPP_MIN_LOG_LEVEL=2: hold them back, so an error stays the one line on stderr.
        with quiet():
            import_backend(config.backend)
        result = train(config)
        print(f"done: {result.step} steps in {result.wall_seconds:.1f} s; "
              f"sample key entropy {result.sample_key_entropy:.4f}; generator at {result.generator}")

    return run_cli("keras_dkg.fit", fit, interrupted=(
        f"interrupted; the checkpoints in {Path(args.out or '.') / 'checkpoints'} are kept, continue with --resume"))


def import_backend(backend: str) -> None:
    """Load Keras on `backend` (and that backend), so a missing extra fails before the run folder exists."""
    from keras_dkg.train.loop import select_backend

    select_backend(backend)
    __import__("tensorflow" if backend == "tensorflow" else "jax")


if __name__ == "__main__":
    sys.exit(main())

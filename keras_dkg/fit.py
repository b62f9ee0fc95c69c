"""`python -m keras_dkg.fit`: train DeepKeyGen end to end.

With no `--source` it trains on the embedded data (keras_dkg.embedded); with neither
`--domain` nor `--domain-kind` it builds the high-security chaotic domain from the source
images itself. The run folder gets `run.json` (every resolved option, written first,
completed at the end — like pix2pix's train_opt.txt), `checkpoints/`, TensorBoard
`logs/`, `samples/` keys from a held-back seed, and finally `generator.keras`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from argparse import SUPPRESS
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_dkg
from keras_dkg import recipes
from keras_dkg.errors import DkgError, TrainingError, run_cli
from keras_dkg.export.source import quiet

# keras_dkg.model imports TensorFlow, which prints absl/oneDNN banners on stderr at import
# even at TF_CPP_MIN_LOG_LEVEL=2: hold them back, so an error stays the one line on stderr.
try:
    with quiet():
        from keras_dkg.model import LOSS_KINDS
except ModuleNotFoundError as _exc:  # a runtime-only install: main() says which extra to install
    _MISSING: ModuleNotFoundError | None = _exc
else:
    _MISSING = None

log = logging.getLogger("keras_dkg.fit")
# Options that must match for --resume to continue the same run.
RESUME_KEYS = ("image_size", "batch_size", "seed", "loss", "learning_rate", "beta_1", "beta_2",
               "residual_blocks", "domain_kind", "source", "domain", "g_learning_rate", "d_learning_rate",
               "d_history", "instance_noise", "instance_noise_anneal", "r1_gamma", "d_spectral_norm",
               "domain_gray", "domain_augment", "sensitivity_weight", "uniformity_weight", "predictor_weight")
# What a run recorded before the key-quality ablations existed used (docs/key_quality.md).
ABLATION_DEFAULTS = {"d_history": 0, "instance_noise": 0.0, "instance_noise_anneal": None, "r1_gamma": 0.0,
                     "d_spectral_norm": False, "domain_gray": False, "domain_augment": False,
                     "sensitivity_weight": 0.0, "uniformity_weight": 0.0, "predictor_weight": 0.0}


def _paper(dest: str) -> str:
    """Help suffix: a recipe option has no argparse default (unset means "the recipe's")."""
    return f" (paper: {recipes.PAPER[dest]})"


def apply_recipe(args: argparse.Namespace, recorded: str | None = None) -> dict:
    """Fill every recipe option the command line left unset; return {"recipe", "recipe_overrides"}.

    The recipe is --recipe, else `recorded` (what a resumed run's run.json names, so
    `--resume` needs no --recipe repeated and resolves to the same options), else the
    paper's. recipe_overrides lists the explicit flags that differ from the recipe.
    """
    name = args.recipe if hasattr(args, "recipe") else recorded or recipes.DEFAULT
    values = recipes.recipe_values(name)
    overrides = {}
    for dest, value in values.items():
        if hasattr(args, dest):
            if getattr(args, dest) != value:
                overrides[dest] = getattr(args, dest)
        else:
            setattr(args, dest, value)
    args.recipe = name
    return {"recipe": name, "recipe_overrides": overrides}


def recorded_recipe(out: Path) -> str | None:
    """The recipe a run folder's run.json names; None if unreadable (prepare_run_folder reports that)."""
    try:
        recorded = json.loads((out / "run.json").read_text(encoding="utf-8"))["options"]
        name = recorded.get("recipe", recipes.DEFAULT) if isinstance(recorded, dict) else None
        return name if isinstance(name, str) else None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None


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
                       help="named option values (keras_dkg/recipes.py; docs/key_quality.md); explicit flags win. "
                            f"Default: {recipes.DEFAULT}, or with --resume the recipe the run recorded")
    train.add_argument("--lr", type=float, default=SUPPRESS, help="Adam learning rate for G and D" + _paper("lr"))
    train.add_argument("--beta1", type=float, default=SUPPRESS, help="Adam beta_1" + _paper("beta1"))
    train.add_argument("--beta2", type=float, default=SUPPRESS, help="Adam beta_2" + _paper("beta2"))
    train.add_argument("--loss", choices=LOSS_KINDS, default=SUPPRESS,
                       help="bce: the paper's log loss; lsgan: CycleGAN's" + _paper("loss"))
    train.add_argument("--residual-blocks", type=int, default=SUPPRESS,
                       help="generator residual blocks (Table XVI: 3/6/9/12)" + _paper("residual_blocks"))
    train.add_argument("--seed", type=int, default=0, help="seeds weights and data order; a CPU run is repeatable")
    train.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
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
    run.add_argument("--out", default="runs/dkg", help="run folder")
    run.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    run.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints and sample keys")
    run.add_argument("--log-every", type=int, default=10, help="steps between TensorBoard scalars")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def options_from(args: argparse.Namespace) -> dict:
    """The resolved options of a run (apply_recipe first); what run.json records and resume compares."""
    if args.instance_noise_anneal is not None and not args.instance_noise:
        raise TrainingError("--instance-noise-anneal needs --instance-noise SIGMA > 0")
    domain_kind = None if args.domain else (args.domain_kind or "chaotic")
    return {
        "source": str(Path(args.source).resolve()) if args.source else "embedded",
        "domain": str(Path(args.domain).resolve()) if args.domain else None,
        "domain_kind": domain_kind, "domain_seed": args.domain_seed,
        "seed_image": args.seed_image, "image_size": args.image_size, "steps": args.steps,
        "batch_size": args.batch_size, "learning_rate": args.lr, "beta_1": args.beta1, "beta_2": args.beta2,
        "loss": args.loss, "residual_blocks": args.residual_blocks, "seed": args.seed,
        "jit_compile": args.jit_compile, "checkpoint_every": args.checkpoint_every,
        "g_learning_rate": args.lr if args.g_lr is None else args.g_lr,
        "d_learning_rate": args.lr if args.d_lr is None else args.d_lr,
        "d_history": args.d_history, "instance_noise": args.instance_noise,
        "instance_noise_anneal": (None if not args.instance_noise
                                  else args.steps if args.instance_noise_anneal is None else args.instance_noise_anneal),
        "r1_gamma": args.r1, "d_spectral_norm": args.d_spectral_norm,
        "domain_gray": args.domain_gray, "domain_augment": args.domain_augment,
        "sensitivity_weight": args.sensitivity_weight, "uniformity_weight": args.uniformity_weight,
        "predictor_weight": args.predictor_weight,
    }


def validate(options: dict) -> None:
    if options["image_size"] < 16 or options["image_size"] % 4:
        raise TrainingError(f"--image-size {options['image_size']} must be a multiple of 4 and at least 16")
    for name in ("steps", "batch_size", "checkpoint_every"):
        if options[name] < 1:
            raise TrainingError(f"--{name.replace('_', '-')} must be at least 1, got {options[name]}")
    for flag, name in (("--lr", "learning_rate"), ("--g-lr", "g_learning_rate"), ("--d-lr", "d_learning_rate")):
        if not options[name] > 0:
            raise TrainingError(f"{flag} must be positive, got {options[name]}")
    for flag, name in (("--d-history", "d_history"), ("--instance-noise", "instance_noise"), ("--r1", "r1_gamma"),
                       ("--sensitivity-weight", "sensitivity_weight"), ("--uniformity-weight", "uniformity_weight"),
                       ("--predictor-weight", "predictor_weight")):
        if not options[name] >= 0:
            raise TrainingError(f"{flag} must be at least 0, got {options[name]}")
    if options["instance_noise_anneal"] is not None and options["instance_noise_anneal"] < 1:
        raise TrainingError(f"--instance-noise-anneal must be at least 1, got {options['instance_noise_anneal']}")


def _check_run_folder(out: Path, options: dict) -> None:
    """The output rule (runtime.outputs): a run folder is never an input, inside one, or in a key store."""
    from keras_dkg.runtime.outputs import OutputGuard

    inputs = {"source folder": None if options["source"] == "embedded" else options["source"],
              "domain folder": options["domain"], "seed image": options["seed_image"]}
    why = "the run's own images would be read as training data (choose an --out outside it)"
    outside = {label: (inputs[label], why) for label in ("source folder", "domain folder")}
    OutputGuard(inputs=inputs, outside=outside).check_folder(out, "run folder")


def prepare_run_folder(out: Path, options: dict, resume: bool) -> dict | None:
    """Create or reopen the run folder; return the previous run.json when resuming."""
    from keras_dkg import checkpoints

    _check_run_folder(out, options)
    record = out / "run.json"
    has_checkpoints = bool(checkpoints.list_checkpoints(out / "checkpoints"))
    if not resume:
        if has_checkpoints or (out / "generator.keras").exists():
            raise TrainingError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        return None
    if not record.is_file() or not has_checkpoints:
        raise TrainingError(f"{out}: nothing to resume (no run.json or no checkpoint)")
    try:
        previous = json.loads(record.read_text(encoding="utf-8"))
        if not isinstance(previous, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TrainingError(f"{record}: cannot read the run settings to resume ({exc}); use a new --out") from exc
    recorded = previous.get("options", {})
    legacy = {**ABLATION_DEFAULTS, "g_learning_rate": recorded.get("learning_rate"),
              "d_learning_rate": recorded.get("learning_rate")}
    changed = [k for k in RESUME_KEYS if recorded.get(k, legacy.get(k)) != options[k]]
    if changed:
        raise TrainingError(f"{out}: --resume with different settings ({', '.join(changed)}); use a new --out")
    return previous


def _missing_training_stack() -> None:
    raise _MISSING  # type: ignore[misc]  # run_cli turns it into one line naming the extra


def main(argv: list[str] | None = None) -> int:
    if _MISSING is not None:
        return run_cli("keras_dkg.fit", _missing_training_stack)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)

    def fit() -> None:
        summary = train(args)
        print(f"done: {summary['steps_done']} steps in {summary['wall_seconds']:.1f} s; "
              f"sample key entropy {summary['sample_key_entropy']:.4f}; generator at {summary['generator']}")

    return run_cli("keras_dkg.fit", fit, interrupted=(
        f"interrupted; the checkpoints in {Path(args.out) / 'checkpoints'} are kept, continue with --resume"))


def train(args: argparse.Namespace) -> dict:
    """Run (or resume) one training; return the summary that is also stored in run.json."""
    out = Path(args.out)
    recipe = apply_recipe(args, recorded_recipe(out) if args.resume else None)
    options = options_from(args) | recipe
    validate(options)
    before = sorted(out.iterdir()) if out.is_dir() else None
    previous = prepare_run_folder(out, options, args.resume)
    try:
        if previous is None:
            _write_run_json(out, options, {"status": "running"})
        # TensorFlow is imported only now, after the argument checks
        from keras_dkg.training_loop import run_training

        started = time.time()
        summary = run_training(out, options, previous, progress=not args.no_progress, log_every=args.log_every)
    except DkgError:
        if previous is None:
            _discard_failed_run(out, before)
        raise
    summary["wall_seconds"] = round(time.time() - started, 2)
    summary["status"] = "finished"
    _write_run_json(out, options, summary)
    return summary


def _discard_failed_run(out: Path, before: list[Path] | None) -> None:
    """A fresh run that failed before its first checkpoint leaves nothing behind.

    Only what this run created goes (the folder itself when the run made it); once a
    checkpoint exists the folder is kept for --resume.
    """
    import shutil

    from keras_dkg import checkpoints

    if checkpoints.list_checkpoints(out / "checkpoints"):
        return
    if before is None:
        shutil.rmtree(out, ignore_errors=True)
        return
    for path in set(out.iterdir()) - set(before):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _write_run_json(out: Path, options: dict, summary: dict) -> None:
    import keras
    import tensorflow as tf

    from keras_dkg.runtime.imageio import write_bytes_atomic

    record = {
        "options": options,
        "image_size": options["image_size"],
        "summary": summary,
        "versions": {"keras_dkg": keras_dkg.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                     "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
    }
    write_bytes_atomic(out / "run.json", json.dumps(record, indent=2).encode(), overwrite=True)


if __name__ == "__main__":
    sys.exit(main())

"""The command line of `python -m keras_dkg.diagnose` (the work is in `report`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from keras_dkg.common import quiet
from keras_dkg.errors import InputError, OutputError, run_cli
from keras_dkg.options import add_random_seed
from keras_dkg.runtime.guards.atomic import write_bytes_atomic
from keras_dkg.runtime.guards.outputs import OutputGuard

PROG = "python -m keras_dkg.diagnose"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Diagnose a training run's keys: byte histograms, autocorrelation, spectrum, one-pixel "
                    "sensitivity, nonce-key relatedness, D's loss/accuracy and key entropy over training.")
    parser.add_argument("run_dir", help="run folder of python -m keras_dkg.fit")
    parser.add_argument("--seed-image", help="held-back seed; default: the run's --seed-image (embedded CT slice)")
    parser.add_argument("--nonces", type=int, default=8, help="keys made from the seed (nonces 1..N)")
    parser.add_argument("--pixel-pairs", type=int, default=4, help="one-pixel-changed seeds for NPCR/UACI")
    parser.add_argument("--nist", action="store_true",
                        help="also run the 15 NIST SP 800-22 tests on the keys (strict on the first, by proportion "
                             "over all; slow at 256²)")
    add_random_seed(parser, "seeds the changed pixels and the uniform reference")
    parser.add_argument("--plots", metavar="DIR", help="write PNG figures into DIR (needs matplotlib)")
    parser.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --json / --plots files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _diagnose(args))


def _diagnose(args: argparse.Namespace) -> None:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run folder")
    guard = OutputGuard(inputs={"run record": run_dir / "run.json", "seed image": args.seed_image},
                        overwrite=args.overwrite)
    plots_dir = None
    if args.plots:
        try:  # before the generator is loaded, so a missing matplotlib costs nothing
            from keras_dkg.diagnose import plots
        except ImportError as exc:
            raise InputError(f"--plots needs matplotlib: pip install 'keras-dkg[analysis]' ({exc})") from exc
        plots_dir = guard.check_folder(args.plots, "plots folder")
        if plots_dir.is_dir():
            for name in plots.FILES:
                guard.check_file(plots_dir / name, "plot")
    if args.json:
        guard.check_file(args.json, "JSON report")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_dkg.diagnose.report import diagnose, format_text

    with quiet():  # TensorFlow's import banners would break the one-line error rule
        import keras_dkg.train.networks  # noqa: F401  (registers the generator's layers)
    report, arrays = diagnose(run_dir, args.seed_image, args.nonces, args.pixel_pairs, args.seed, args.nist)
    print(format_text(report))
    if args.json:
        write_bytes_atomic(args.json, json.dumps(report, indent=2).encode(), overwrite=args.overwrite)
    if plots_dir is not None:
        try:
            plots_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{plots_dir}: cannot create the plots folder ({exc.strerror or exc})") from exc
        for path in plots.write_all(report, arrays, plots_dir, args.overwrite):
            print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())

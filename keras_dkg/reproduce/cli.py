"""`python tools/reproduce_paper.py --quick|--full|--profile paper --out DIR`: the paper's experiments, one command.

Runs every stage (resumable: finished stages in DIR are reused) and writes DIR/README.md
(one section per table of the paper, paper value beside ours, findings), DIR/results.json
and DIR/figures/. Nothing is downloaded: the default data is embedded in the installed
wheels and labelled for what it is; pass the paper's data sets with --xray/--ultrasound/--mri.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from keras_dkg.errors import run_cli
from keras_dkg.options import add_output
from keras_dkg.reproduce.profiles import PROFILES

PROG = "reproduce_paper"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    profile = parser.add_mutually_exclusive_group(required=True)
    profile.add_argument("--quick", dest="profile", action="store_const", const="quick",
                         help="CPU, about 30 min on 2 cores: 64x64, 400 steps, reduced Table XXI grid")
    profile.add_argument("--full", dest="profile", action="store_const", const="full",
                         help="the paper's settings: 256x256, 20,000 steps, 4 trainings, full grid (GPU advised)")
    profile.add_argument("--tiny", dest="profile", action="store_const", const="tiny", help=argparse.SUPPRESS)
    profile.add_argument("--profile", dest="profile", choices=[p for p in PROFILES if p != "tiny"],
                         help="a profile by name; 'paper': every training at 256², 20,000 steps through fit, on JAX "
                              "when a GPU is visible to JAX, else TensorFlow (states the expected wall time first)")
    parser.add_argument("--until", metavar="STAGE", help="stop after this stage (e.g. train); rerun to continue")
    parser.add_argument("--image-size", type=int, help=argparse.SUPPRESS)  # smoke tests of a big profile
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    add_output(parser, "report folder (rerun with the same folder to resume)", required=True, dest="out")
    data = parser.add_argument_group("data (default: images embedded in the installed wheels)")
    data.add_argument("--source", help="training source images (paper: 138 Montgomery chest X-rays)")
    data.add_argument("--seed-image", help="the key seed image (default: pydicom's CT_small.dcm)")
    data.add_argument("--xray", help="chest X-ray plaintexts (first 8 images of the folder)")
    data.add_argument("--ultrasound", help="ultrasound plaintexts (first 8 images)")
    data.add_argument("--mri", help="MRI plaintexts (first 8 images)")
    parser.add_argument("--paper-values", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    options = {name: (str(Path(value).resolve()) if value else None)
               for name, value in (("source", args.source), ("seed_image", args.seed_image), ("xray", args.xray),
                                   ("ultrasound", args.ultrasound), ("mri", args.mri))}

    def reproduce() -> None:
        from keras_dkg.reproduce.pipeline import run

        results = run(args.profile, Path(args.out), options, paper_path=args.paper_values, started=started,
                      image_size=args.image_size, steps=args.steps, until=args.until)
        if results is None:
            return
        meta = results["meta"]
        print(f"report: {Path(args.out) / 'README.md'} ({len(results['tables'])} tables, "
              f"{sum(len(v) for v in results['figures'].values())} figures); this invocation "
              f"{meta['wall_seconds_this_invocation']:.0f} s, all stages {meta['stage_seconds_total']:.0f} s")

    return run_cli(PROG, reproduce, interrupted="interrupted; finished stages are kept, rerun to continue")


if __name__ == "__main__":
    sys.exit(main())

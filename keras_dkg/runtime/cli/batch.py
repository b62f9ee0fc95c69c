"""`dkg-encrypt --batch` and `dkg-decrypt --batch`: whole folders (docs/batch.md).

    dkg-encrypt --batch IN_DIR -o OUT_DIR --keys KEY_DIR --model M.onnx --seed SEED
                [--jobs N | --engine ray [--workers N] [--ray-address ADDR]] [--resume] [--overwrite] [--report FILE]
    dkg-decrypt --batch OUT_DIR -o BACK_DIR --keys KEY_DIR [--verify] [--jobs N | --engine ray ...] [--report FILE]

The batch options are a group of dkg-encrypt's and dkg-decrypt's own parsers
(`add_batch_options`, so `--help` shows them); `keras_dkg.runtime.cli.encrypt` runs a
parsed command line with `--batch` through `run`. Exit
codes: 0 every file done; 1 some files failed (listed on stderr and in the report);
3 some tag did not verify (tampered or wrong key); 2 nothing done (bad arguments,
missing folder, unreadable model or seed, wrong key store, refused report or output
folder); 130 / 143 stopped by SIGINT / SIGTERM (workers ended, the partial report
written, one line on stderr; `--resume` finishes the batch).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

from keras_dkg.common import printable
from keras_dkg.errors import InputError, run_cli
from keras_dkg.options import add_no_progress
from keras_dkg.runtime.batch.driver import (
    REPORT_NAME,
    BatchInterrupted,
    BatchReport,
    decrypt_folder,
    encrypt_folder,
)
from keras_dkg.runtime.batch.signals import signal_of, stop_on_signals

BATCH_ONLY = {"jobs": "--jobs", "resume": "--resume", "report": "--report", "progress": "--no-progress",
              "verify": "--verify", "engine": "--engine", "workers": "--workers", "ray_address": "--ray-address"}
NOT_IN_BATCH = {"encrypt": {"key": "--key", "allow_key_reuse": "--allow-key-reuse"}, "decrypt": {"key": "--key"}}
REQUIRED = {"encrypt": {"output": "-o OUT_DIR", "keys": "--keys KEY_DIR", "model": "--model M.onnx",
                        "seed": "--seed SEED"},
            "decrypt": {"keys": "--keys KEY_DIR"}}


def add_batch_options(parser: argparse.ArgumentParser, command: str) -> None:
    """The `--batch` group of dkg-encrypt / dkg-decrypt."""
    group = parser.add_argument_group(
        "whole folders (--batch; docs/batch.md)",
        "one fresh key per file in the --keys store; every other file of a folder goes on when one fails"
        if command == "encrypt" else "decrypt (or only --verify) every ciphertext under a folder")
    what = "folder of plaintexts (searched recursively)" if command == "encrypt" else \
        "folder of ciphertexts from dkg-encrypt --batch"
    group.add_argument("--batch", metavar="IN_DIR" if command == "encrypt" else "OUT_DIR", help=what)
    group.add_argument("--jobs", type=int, default=None, help="worker processes of the local engine (default: 1)")
    group.add_argument("--engine", choices=("local", "ray"), default=None,
                       help="local: this machine's processes (default); ray: a pool of Ray actors, one "
                            "onnxruntime session each (pip install 'keras-dkg[ray]'; docs/scale.md)")
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help="Ray actors, one CPU each (default: 2; --engine ray)")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="join a running Ray cluster: auto or HOST:PORT (default: start a local Ray and stop it "
                            "at the end; --engine ray)")
    if command == "encrypt":
        group.add_argument("--resume", action="store_true",
                           help="keep outputs that exist and verify with their stored key (finish a killed batch)")
    else:
        group.add_argument("--verify", action="store_true", help="check every tag without writing any plaintext")
    replaced = "with --overwrite, or with --resume when it is an earlier report" if command == "encrypt" else \
        "with --overwrite"
    group.add_argument("--report", help=f"report file, .json or .csv (default: OUT_DIR/{REPORT_NAME}); an existing "
                       f"file is replaced only {replaced}")
    add_no_progress(group)


def check_arguments(command: str, args: argparse.Namespace) -> None:
    """InputError for a command line that mixes single-file and batch options."""
    if args.batch is None:
        given = [flag for dest, flag in BATCH_ONLY.items() if getattr(args, dest, None) not in (None, False)]
        if given:
            raise InputError(f"{', '.join(given)} only with --batch DIR (a whole folder)")
        return
    if getattr(args, "image", None) or getattr(args, "ciphertext", None):
        raise InputError("give one file or --batch DIR, not both")
    given = [flag for dest, flag in NOT_IN_BATCH[command].items() if getattr(args, dest, None)]
    if given:
        raise InputError(f"{', '.join(given)} is for one file; a batch makes a fresh key per file in --keys")
    if command == "decrypt" and args.verify and args.output:
        raise InputError("--verify writes nothing; leave out -o")
    if args.engine == "ray" and args.jobs is not None:
        raise InputError("--jobs is the local engine's; with --engine ray give --workers N")
    if args.engine != "ray" and (args.workers is not None or args.ray_address):
        raise InputError("--workers and --ray-address need --engine ray")
    missing = [flag for dest, flag in REQUIRED[command].items() if not getattr(args, dest, None)]
    if command == "decrypt" and not args.verify and not args.output:
        missing.append("-o BACK_DIR (or --verify)")
    if missing:
        raise InputError(f"--batch needs {', '.join(missing)}")


def _print_outcome(prog: str, report: BatchReport, report_path) -> int:
    print(report.summary_line())
    for line in report.failure_lines(prog):  # names escaped; all of them when the report is not written
        print(line, file=sys.stderr)
    if report.options.get("hint"):
        print(f"{prog}: {printable(report.options['hint'])}", file=sys.stderr)
    if report.not_written:
        print(f"{prog}: error: {printable(report.not_written)}", file=sys.stderr)
    elif report_path is not None:
        print(f"report: {printable(str(report_path))}")
    return report.exit_code


def _progress(args) -> bool:
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)


def _engine(args) -> dict:
    return {"engine": args.engine or "local", "workers": args.workers, "ray_address": args.ray_address}


def _credentials(args):
    from keras_dkg.runtime.keystore.custody import Credentials

    return Credentials.from_environment(args.key_file)


def _encrypt(args) -> int:
    report = encrypt_folder(
        args.batch, args.output, keys=args.keys, model=args.model, seed=args.seed, jobs=1 if args.jobs is None else args.jobs,
        resume=args.resume, overwrite=args.overwrite, report=args.report, provider=args.provider,
        backend=args.backend, precision=args.precision, cipher=args.cipher, progress=_progress(args), quiet=True, credentials=_credentials(args), **_engine(args),
    )
    return _print_outcome("dkg-encrypt", report, args.report or f"{args.output}/{REPORT_NAME}")


def _decrypt(args) -> int:
    report = decrypt_folder(
        args.batch, args.output, keys=args.keys, verify_only=args.verify, jobs=1 if args.jobs is None else args.jobs,
        overwrite=args.overwrite, report=args.report, progress=_progress(args), quiet=True,
        credentials=_credentials(args), **_engine(args),
    )
    default = None if args.verify else f"{args.output}/{REPORT_NAME}"
    return _print_outcome("dkg-decrypt", report, args.report or default)


def _stoppable(prog: str, action: Callable, args) -> int:
    """Run the batch with SIGINT/SIGTERM turned into a clean stop: one line, exit 128 + signal."""
    try:
        with stop_on_signals():
            return action(args)
    except BatchInterrupted as exc:
        message, code = str(exc), exc.exit_code
    except KeyboardInterrupt as exc:  # before any file was started (loading the model, listing)
        number = signal_of(exc)
        message = f"interrupted by {signal.Signals(number).name} before any file was processed; rerun the same command"
        code = 128 + number
    print(f"{prog}: error: {printable(message)}", file=sys.stderr)
    return code


def run(prog: str, command: str, args: argparse.Namespace) -> int:
    """Run a parsed dkg-encrypt / dkg-decrypt command line that has --batch."""
    def action() -> int:
        check_arguments(command, args)
        return _stoppable(prog, _encrypt if command == "encrypt" else _decrypt, args)

    return run_cli(prog, action)

"""`dkg-encrypt --batch` and `dkg-decrypt --batch`: whole folders (docs/batch.md).

    dkg-encrypt --batch IN_DIR -o OUT_DIR --keys KEY_DIR --model M.onnx --seed SEED
                [--jobs N] [--resume] [--overwrite] [--report FILE]
    dkg-decrypt --batch OUT_DIR -o BACK_DIR --keys KEY_DIR [--verify] [--jobs N] [--report FILE]

`keras_dkg.runtime.cipher_cli` hands any command line with `--batch` to these. Exit
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

from keras_dkg.errors import run_cli
from keras_dkg.runtime.batch import (
    REPORT_NAME,
    BatchInterrupted,
    BatchReport,
    decrypt_folder,
    encrypt_folder,
)
from keras_dkg.runtime.batch_pool import signal_of, stop_on_signals

MAX_LISTED_FAILURES = 20


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default: 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--report", help=f"report file, .json or .csv (default: OUT_DIR/{REPORT_NAME}); an existing "
                        "file is replaced only with --overwrite, or with --resume when it is an earlier report")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                        help="no progress bar (default: shown when stderr is a terminal and tqdm is installed)")


def encrypt_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dkg-encrypt --batch",
        description="Encrypt every image under a folder: one fresh key per file, kept in a key store.",
    )
    parser.add_argument("--batch", required=True, metavar="IN_DIR", help="folder of plaintexts (searched recursively)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                        help="folder for the ciphertexts (same relative paths and extensions)")
    parser.add_argument("--keys", required=True, metavar="KEY_DIR", help="key store folder (created if missing)")
    parser.add_argument("--model", required=True, help="generator .onnx (dkg-export onnx)")
    parser.add_argument("--seed", required=True, help="seed image for the keys (PNG/TIFF/DICOM)")
    parser.add_argument("--resume", action="store_true",
                        help="keep outputs that exist and verify with their stored key (finish a killed batch)")
    parser.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto", help="onnxruntime provider")
    parser.add_argument("--cipher", choices=("xor", "hardened"), default="xor",
                        help="xor: the paper's XOR + HMAC; hardened: HKDF + ChaCha20-Poly1305 (docs/hardened.md)")
    _common(parser)
    return parser


def decrypt_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dkg-decrypt --batch",
        description="Verify every ciphertext under a folder and decrypt it bit-exact (or only verify).",
    )
    parser.add_argument("--batch", required=True, metavar="OUT_DIR", help="folder of ciphertexts from dkg-encrypt --batch")
    parser.add_argument("-o", "--output", metavar="BACK_DIR", help="folder for the decrypted files (not with --verify)")
    parser.add_argument("--keys", required=True, metavar="KEY_DIR", help="the key store the batch used")
    parser.add_argument("--verify", action="store_true", help="check every tag without writing any plaintext")
    _common(parser)
    return parser


def _print_outcome(prog: str, report: BatchReport, report_path) -> int:
    print(report.summary_line())
    for result in report.failed[:MAX_LISTED_FAILURES]:
        print(f"{prog}: failed: {result.path}: {result.reason}", file=sys.stderr)
    if len(report.failed) > MAX_LISTED_FAILURES:
        print(f"{prog}: ... and {len(report.failed) - MAX_LISTED_FAILURES} more failures", file=sys.stderr)
    if report.options.get("hint"):
        print(f"{prog}: {report.options['hint']}", file=sys.stderr)
    if report_path is not None:
        print(f"report: {report_path}")
    return report.exit_code


def _progress(args) -> bool:
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)


def _encrypt(args) -> int:
    report = encrypt_folder(
        args.batch, args.output, keys=args.keys, model=args.model, seed=args.seed, jobs=args.jobs,
        resume=args.resume, overwrite=args.overwrite, report=args.report, provider=args.provider,
        cipher=args.cipher, progress=_progress(args), quiet=True,
    )
    return _print_outcome("dkg-encrypt", report, args.report or f"{args.output}/{REPORT_NAME}")


def _decrypt(args) -> int:
    if args.verify and args.output:
        print("dkg-decrypt: error: --verify writes nothing; leave out -o", file=sys.stderr)
        return 2
    report = decrypt_folder(
        args.batch, args.output, keys=args.keys, verify_only=args.verify, jobs=args.jobs,
        overwrite=args.overwrite, report=args.report, progress=_progress(args), quiet=True,
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
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def _main(prog: str, parser: argparse.ArgumentParser, action: Callable, argv: list[str] | None) -> int:
    args = parser.parse_args(argv)
    return run_cli(prog, lambda: _stoppable(prog, action, args))


def encrypt_main(argv: list[str] | None = None) -> int:
    return _main("dkg-encrypt", encrypt_parser(), _encrypt, argv)


def decrypt_main(argv: list[str] | None = None) -> int:
    return _main("dkg-decrypt", decrypt_parser(), _decrypt, argv)


def wants_batch(argv: list[str] | None) -> bool:
    """Whether a dkg-encrypt/dkg-decrypt command line asks for batch mode."""
    arguments = sys.argv[1:] if argv is None else argv
    return any(a == "--batch" or a.startswith("--batch=") for a in arguments)

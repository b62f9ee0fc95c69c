"""`dkg-encrypt` and `dkg-decrypt`: images ↔ ciphertext files (docs/cipher.md).

    dkg-encrypt IMG --key KEY.png -o OUT.png
    dkg-encrypt IMG --model G.onnx --seed SEED --keys KEYDIR -o OUT.png   # fresh key per file
    dkg-decrypt OUT.png --key KEY.png -o BACK.png        (or --keys KEYDIR)
    dkg-encrypt --batch IN_DIR ... / dkg-decrypt --batch ...   (whole folders: cli.batch; the
    options are in this parser's --help)

`--cipher xor` (default, the paper's) or `--cipher hardened` (HKDF + ChaCha20-Poly1305,
docs/hardened.md); decryption reads the cipher from the ciphertext's metadata.

Every use of a key is recorded (KEY.json or the key store index). With `--cipher xor` a
key encrypts one plaintext only: a second plaintext is refused unless --allow-key-reuse.
`--cipher hardened` may reuse a key (fresh salt and nonce per encryption) without it.
Outputs are never the input, never a key (not even with --overwrite), never overwritten without
--overwrite, written atomically. Credentials given (--key-file, DKG_KEYSTORE_*) for a --keys folder
that is no protected store are refused before any work.
Errors are one line on stderr (`dkg-encrypt: error: ...`) with a non-zero exit code.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path

from keras_dkg.common import printable
from keras_dkg.errors import InputError, run_cli
from keras_dkg.options import add_output, add_overwrite, add_store_key_file
from keras_dkg.runtime.cli import batch as batch_cli
from keras_dkg.runtime.cli.options import add_cipher, add_key_engine, add_provider
from keras_dkg.runtime.encryption import decrypt_file, encrypt_file, output_guard
from keras_dkg.runtime.keys.generator import KeyGenerator


def encrypt_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dkg-encrypt", description="Encrypt an image or volume with a DeepKeyGen key: "
                                     "XOR + HMAC tag (the paper's), or --cipher hardened (HKDF + ChaCha20-Poly1305). "
                                     "One file, or a whole folder with --batch.")
    parser.add_argument("image", nargs="?", help="plaintext: PNG/TIFF 8/16-bit gray/RGB/RGBA, 24-bit BMP, DICOM or "
                        "NIfTI (.nii/.nii.gz), read exactly as stored; anything that would not decrypt to its stored "
                        "samples is refused (docs/formats.md). Not with --batch")
    add_output(parser, "ciphertext file: .png or .tif (lossless only), .dcm for a DICOM plaintext, .nii/.nii.gz "
               "for a NIfTI volume; with --batch the folder for the ciphertexts (same relative paths)")
    key = parser.add_argument_group("the key: --key, or --model/--seed/--keys for a fresh one")
    key.add_argument("--key", help="an existing key: KEY.png with its KEY.json record (one file only)")
    key.add_argument("--model", help="generator .onnx: make a fresh key for each file (needs --seed, --keys)")
    key.add_argument("--seed", help="seed image for the fresh keys (or VOLUME.nii[.gz][:SLICE])")
    key.add_argument("--keys", help="key store folder where fresh keys are kept (created if missing; a protected "
                     "store is opened with DKG_KEYSTORE_PASSPHRASE, a prompt, or --key-file)")
    add_store_key_file(key)
    add_provider(key)
    add_key_engine(key)
    add_cipher(parser)
    parser.add_argument("--allow-key-reuse", action="store_true",
                        help="allow a key that already encrypted another image (xor; hardened does not need it)")
    add_overwrite(parser)
    batch_cli.add_batch_options(parser, "encrypt")
    return parser


def decrypt_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dkg-decrypt", description="Verify and decrypt a dkg-encrypt ciphertext, "
                                     "bit-exact; one file, or a whole folder with --batch (or only --verify it).")
    parser.add_argument("ciphertext", nargs="?", help="ciphertext file written by dkg-encrypt. Not with --batch")
    add_output(parser, "decrypted file: .png or .tif; .dcm / .nii / .nii.gz for a DICOM / NIfTI ciphertext; with "
               "--batch the folder for the decrypted files")
    parser.add_argument("--key", help="KEY.png with its KEY.json record (one file only)")
    parser.add_argument("--keys", help="key store folder: the key is found by the ciphertext's key fingerprint")
    add_store_key_file(parser)
    add_key_engine(parser, generates=False)
    add_overwrite(parser)
    batch_cli.add_batch_options(parser, "decrypt")
    return parser


def store_credentials(args: argparse.Namespace):
    """The --keys store's credentials, read the one way every command does (custody.Credentials); refused
    when they were given (--key-file, environment) for a folder that is no protected store."""
    from keras_dkg.runtime.keystore.custody import Credentials, require_protected

    credentials = Credentials.from_environment(args.key_file)
    require_protected(args.keys, credentials)
    return credentials


def encrypt(args: argparse.Namespace) -> str:
    """One file: the flags checked and turned into `encrypt_file`'s arguments; its line to print."""
    source, output = Path(args.image), Path(args.output)
    if args.key and (args.model or args.seed or args.keys):
        extra = ", ".join(f"--{name}" for name in ("model", "seed", "keys") if getattr(args, name))
        raise InputError(f"--key uses an existing key; {extra} would make a fresh one: give one or the other")
    if bool(args.key) == bool(args.model):
        raise InputError("give either --key KEY.png or --model M.onnx --seed SEED --keys DIR")
    if args.model and not (args.seed and args.keys):
        raise InputError("--model needs --seed (the seed image) and --keys (where the fresh key is stored)")
    credentials = store_credentials(args) if args.keys else None  # before any work: never ignored
    generator = None if args.key else functools.partial(  # loaded once the inputs were checked
        KeyGenerator, args.model, provider=args.provider, backend=args.backend, precision=args.precision)
    guard = output_guard(source, "plaintext", key=args.key, seed=args.seed, model=args.model, store=args.keys,
                         overwrite=args.overwrite)
    result = encrypt_file(source, output, key=args.key, store=args.keys, credentials=credentials, generator=generator,
                          seed=args.seed, cipher=args.cipher, allow_key_reuse=args.allow_key_reuse,
                          overwrite=args.overwrite, guard=guard)
    where = f"key store {args.keys}" if result.store is not None else args.key
    return (f"encrypted {source} -> {output} ({result.shape} {result.dtype}; cipher {args.cipher}; "
            f"key {result.fingerprint[:23]}… from {where})")


def decrypt(args: argparse.Namespace) -> str:
    """One file: `decrypt_file` with the --key or --keys the flags name; its line to print."""
    source, output = Path(args.ciphertext), Path(args.output)
    credentials = store_credentials(args) if args.keys else None  # before any work: never ignored
    result = decrypt_file(source, output, key=args.key, store=args.keys, credentials=credentials,
                          overwrite=args.overwrite)
    return f"decrypted {source} -> {output} ({result.shape} {result.dtype}; cipher {result.cipher}; tag verified)"


def _main(prog: str, command: str, parser: argparse.ArgumentParser, action: Callable, argv: list[str] | None,
          interrupted: str) -> int:
    """Parse; a --batch command line goes to cli.batch, one file to `action`."""
    args = parser.parse_args(argv)
    if args.batch is not None:
        return batch_cli.run(prog, command, args)

    def one_file() -> None:
        batch_cli.check_arguments(command, args)  # batch-only flags without --batch
        source = args.image if command == "encrypt" else args.ciphertext
        if source is None:
            raise InputError(f"give the {'plaintext' if command == 'encrypt' else 'ciphertext'} file "
                             "(or --batch DIR for a whole folder)")
        if args.output is None:
            raise InputError("-o/--output is required")
        if command == "decrypt" and bool(args.key) == bool(args.keys):
            raise InputError("give one of --key KEY.png or --keys KEY_DIR")
        if args.key_file and not args.keys:
            raise InputError("--key-file opens a protected --keys store; give --keys DIR with it")
        print(printable(action(args)))  # names escaped: one line, whatever a file is called

    return run_cli(prog, one_file, interrupted=interrupted)


def encrypt_main(argv: list[str] | None = None) -> int:
    return _main("dkg-encrypt", "encrypt", encrypt_parser(), encrypt, argv,
                 interrupted="interrupted; no ciphertext was written and the key is not marked used")


def decrypt_main(argv: list[str] | None = None) -> int:
    return _main("dkg-decrypt", "decrypt", decrypt_parser(), decrypt, argv, interrupted="interrupted; no plaintext was written")

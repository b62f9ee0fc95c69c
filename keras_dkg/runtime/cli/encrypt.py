"""`dkg-encrypt` and `dkg-decrypt`: images ↔ ciphertext files (docs/cipher.md).

    dkg-encrypt IMG --key KEY.png -o OUT.png
    dkg-encrypt IMG --model G.onnx --seed SEED --keys KEYDIR -o OUT.png   # fresh key per file
    dkg-decrypt OUT.png --key KEY.png -o BACK.png        (or --keys KEYDIR)
    dkg-encrypt --batch IN_DIR ... / dkg-decrypt --batch ...   (whole folders: batch_cli; the
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
from collections.abc import Callable
from pathlib import Path

import numpy as np

from keras_dkg.common import printable
from keras_dkg.errors import DkgError, InputError, run_cli
from keras_dkg.options import add_output, add_overwrite, add_store_key_file
from keras_dkg.runtime.ciphers.metadata import check_plaintext, key_size_for, plaintext_digest
from keras_dkg.runtime.ciphers.registry import decrypt_array, encrypt_array
from keras_dkg.runtime.cli import batch as batch_cli
from keras_dkg.runtime.cli.options import add_cipher, add_key_engine, add_provider
from keras_dkg.runtime.formats.png_tiff import check_storable
from keras_dkg.runtime.formats.registry import check_output, open_ciphertext, open_plaintext
from keras_dkg.runtime.guards.inputs import regular_file
from keras_dkg.runtime.guards.outputs import OutputGuard
from keras_dkg.runtime.keys.artifact import load_key, record_path_for
from keras_dkg.runtime.keystore.store import KeyStore, is_key_store, key_use


def _guard(args: argparse.Namespace, source: Path, what: str) -> OutputGuard:
    """The output rule (runtime.guards.outputs) with everything this command reads."""
    key = Path(args.key).with_suffix(".png") if args.key else None  # --key KEY.png or KEY.json
    inputs = {what: source, "key": key, "key record": record_path_for(key) if key else None,
              "seed": getattr(args, "seed", None), "model": getattr(args, "model", None)}
    keys = getattr(args, "keys", None)  # the store this command may be about to create
    return OutputGuard(inputs=inputs, overwrite=args.overwrite,
                       outside={"key store folder": (keys, "write outputs outside it")})


def _check_paths(args: argparse.Namespace, source: Path, output: Path, what: str) -> str:
    """Fail before any work: the input is not a regular file, or the output breaks the output rule;
    return the format the output will be written in (runtime.formats)."""
    regular_file(source, what)
    written = "ciphertext" if what == "plaintext" else "plaintext"
    _guard(args, source, what).check_file(output, written)
    return check_output(source, output, written)


def _naming(label: str, action: Callable, *args, **kwargs):
    """Run an array-level cipher call; its errors get the file(s) they are about in front."""
    try:
        return action(*args, **kwargs)
    except DkgError as exc:
        raise type(exc)(f"{label}: {exc}") from exc


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


def open_store(args: argparse.Namespace, create: bool = False, credentials=None) -> KeyStore:
    """The --keys store, a protected one unlocked with `store_credentials`."""
    return KeyStore(args.keys, create=create, credentials=credentials or store_credentials(args))


def encrypt(args: argparse.Namespace) -> str:
    source, output = Path(args.image), Path(args.output)
    if args.key and (args.model or args.seed or args.keys):
        extra = ", ".join(f"--{name}" for name in ("model", "seed", "keys") if getattr(args, name))
        raise InputError(f"--key uses an existing key; {extra} would make a fresh one: give one or the other")
    if bool(args.key) == bool(args.model):
        raise InputError("give either --key KEY.png or --model M.onnx --seed SEED --keys DIR")
    if args.model and not (args.seed and args.keys):
        raise InputError("--model needs --seed (the seed image) and --keys (where the fresh key is stored)")
    credentials = store_credentials(args) if args.keys else None  # before any work: never ignored
    output_format = _check_paths(args, source, output, "plaintext")
    if args.cipher == "hardened":
        from keras_dkg.runtime.ciphers.hardened import require_cryptography

        require_cryptography()  # before a key is made and stored
    handle = open_plaintext(source, output)  # read once: pixels, context and how to write the ciphertext
    plain = _naming(str(source), check_plaintext, handle.array)
    if output_format == "raster":
        check_storable(output, plain)  # PNG/TIFF, before a key is made: a refusal costs no key
    plain_sha256 = plaintext_digest(plain)
    if args.key:
        key = load_key(args.key)
        store = None
    else:
        from keras_dkg.runtime.keys.generator import KeyGenerator, check_key_size, random_nonce

        size = check_key_size(key_size_for(plain.shape, plain.dtype), f"{source} (its key)")
        # an existing (maybe protected) store is opened before the model is loaded; a new one only
        # once the key is made, so a bad model or seed creates no store
        store = open_store(args, create=True, credentials=credentials) if is_key_store(args.keys) else None  # a writer
        generator = KeyGenerator(args.model, provider=args.provider, backend=args.backend, precision=args.precision)
        key = generator.generate(args.seed, size=size, nonce=random_nonce())
        store = store or open_store(args, create=True, credentials=credentials)
        store.add(key)
    context = handle.context
    key_label = args.key or f"{key.fingerprint[:23]}… in {args.keys}"
    ciphertext, meta = _naming(f"{source} with key {key_label}", encrypt_array, plain, key.pixels,
                               cipher=args.cipher, nonce=key.record.get("nonce"), context=context)
    used_for = str(source.resolve())
    # hardened: a fresh salt and nonce per encryption make key reuse safe (docs/hardened.md)
    allow_reuse = args.allow_key_reuse or args.cipher == "hardened"
    # the key is taken for this plaintext before the write (a key store's key file: its index
    # too), and given back if the write fails, so a failed encryption leaves the key as it was
    with key_use(store if store is not None else args.key, key.fingerprint, plain_sha256, used_for, allow_reuse):
        handle.save_ciphertext(output, ciphertext, meta, overwrite=args.overwrite)
    where = f"key store {args.keys}" if store is not None else args.key
    return (f"encrypted {source} -> {output} ({plain.shape} {plain.dtype}; cipher {args.cipher}; "
            f"key {key.fingerprint[:23]}… from {where})")


def decrypt(args: argparse.Namespace) -> str:
    source, output = Path(args.ciphertext), Path(args.output)
    credentials = store_credentials(args) if args.keys else None  # before any work: never ignored
    output_format = _check_paths(args, source, output, "ciphertext")
    handle = open_ciphertext(source)
    meta = handle.meta
    if output_format == "raster":
        check_storable(output, np.empty([1, 1, *meta.shape[2:]], dtype=meta.dtype))
    store = None if args.key else open_store(args, credentials=credentials)
    key = load_key(args.key) if args.key else store.load(meta.key_fingerprint)
    key_label = args.key or f"{key.fingerprint[:23]}… in {args.keys}"
    plain = _naming(f"{source} with key {key_label}", decrypt_array, handle.array, key.pixels, meta,
                    context=handle.context, in_place=True)  # the handle's array is ours, read for this
    handle.write_plaintext(output, plain, overwrite=args.overwrite)
    if store is not None:
        store.record_use("decrypt", key.fingerprint, file=str(source.resolve()))
    return f"decrypted {source} -> {output} ({plain.shape} {plain.dtype}; cipher {meta.cipher}; tag verified)"


def _main(prog: str, command: str, parser: argparse.ArgumentParser, action: Callable, argv: list[str] | None,
          interrupted: str) -> int:
    """Parse; a --batch command line goes to batch_cli, one file to `action`."""
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

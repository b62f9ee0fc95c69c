"""`dkg-encrypt` and `dkg-decrypt`: images ↔ ciphertext files (docs/cipher.md).

    dkg-encrypt IMG --key KEY.png -o OUT.png
    dkg-encrypt IMG --model G.onnx --seed SEED --keys KEYDIR -o OUT.png   # fresh key per file
    dkg-decrypt OUT.png --key KEY.png -o BACK.png        (or --keys KEYDIR)
    dkg-encrypt --batch IN_DIR ... / dkg-decrypt --batch ...   → batch_cli (whole folders)

A key encrypts one plaintext only: its use is recorded (KEY.json or the key store index)
and a second plaintext is refused unless --allow-key-reuse. Outputs are never the input,
never overwritten without --overwrite, written atomically. Errors are one line on stderr
(`dkg-encrypt: error: ...`) with a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from keras_dkg.errors import DkgError, InputError, OutputError
from keras_dkg.runtime.cipher import (
    KNOWN_CIPHERS,
    decrypt_array,
    encrypt_array,
    key_size_for,
    plaintext_digest,
)
from keras_dkg.runtime.containers import (
    container_for,
    context_for,
    load_ciphertext,
    read_plaintext,
    save_ciphertext,
    write_plaintext,
)
from keras_dkg.runtime.keys import load_key, mark_key_used, record_path_for
from keras_dkg.runtime.keystore import KeyStore
from keras_dkg.runtime.providers import PROVIDER_CHOICES


def _check_paths(source: Path, output: Path, overwrite: bool, key: str | None = None) -> None:
    """Fail before any work: missing input, output = input or key, existing output, bad format."""
    if not source.is_file():
        raise InputError(f"{source}: no such file")
    protected = [source] + ([Path(key), record_path_for(key)] if key else [])
    for path in protected:
        if output.resolve() == path.resolve() or (output.exists() and path.exists() and output.samefile(path)):
            raise OutputError(f"{output}: is an input ({path}); originals and keys are never overwritten")
    if output.exists() and not overwrite:
        raise OutputError(f"{output}: exists; refusing to overwrite (use --overwrite)")
    container_for(output)


def encrypt_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dkg-encrypt", description="Encrypt an image with a DeepKeyGen key (XOR + HMAC tag).")
    parser.add_argument("image", help="plaintext image (PNG/TIFF 8/16-bit gray/RGB/RGBA, or any image OpenCV reads)")
    parser.add_argument("-o", "--output", required=True, help="ciphertext file: .png or .tif (lossless only)")
    parser.add_argument("--key", help="an existing key: KEY.png with its KEY.json record")
    parser.add_argument("--model", help="generator .onnx: make a fresh key for this image (needs --seed, --keys)")
    parser.add_argument("--seed", help="seed image for the fresh key")
    parser.add_argument("--keys", help="key store folder where the fresh key is kept (created if missing)")
    parser.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto", help="onnxruntime provider (default: auto)")
    parser.add_argument("--cipher", choices=KNOWN_CIPHERS, default="xor", help="cipher (default: xor, the paper's)")
    parser.add_argument("--allow-key-reuse", action="store_true", help="allow a key that already encrypted another image")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


def decrypt_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dkg-decrypt", description="Verify and decrypt a dkg-encrypt ciphertext, bit-exact.")
    parser.add_argument("ciphertext", help="ciphertext file written by dkg-encrypt")
    parser.add_argument("-o", "--output", required=True, help="decrypted image: .png or .tif")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--key", help="KEY.png with its KEY.json record")
    group.add_argument("--keys", help="key store folder: the key is found by the ciphertext's key fingerprint")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


def encrypt(args: argparse.Namespace) -> str:
    source, output = Path(args.image), Path(args.output)
    if bool(args.key) == bool(args.model):
        raise InputError("give either --key KEY.png or --model M.onnx --seed SEED --keys DIR")
    if args.model and not (args.seed and args.keys):
        raise InputError("--model needs --seed (the seed image) and --keys (where the fresh key is stored)")
    _check_paths(source, output, args.overwrite, args.key)
    plain = read_plaintext(source)
    plain_sha256 = plaintext_digest(plain)
    if args.key:
        key = load_key(args.key)
        store = None
    else:
        from keras_dkg.runtime.keygen import KeyGenerator, random_nonce

        generator = KeyGenerator(args.model, provider=args.provider)
        key = generator.generate(args.seed, size=key_size_for(plain.shape, plain.dtype), nonce=random_nonce())
        store = KeyStore(args.keys, create=True)
        store.add(key)
    context = context_for(container_for(output), source)
    ciphertext, meta = encrypt_array(plain, key.pixels, cipher=args.cipher, nonce=key.record.get("nonce"), context=context)
    used_for = str(source.resolve())
    if store is not None:
        store.mark_used(key.fingerprint, plain_sha256, used_for, args.allow_key_reuse)
    else:
        mark_key_used(args.key, plain_sha256, used_for, args.allow_key_reuse)
    save_ciphertext(output, ciphertext, meta, overwrite=args.overwrite, source=source)
    where = f"key store {args.keys}" if store is not None else args.key
    return f"encrypted {source} -> {output} ({plain.shape} {plain.dtype}; key {key.fingerprint[:23]}… from {where})"


def decrypt(args: argparse.Namespace) -> str:
    source, output = Path(args.ciphertext), Path(args.output)
    _check_paths(source, output, args.overwrite, args.key)
    ciphertext, meta = load_ciphertext(source)
    key = load_key(args.key) if args.key else KeyStore(args.keys).load(meta.key_fingerprint)
    plain = decrypt_array(ciphertext, key.pixels, meta, context=context_for(container_for(source), source))
    write_plaintext(output, plain, overwrite=args.overwrite, source=source)
    return f"decrypted {source} -> {output} ({plain.shape} {plain.dtype}; tag verified)"


def _main(prog: str, parser: argparse.ArgumentParser, action: Callable, argv: list[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        print(action(args))
    except DkgError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except NotImplementedError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def encrypt_main(argv: list[str] | None = None) -> int:
    from keras_dkg.runtime import batch_cli  # `--batch IN_DIR`: whole folders (docs/batch.md)

    if batch_cli.wants_batch(argv):
        return batch_cli.encrypt_main(argv)
    return _main("dkg-encrypt", encrypt_parser(), encrypt, argv)


def decrypt_main(argv: list[str] | None = None) -> int:
    from keras_dkg.runtime import batch_cli  # `--batch OUT_DIR`: whole folders (docs/batch.md)

    if batch_cli.wants_batch(argv):
        return batch_cli.decrypt_main(argv)
    return _main("dkg-decrypt", decrypt_parser(), decrypt, argv)

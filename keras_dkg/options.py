"""Command-line options every tool spells the same way (one meaning per option name).

* `-o/--output` (alias `--out`): where the command writes — a file or a folder.
* `--seed`: a seed *image* (keygen, encrypt); random seeds are `--random-seed` (the old
  `--seed N` of fit, dkg-domain, dkg-analyze and diagnose is still accepted).
* `--provider`, `--cipher`, `--backend`, `--precision`: choices from the runtime's constants, never retyped.
* `--overwrite`, `--no-progress`.

Standard library only (any layer's CLI may use it; choices are imported where needed).
"""

from __future__ import annotations

import argparse


def add_output(parser, help: str, required: bool = False, dest: str = "output", **kwargs) -> argparse.Action:
    """`-o/--output`, also accepted as `--out`."""
    return parser.add_argument("-o", "--output", "--out", dest=dest, required=required, help=help, **kwargs)


def add_random_seed(parser, help: str, type=int, default: int = 0) -> argparse.Action:
    """`--random-seed N` (old spelling `--seed N` accepted)."""
    return parser.add_argument("--random-seed", "--seed", dest="seed", type=type, default=default, metavar="N",
                               help=help + " (old spelling: --seed)")


def add_provider(parser) -> argparse.Action:
    from keras_dkg.runtime.providers import PROVIDER_CHOICES

    return parser.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto",
                               help="onnxruntime provider (default: auto: CUDA when present)")


def add_key_engine(parser, generates: bool = True) -> None:
    """`--backend` (which engine runs the generator) and `--precision` (fp32 or bf16)."""
    from keras_dkg.runtime.engines import BACKEND_CHOICES, PRECISION_CHOICES

    note = "" if generates else " Decryption uses the stored key and runs no generator: accepted, unused."
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                        help="key engine: onnxruntime, openvino (the [openvino] extra), or auto: the one this "
                             "machine measures fastest, measured once and cached (default: auto; docs/performance.md)"
                             + note)
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="generator arithmetic: fp32 (the exported model's, Keras parity) or bf16 (CPUs with "
                             "native bf16; same key statistics, docs/performance.md); auto: bf16 where the engine "
                             "and CPU support it, else fp32 (default: auto)" + note)


def add_cipher(parser) -> argparse.Action:
    from keras_dkg.runtime.cipher import KNOWN_CIPHERS

    return parser.add_argument("--cipher", choices=KNOWN_CIPHERS, default="xor",
                               help="xor: the paper's XOR, authenticated (HMAC); hardened: HKDF + ChaCha20-Poly1305 "
                                    "(docs/hardened.md). Default: xor")


def add_overwrite(parser) -> argparse.Action:
    return parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def add_no_progress(parser) -> argparse.Action:
    return parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                               help="no progress bar (default: shown when stderr is a terminal and tqdm is installed)")


def add_store_key_file(parser, dest: str = "key_file", flag: str = "--key-file", what: str = "key store") -> argparse.Action:
    """`--key-file F`: a protected key store's 32-byte master key file, instead of its passphrase."""
    return parser.add_argument(flag, dest=dest, metavar="F",
                               help=f"the protected {what}'s 32-byte master key file, instead of a passphrase "
                                    "(DKG_KEYSTORE_PASSPHRASE, else a prompt; docs/keys.md, Custody)")

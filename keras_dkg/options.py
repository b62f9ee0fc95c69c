"""Command-line options every tool spells the same way (one meaning per option name).

* `-o/--output` (alias `--out`): where the command writes — a file or a folder.
* `--seed`: a seed *image* (keygen, encrypt); random seeds are `--random-seed` (the old
  `--seed N` of fit, dkg-domain, dkg-analyze and diagnose is still accepted).
* `--provider`, `--cipher`, `--backend`, `--precision`: the runtime's own (keras_dkg.runtime.cli.options).
* `--overwrite`, `--no-progress`.

Standard library only: any layer's CLI may use it, and it imports nothing of the project.
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

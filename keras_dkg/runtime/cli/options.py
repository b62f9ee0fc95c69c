"""The runtime commands' own options, their choices taken from the runtime's constants (never retyped).

`--provider` (onnxruntime execution provider), `--backend`/`--precision` (key engine),
`--cipher`. The options every layer's commands share are in keras_dkg.options.
"""

from __future__ import annotations

import argparse

from keras_dkg.runtime.ciphers.registry import KNOWN_CIPHERS
from keras_dkg.runtime.keys.engines.registry import (
    BACKEND_CHOICES,
    PRECISION_CHOICES,
    PROVIDER_CHOICES,
)


def add_provider(parser) -> argparse.Action:
    return parser.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto",
                               help="onnxruntime provider (default: auto: CUDA when present)")


def add_key_engine(parser, generates: bool = True) -> None:
    """`--backend` (which engine runs the generator) and `--precision` (fp32 or bf16)."""
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
    return parser.add_argument("--cipher", choices=KNOWN_CIPHERS, default="xor",
                               help="xor: the paper's XOR, authenticated (HMAC); hardened: HKDF + ChaCha20-Poly1305 "
                                    "(docs/hardened.md). Default: xor")

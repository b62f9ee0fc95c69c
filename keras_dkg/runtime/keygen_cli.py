"""`dkg-keygen --model M.onnx --seed IMG -o KEY.png`: make key images (TensorFlow-free).

Writes KEY.png (lossless, H×W×3 uint8) and KEY.json (shape, fingerprint, model and seed
SHA-256, nonce, provider, version, time). `--count N` writes KEY_000.png … from N
nonces in batched session runs: `--nonce X` gives nonces X:0 … X:N-1 (reproducible),
otherwise fresh random ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_dkg.errors import InputError, OutputError, run_cli
from keras_dkg.runtime.keygen import KeyGenerator, random_nonce
from keras_dkg.runtime.keys import record_path_for
from keras_dkg.runtime.preprocess import parse_size
from keras_dkg.runtime.providers import PROVIDER_CHOICES

PROG = "dkg-keygen"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Generate DeepKeyGen key images with onnxruntime.")
    parser.add_argument("--model", required=True, help="generator .onnx written by dkg-export onnx")
    parser.add_argument("--seed", required=True, help="seed image (PNG/TIFF/DICOM/...)")
    parser.add_argument("-o", "--output", required=True, help="key file KEY.png (record written as KEY.json)")
    parser.add_argument("--size", help="key size N or HxW (default: the seed's own size)")
    parser.add_argument("--nonce", help="nonce that perturbs the seed (default: none for one key, random for --count)")
    parser.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto", help="onnxruntime provider (default: auto)")
    parser.add_argument("--count", type=int, default=1, help="number of keys (KEY_000.png, ...; default: 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing key files")
    return parser


def output_paths(output: Path, count: int) -> list[Path]:
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}_{index:03d}{output.suffix}") for index in range(count)]


def nonces_for(nonce: str | None, count: int) -> list[str | None]:
    if count == 1:
        return [nonce]
    base = nonce if nonce is not None else random_nonce()
    return [f"{base}:{index}" for index in range(count)]


def run(args: argparse.Namespace) -> list[str]:
    if args.count < 1:
        raise InputError(f"--count must be at least 1, got {args.count}")
    output = Path(args.output)
    if output.suffix.lower() != ".png":
        raise OutputError(f"{output}: keys are written as lossless .png files")
    targets = output_paths(output, args.count)
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{output}: output folder {folder} does not exist")
    if not args.overwrite:
        for path in targets:
            for existing in (path, record_path_for(path)):
                if existing.exists():
                    raise OutputError(f"{existing}: exists; refusing to overwrite (use --overwrite)")
    generator = KeyGenerator(args.model, provider=args.provider)
    keys = generator.generate_many(args.seed, parse_size(args.size), nonces_for(args.nonce, args.count))
    lines, written = [], []
    try:
        for path, key in zip(targets, keys, strict=True):
            key.save(path, overwrite=args.overwrite)
            written.append(path)
            height, width, _ = key.shape
            lines.append(f"wrote {path} ({height}x{width}, {key.fingerprint[:23]}…, nonce {key.record['nonce']}, "
                         f"{key.record['provider']})")
    except BaseException:
        for path in written:  # all --count keys or none: no partial set is left behind
            path.unlink(missing_ok=True)
            record_path_for(path).unlink(missing_ok=True)
        raise
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: print(*run(args), sep="\n"))


if __name__ == "__main__":
    sys.exit(main())

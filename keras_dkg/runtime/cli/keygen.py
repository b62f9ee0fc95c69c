"""`dkg-keygen --model M.onnx --seed IMG -o KEY.png`: make key images (TensorFlow-free).

Writes KEY.png (lossless, H×W×3 uint8) and KEY.json (shape, fingerprint, model and seed
SHA-256, nonce, provider, version, time). `--count N` writes KEY_000.png … from N
nonces in batched session runs: `--nonce X` gives nonces X:0 … X:N-1 (reproducible),
otherwise fresh random ones.

Every output (each KEY.png and KEY.json) is checked by `OutputGuard` before the model is
loaded: never the seed or the model, never inside a key store, never an existing key (not
even with --overwrite), never another existing file without --overwrite. A key too large for one run is made in tiles; such a job first prints
what memory and time it needs (stdout), then writes its keys one at a time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_dkg.errors import InputError, OutputError, run_cli
from keras_dkg.runtime.cli.options import add_key_engine, add_provider
from keras_dkg.runtime.guards.outputs import OutputGuard
from keras_dkg.runtime.keys.artifact import record_path_for
from keras_dkg.runtime.keys.generator import (
    KeyGenerator,
    KeyJob,
    check_key_size,
    estimate_peak_bytes,
    estimate_seconds,
    random_nonce,
)
from keras_dkg.runtime.keys.nonces import DEFAULT_SCHEME, SCHEMES
from keras_dkg.runtime.keys.preprocess import parse_size

PROG = "dkg-keygen"
MAX_COUNT = 10_000  # keys per run: the nonces and file names are made up front


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Generate DeepKeyGen key images with onnxruntime.")
    parser.add_argument("--model", required=True, help="generator .onnx written by dkg-export onnx")
    parser.add_argument("--seed", required=True, help="seed image (PNG/TIFF/DICOM/...), or VOLUME.nii[.gz][:SLICE] "
                        "for one axial slice of a NIfTI volume (default: the middle one)")
    parser.add_argument("-o", "--output", required=True, help="key file KEY.png (record written as KEY.json)")
    parser.add_argument("--size", help="key size N or HxW (default: the seed's own size)")
    parser.add_argument("--nonce", help="nonce that gives this file its own key (default: none for one key, "
                        "random for --count)")
    parser.add_argument("--nonce-scheme", choices=SCHEMES, default=DEFAULT_SCHEME,
                        help="v3: one generator run of at most 256x256 per seed, ChaCha20-keyed permutations of its "
                             "key block by block (keys of any size as unrelated as independent keys with that "
                             "histogram); v2: the same with PCG64 and one run at the key's full size; v1: the first "
                             "round's perturbed seed (default: %(default)s; docs/keys.md)")
    add_provider(parser)
    add_key_engine(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="say which key engine runs and why (stderr)")
    parser.add_argument("--count", type=int, default=1, help="number of keys (KEY_000.png, ...; default: 1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing files at the output paths; never a key (a KEY.png with its KEY.json "
                             "record): a replaced key is a lost image, so delete an unwanted key yourself")
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


def job_note(job: KeyJob, count: int, generator: KeyGenerator) -> str:
    """What a tiled job will need, said before it starts (its keys are written one at a time)."""
    height, width = job.target
    tiles = len(job.plan.tiles) if job.plan is not None else 1
    side = job.plan.window if job.plan is not None else max(job.generation_size)
    tiling = {"tile_pixels": generator.tile_pixels, "tile_overlap": generator.tile_overlap}
    gib = estimate_peak_bytes(job.target, count, job.seed_nbytes, **tiling) / 2**30
    seconds = estimate_seconds(job.target, count, **tiling)
    return (f"{PROG}: {count} key(s) of {height}x{width} in {tiles} tiles of at most {side}x{side}: "
            f"about {gib:.1f} GiB of memory and {seconds:.0f} s on a 2-core CPU")


def run(args: argparse.Namespace) -> list[str]:
    if args.count < 1:
        raise InputError(f"--count must be at least 1, got {args.count}")
    if args.count > MAX_COUNT:
        raise InputError(f"--count {args.count} is over the limit of {MAX_COUNT} keys per run")
    size = parse_size(args.size)
    if size is not None:
        check_key_size(size, f"--size {args.size}")
    output = Path(args.output)
    if output.suffix.lower() != ".png":
        raise OutputError(f"{output}: keys are written as lossless .png files")
    targets = output_paths(output, args.count)
    guard = OutputGuard(inputs={"seed": args.seed, "model": args.model}, overwrite=args.overwrite)
    for path in targets:
        guard.check_file(path, "key")
        guard.check_file(record_path_for(path), "key record")
    generator = KeyGenerator(args.model, provider=args.provider, nonce_scheme=args.nonce_scheme,
                             backend=args.backend, precision=args.precision)
    if args.verbose:
        print(f"{PROG}: {generator.engine_choice}", file=sys.stderr)
    job = generator.prepare(args.seed, size)
    nonces = nonces_for(args.nonce, args.count)
    if generator.runs_tiled(job, nonces):
        print(job_note(job, args.count, generator), flush=True)
    keys = generator.keys(job, nonces)
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

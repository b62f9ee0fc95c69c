"""Transformation domains: source images encrypted with a chaotic image cipher.

The paper encrypts its source images "using the traditional chaotic system" without
saying which. We use a classic logistic-map permutation–diffusion cipher (docs/domains.md):

* keystream: 64 logistic maps x ← r·x·(1−x) run side by side (vectorised), r ∈ [3.99, 4)
  and x₀ drawn from SHA-256(master seed, image index, purpose); 1,000 warm-up iterations
  are discarded; each iteration emits ⌊x·2⁴⁰⌋ mod 256 per map;
* high security ("chaotic"): the image's bytes are permuted by the argsort of a second
  chaotic sequence, then diffused forward, c_i = c_{i−1} + s_i + k_i (mod 256), and
  backward, d_i = d_{i+1} + c_i (mod 256), so one changed plaintext byte changes ~99.6 %
  of the ciphertext bytes (the usual NPCR of a good image cipher);
* low security ("chaotic-low", paper Sec. V-C): no permutation, no diffusion, and a
  keystream cut to its low `low_bits` bits — the top bits of each pixel stay in the clear,
  so anatomy (the paper's "chest contour") shows through. A deliberately flawed design.

Each image gets its own key (the index is hashed in), so domain images are independent.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_dkg.errors import InputError, OutputError, run_cli
from keras_dkg.options import add_output, add_random_seed
from keras_dkg.runtime.formats.images import write_image
from keras_dkg.runtime.formats.sources import source_files, source_images
from keras_dkg.runtime.guards.atomic import write_bytes_atomic
from keras_dkg.runtime.keys.preprocess import preprocess_uint8

DOMAIN_KINDS = ("chaotic", "chaotic-low")
LANES = 64
WARMUP = 1000
DEFAULT_LOW_BITS = 6
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ChaoticCipher:
    """A logistic-map image cipher keyed by an integer master seed."""

    seed: int = 0
    kind: str = "chaotic"
    low_bits: int = DEFAULT_LOW_BITS

    def __post_init__(self):
        if self.kind not in DOMAIN_KINDS:
            raise InputError(f"domain kind must be one of {', '.join(DOMAIN_KINDS)}, got {self.kind!r}")
        if not 1 <= self.low_bits <= 8:
            raise InputError(f"low_bits must be in 1..8, got {self.low_bits}")

    def _logistic_bytes(self, index: int, purpose: str, count: int) -> np.ndarray:
        digest = hashlib.sha256(f"keras_dkg.domains|{self.seed}|{index}|{purpose}".encode()).digest()
        draws = np.random.default_rng(np.frombuffer(digest, dtype=np.uint32)).random((2, LANES))
        r = 3.99 + 0.00999 * draws[0]
        x = 0.05 + 0.9 * draws[1]
        for _ in range(WARMUP):
            x = r * x * (1.0 - x)
        steps = -(-count // LANES)
        out = np.empty((steps, LANES), dtype=np.uint8)
        for step in range(steps):
            x = r * x * (1.0 - x)
            out[step] = (np.floor(x * 2.0**40).astype(np.uint64) & 0xFF).astype(np.uint8)
        return out.reshape(-1)[:count]

    def _permutation(self, index: int, count: int) -> np.ndarray:
        order = self._logistic_bytes(index, "permutation", count * 4).view(np.uint32)
        return np.argsort(order, kind="stable")

    def encrypt(self, image: np.ndarray, index: int = 0) -> np.ndarray:
        """Encrypt a uint8 image (any shape) into a uint8 image of the same shape."""
        plain = np.ascontiguousarray(image, dtype=np.uint8).reshape(-1)
        keystream = self._logistic_bytes(index, "keystream", plain.size)
        if self.kind == "chaotic-low":
            mask = np.uint8((1 << self.low_bits) - 1)
            return (plain ^ (keystream & mask)).reshape(image.shape)
        shuffled = plain[self._permutation(index, plain.size)]
        forward = np.add.accumulate(shuffled + keystream, dtype=np.uint8)
        return np.add.accumulate(forward[::-1], dtype=np.uint8)[::-1].reshape(image.shape)

    def decrypt(self, cipher: np.ndarray, index: int = 0) -> np.ndarray:
        """Inverse of `encrypt` (the domain is a real cipher, not just noise)."""
        data = np.ascontiguousarray(cipher, dtype=np.uint8).reshape(-1)
        keystream = self._logistic_bytes(index, "keystream", data.size)
        if self.kind == "chaotic-low":
            mask = np.uint8((1 << self.low_bits) - 1)
            return (data ^ (keystream & mask)).reshape(cipher.shape)
        forward = data - np.concatenate([data[1:], [np.uint8(0)]])
        shuffled = forward - np.concatenate([[np.uint8(0)], forward[:-1]]) - keystream
        plain = np.empty_like(shuffled)
        plain[self._permutation(index, data.size)] = shuffled
        return plain.reshape(cipher.shape)


def byte_entropy(image: np.ndarray) -> float:
    """Shannon entropy (bits) of the bytes; the paper's eq. (10)."""
    from keras_dkg.analysis.metrics import entropy

    return float(entropy(np.asarray(image, dtype=np.uint8)))


def build_domain(source_dir: str | Path, out_dir: str | Path, kind: str = "chaotic", size: int | None = 256,
                 seed: int = 0, low_bits: int = DEFAULT_LOW_BITS, overwrite: bool = False) -> dict:
    """Encrypt every image of `source_dir` at `size` into PNGs in `out_dir`; return the manifest.

    The domain is built at the training size because resizing (averaging) cipher noise
    would lower its entropy.
    """
    cipher = ChaoticCipher(seed=seed, kind=kind, low_bits=low_bits)
    # images, and NIfTI volumes as their axial slices (read first: the count fixes the file names)
    sources = [item for path in source_files(source_dir) for item in source_images(path)]
    target = Path(out_dir)
    _check_outputs(Path(source_dir), target, len(sources), overwrite)
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{target}: cannot create the domain folder ({exc.strerror or exc})") from exc
    written: list[Path] = []
    try:
        return _build_domain(cipher, sources, target, kind, size, seed, low_bits, overwrite, written)
    except BaseException:
        # a bad source image (or a full disk) half-way leaves no partial domain behind
        for path in written:
            path.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                target.rmdir()
        raise


def _check_outputs(source_dir: Path, target: Path, count: int, overwrite: bool) -> None:
    """The output rule (runtime.guards.outputs) for the folder and every file, before any image is read."""
    from keras_dkg.runtime.guards.outputs import OutputGuard

    why = "its images would become sources of the next domain (choose a folder outside it)"
    guard = OutputGuard(inputs={"source folder": source_dir}, overwrite=overwrite,
                        outside={"source folder": (source_dir, why)})
    guard.check_folder(target, "domain folder")
    if target.is_dir():
        for name in [*(f"domain_{index:04d}.png" for index in range(count)), MANIFEST]:
            guard.check_file(target / name, "domain image" if name != MANIFEST else "domain manifest")


def _build_domain(cipher: ChaoticCipher, sources: list[tuple[Path, np.ndarray]], target: Path, kind: str,
                  size: int | None, seed: int, low_bits: int, overwrite: bool, written: list[Path]) -> dict:
    entries = []
    for index, (path, image) in enumerate(sources):
        plain = preprocess_uint8(image, size)
        encrypted = cipher.encrypt(plain, index)
        name = f"domain_{index:04d}.png"
        existed = (target / name).exists()
        write_image(target / name, encrypted, overwrite=overwrite)
        if not existed:
            written.append(target / name)
        entries.append({
            "file": name,
            "source": str(path),
            "source_sha256": hashlib.sha256(path.read_bytes() if path.is_file() else image.tobytes()).hexdigest(),
            "entropy": round(byte_entropy(encrypted), 6),
            "plain_entropy": round(byte_entropy(plain), 6),
        })
    manifest = {
        "kind": kind,
        "cipher": "logistic-map permutation+diffusion" if kind == "chaotic" else f"logistic-map XOR, low {low_bits} bits",
        "seed": seed,
        "low_bits": low_bits if kind == "chaotic-low" else None,
        "size": size,
        "count": len(entries),
        "mean_entropy": round(float(np.mean([e["entropy"] for e in entries])), 6),
        "mean_plain_entropy": round(float(np.mean([e["plain_entropy"] for e in entries])), 6),
        "images": entries,
    }
    write_bytes_atomic(target / MANIFEST, json.dumps(manifest, indent=2).encode(), overwrite=overwrite)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """`dkg-domain SOURCE_DIR -o OUT_DIR [--kind chaotic|chaotic-low] [--size N] [--seed N]`."""
    parser = argparse.ArgumentParser(
        prog="dkg-domain", description="Build a transformation domain by chaotic encryption of source images.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("source", help="folder of source images (PNG/JPEG/TIFF/DICOM)")
    add_output(parser, "output folder for domain PNGs and manifest.json", required=True, dest="out")
    parser.add_argument("--kind", choices=DOMAIN_KINDS, default="chaotic", help="high (chaotic) or low (chaotic-low) security")
    parser.add_argument("--size", type=int, default=256, help="square size of the domain images (use the training size)")
    add_random_seed(parser, "master seed of the chaotic cipher")
    parser.add_argument("--low-bits", type=int, default=DEFAULT_LOW_BITS, help="keystream bits kept by chaotic-low")
    parser.add_argument("--overwrite", action="store_true", help="replace existing domain images")
    args = parser.parse_args(argv)

    def build() -> None:
        manifest = build_domain(args.source, args.out, args.kind, args.size, args.seed, args.low_bits, args.overwrite)
        print(f"{manifest['count']} images -> {args.out}  kind={args.kind}  "
              f"mean entropy {manifest['mean_entropy']:.4f} (plain {manifest['mean_plain_entropy']:.4f})")

    return run_cli("dkg-domain", build)


if __name__ == "__main__":
    sys.exit(main())

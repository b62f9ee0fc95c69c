"""Per-file keys of one seed under nonce schemes v1, v2 and v3: their equal-byte share vs chance.

    python tools/nonce_relatedness.py MODEL.onnx SIZE [--blocks N]

Keys of the held-back CT seed for 8 nonces, all 28 pairs; "chance" is what two independent
keys with these keys' histograms would share (sum of p_a * p_b), SE its standard error.
`--blocks N` (default 16) adds v3's blocks within ONE large key (a volume's: a 256 × 256·N key
is N blocks of the 256² base key), all pairs of blocks, against the same chance: the slices of one volume must
be as unrelated as the keys of two files. onnxruntime fp32 throughout.
"""
import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_dkg.embedded import seed_path  # noqa: E402
from keras_dkg.runtime.keys.generator import KeyGenerator


def relatedness(keys: list[np.ndarray]) -> str:
    shares, chances = [], []
    for a, b in itertools.combinations(keys, 2):
        shares.append(float(np.mean(a == b)))
        pa = np.bincount(a.reshape(-1), minlength=256) / a.size
        pb = np.bincount(b.reshape(-1), minlength=256) / b.size
        chances.append(float((pa * pb).sum()))
    n = keys[0].size
    share, chance = np.mean(shares), np.mean(chances)
    se = math.sqrt(chance * (1 - chance) / n)
    return (f"equal-byte share {100*share:.3f} % (pairs {100*min(shares):.3f}-{100*max(shares):.3f}), "
            f"chance from histograms {100*chance:.3f} %, excess {(share-chance)/se:.1f} SE (one pair's SE {100*se:.3f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("size", type=int)
    parser.add_argument("--blocks", type=int, default=16)
    args = parser.parse_args()
    size = (args.size, args.size)
    for scheme in ("v1", "v2", "v3"):
        gen = KeyGenerator(args.model, provider="cpu", backend="onnxruntime", nonce_scheme=scheme)
        keys = [k.pixels for k in gen.generate_many(seed_path(), size, [f"n{i}" for i in range(8)])]
        print(f"{scheme}: {relatedness(keys)}")
    if args.blocks > 1:
        gen = KeyGenerator(args.model, provider="cpu", backend="onnxruntime", nonce_scheme="v3")
        side = 256  # v3's block: a key over 256x256 pixels is made of 256x256x3-byte blocks
        key = gen.generate(seed_path(), (side, side * args.blocks), "volume").pixels
        blocks = list(key.reshape(-1).reshape(args.blocks, -1))
        print(f"v3 blocks of one {side}x{side * args.blocks} key: {relatedness(blocks)}")


if __name__ == "__main__":
    main()

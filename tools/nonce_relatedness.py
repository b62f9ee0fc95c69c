"""Per-file keys of one seed under nonce schemes v1 and v2: their equal-byte share vs chance.

    python tools/nonce_relatedness.py MODEL.onnx SIZE

Keys of the held-back CT seed for 8 nonces, all 28 pairs; "chance" is what two independent
keys with these keys' histograms would share (sum of p_a * p_b), SE its standard error.
"""
import itertools
import math
import sys

import numpy as np

from keras_dkg.embedded import seed_path
from keras_dkg.runtime.keygen import KeyGenerator

model, size = sys.argv[1], int(sys.argv[2])
for scheme in ("v1", "v2"):
    gen = KeyGenerator(model, provider="cpu", nonce_scheme=scheme)
    keys = [k.pixels for k in gen.generate_many(seed_path(), (size, size), [f"n{i}" for i in range(8)])]
    shares, chances = [], []
    for a, b in itertools.combinations(keys, 2):
        shares.append(float(np.mean(a == b)))
        pa = np.bincount(a.reshape(-1), minlength=256) / a.size
        pb = np.bincount(b.reshape(-1), minlength=256) / b.size
        chances.append(float((pa * pb).sum()))
    n = keys[0].size
    share, chance = np.mean(shares), np.mean(chances)
    se = math.sqrt(chance * (1 - chance) / n)
    print(f"{scheme}: equal-byte share {100*share:.3f} % (pairs {100*min(shares):.3f}-{100*max(shares):.3f}), "
          f"chance from histograms {100*chance:.3f} %, excess {(share-chance)/se:.1f} SE (one pair's SE {100*se:.3f} %)")

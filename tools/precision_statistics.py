"""fp32 vs bf16 keys of one generator: the same key statistics, or not? (issue 27)

    python tools/precision_statistics.py MODEL.onnx [MODEL.onnx ...] [--size 128]

For each model, keys of the held-back CT seed are made by onnxruntime in fp32 and by
OpenVINO in bf16 (and in fp32, as a control), and the statistics `python -m
keras_dkg.diagnose` reports are computed on each: base-key entropy and χ² p, one-pixel
NPCR/UACI (4 seed pixels, base keys), nonce relatedness of 8 v3 keys vs chance, plus the
share of key bytes where the engine's key differs from onnxruntime fp32's. Needs the
[openvino] and [analysis] extras; no TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keras_dkg.analysis.metrics import chi_square_uniformity, entropy  # noqa: E402
from keras_dkg.diagnose.keys import one_pixel_twin  # noqa: E402
from keras_dkg.diagnose.statistics import nonce_relatedness, one_pixel_sensitivity  # noqa: E402
from keras_dkg.embedded import seed_path  # noqa: E402
from keras_dkg.runtime.keys.generator import KeyGenerator, load_seed  # noqa: E402
from keras_dkg.runtime.keys.preprocess import preprocess_uint8  # noqa: E402

ENGINES = (("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"))


def statistics(model: Path, backend: str, precision: str, size: int) -> tuple[dict, np.ndarray]:
    generator = KeyGenerator(model, backend=backend, precision=precision)
    seed = preprocess_uint8(load_seed(seed_path())[0], (size, size))
    base = generator.generate(seed, (size, size)).pixels
    rng = np.random.default_rng(0)
    pairs = [(base, generator.generate(one_pixel_twin(seed, rng)[0], (size, size)).pixels) for _ in range(4)]
    nonce_keys = [k.pixels for k in generator.generate_many(seed, (size, size), [f"n{i}" for i in range(8)])]
    sensitivity = one_pixel_sensitivity(pairs)
    related = nonce_relatedness(nonce_keys)
    return {"entropy": entropy(base), "chi2_p": chi_square_uniformity(base).p_value,
            "npcr": sensitivity["npcr"], "uaci": sensitivity["uaci"],
            "v3_equal": related["equal_share"], "v3_chance": related["chance"],
            "v3_excess_se": related["excess_se"]}, base


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    print("| model | engine | entropy | χ² p | one-pixel NPCR / UACI % | v3 nonce keys: equal % (chance %, SE) | "
          "key bytes ≠ onnxruntime fp32 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for model in args.models:
        reference = None
        for backend, precision in ENGINES:
            row, base = statistics(model, backend, precision, args.size)
            reference = base if reference is None else reference
            differ = float(np.mean(base != reference))
            print(f"| {model.parent.name or model.name} | {backend} {precision} | {row['entropy']:.4f} | "
                  f"{row['chi2_p']:.3g} | {row['npcr']:.1f} / {row['uaci']:.2f} | "
                  f"{100 * row['v3_equal']:.3f} ({100 * row['v3_chance']:.3f}, {row['v3_excess_se']:+.1f}) | "
                  f"{100 * differ:.1f} % |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

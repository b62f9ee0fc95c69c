"""`make demo`: the whole DeepKeyGen flow on the embedded data, on a CPU, in minutes.

1. trains a small generator (python -m keras_dkg.fit --recipe recommended, the recipe that
   measured best on key quality: docs/key_quality.md "Recipes") on the embedded brain EPI
   slices, against the chaotic domain it builds from them (resumes if the run exists);
2. exports it to ONNX (dkg-export, with its parity check);
3. generates a key from the held-back CT seed with onnxruntime only (dkg-keygen);
4. encrypts the embedded CT slice (16-bit DICOM pixels, via a 16-bit PNG) and decrypts it
   bit-exactly (dkg-encrypt / dkg-decrypt);
5. prints each key's entropy beside the paper's 7.98 and the ideal for its size, and the
   key statistics of python -m keras_dkg.diagnose (chi-square, one-pixel NPCR/UACI, nonce
   keys' agreement, D's accuracy), each beside its ideal.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np


def ideal_entropy(n_bytes: int) -> float:
    """Expected entropy of n uniformly random bytes (Miller–Madow bias): 8 − 255/(2 n ln 2)."""
    return 8.0 - 255.0 / (2.0 * n_bytes * math.log(2.0))


def print_key_statistics(out: Path) -> None:
    """The numbers docs/key_quality.md compares recipes by, for this run (python -m keras_dkg.diagnose)."""
    from keras_dkg.diagnose.report import diagnose

    report, _ = diagnose(out, nonces=8, pixel_pairs=4)
    bytes_, pixel, nonce = report["keys"]["bytes"], report["one_pixel"], report["nonce_keys"]
    curves = report["training"]
    tail = slice(-max(1, len(curves["steps"]) // 10), None)  # the last tenth of training
    d_acc = float(np.mean([(a + b) / 2 for a, b in zip(curves["d_acc_real"][tail], curves["d_acc_fake"][tail],
                                                          strict=True)]))
    n_bytes = report["image_size"] ** 2 * 3
    print("\nkey statistics (held-back CT seed, nonces 1..8; python -m keras_dkg.diagnose; ideal in brackets)")
    print(f"  entropy per key       {bytes_['entropy_per_image']:.4f}  (uniform key of this size {ideal_entropy(n_bytes):.4f})")
    print(f"  chi-square p, pooled  {bytes_['chi2_p_pooled']:.3g}  (uniform: above 0.01 in 99 % of keys)")
    print(f"  one seed pixel: NPCR  {pixel['npcr']:.1f} %, UACI {pixel['uaci']:.1f} %  (99.61 %, 33.46 %)")
    print(f"  v1 nonce keys equal   {100 * nonce['equal_share']:.2f} % of bytes  (chance for their histograms "
          f"{100 * nonce['chance']:.2f} %, for uniform keys {100 * nonce['uniform_chance']:.2f} %): the generator's "
          "own relatedness; per-file keys use nonce scheme v2, at chance by construction (docs/keys.md)")
    print(f"  D accuracy at the end {d_acc:.2f}  (0.50: D cannot tell keys from domain images)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--recipe", default="recommended", help="training recipe (python -m keras_dkg.fit --recipe)")
    args, fit_args = parser.parse_known_args()
    out = Path(args.out)
    started = time.time()

    from keras_dkg import embedded, fit
    from keras_dkg.analysis.metrics import entropy
    from keras_dkg.runtime.formats.images import read_image, write_image

    resume = ["--resume"] if (out / "run.json").is_file() else []
    code = fit.main(["--out", str(out), "--recipe", args.recipe, *fit_args, *resume])
    if code:
        return code
    print(f"\n[1/4] trained (recipe {args.recipe}) in {time.time() - started:.0f} s -> {out / 'generator.keras'}")

    from keras_dkg.export.cli import main as export_main
    from keras_dkg.runtime.cli.encrypt import decrypt_main, encrypt_main
    from keras_dkg.runtime.cli.keygen import main as keygen_main

    onnx_path = out / "generator.onnx"
    if not onnx_path.exists() and export_main(["onnx", str(out), "-o", str(onnx_path)]):
        return 1
    print(f"[2/4] exported -> {onnx_path}")

    seed = str(embedded.seed_path())
    key_path = out / "demo_key.png"
    if not key_path.exists() and keygen_main(["--model", str(onnx_path), "--seed", seed, "-o", str(key_path)]):
        return 1
    key = read_image(key_path)
    print(f"[3/4] key {key.shape} from the held-back CT seed -> {key_path}")

    plain_path = out / "ct_plain.png"
    if not plain_path.exists():
        ct = read_image(seed)
        write_image(plain_path, (ct.astype(np.int32) - ct.min()).astype(np.uint16))
    cipher_path, back_path, keys_dir = out / "ct_cipher.png", out / "ct_decrypted.png", out / "keys"
    for path in (cipher_path, back_path):
        path.unlink(missing_ok=True)
    if encrypt_main([str(plain_path), "--model", str(onnx_path), "--seed", seed, "--keys", str(keys_dir),
                     "-o", str(cipher_path)]):
        return 1
    if decrypt_main([str(cipher_path), "--keys", str(keys_dir), "-o", str(back_path)]):
        return 1
    exact = np.array_equal(read_image(plain_path), read_image(back_path))
    print(f"[4/4] 16-bit CT encrypted -> {cipher_path}; decrypted bit-exact: {exact}")

    print("\nkey entropies (bits/byte; paper Table III: 7.98 for 256x256x3 keys)")
    for path in sorted((out / "samples").glob("key_*.png"))[-3:] + [key_path]:
        image = read_image(path)
        print(f"  {path.name:28s} {image.shape!s:16s} entropy {entropy(image):.4f} "
              f"(ideal for its size {ideal_entropy(image.size):.4f})")
    cipher_bytes = read_image(cipher_path).view(np.uint8)
    print(f"  {'ciphertext ' + cipher_path.name:28s} {'(bytes)':16s} entropy {entropy(cipher_bytes):.4f} "
          f"(ideal for its size {ideal_entropy(cipher_bytes.size):.4f})")
    print_key_statistics(out)
    print(f"\ndemo finished in {time.time() - started:.0f} s")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())

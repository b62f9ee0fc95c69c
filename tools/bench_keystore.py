"""Key store custody costs: KDF, storing keys, unlocking, rotating and verifying a protected store.

    python tools/bench_keystore.py [--keys 10000] [--plain 1000] [--side 16]

A protected store (`dkg-keys init`, default Argon2id: 64 MiB, 3 passes, 4 lanes) is filled
with --keys random keys of --side² pixels, each with one recorded use, the way a batch does
(`KeyStore.add` with the plaintext: one sealed key file, one sealed index line, two audit
records, every write fsynced). Rotation does not touch key files, so the key size only
matters for the fill. A plain store with --plain keys is filled the same way, side by
side, for the ratio. Times are wall seconds on this machine; the per-key columns divide by
the number of keys.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keras_dkg.runtime.keys.artifact import Key, make_record  # noqa: E402
from keras_dkg.runtime.keystore import admin, sealing  # noqa: E402
from keras_dkg.runtime.keystore.custody import Credentials  # noqa: E402
from keras_dkg.runtime.keystore.store import KeyStore  # noqa: E402

PASS, NEW = "bench passphrase one", "bench passphrase two"


def keys(count: int, side: int) -> list[Key]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        out.append(Key(pixels, make_record(pixels, nonce="bench")))
    return out


def fill(store: KeyStore, batch: list[Key]) -> float:
    start = time.perf_counter()
    for i, key in enumerate(batch):
        store.add(key, f"{i:064x}", f"/archive/scan{i:07d}.png")
    return time.perf_counter() - start


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=10_000, help="keys in the protected store")
    parser.add_argument("--plain", type=int, default=1_000, help="keys in the plain store (ratio)")
    parser.add_argument("--side", type=int, default=16, help="key side in pixels")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one, removed)")
    args = parser.parse_args()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="dkg-bench-keystore-"))
    try:
        kdf = sealing.new_kdf(passphrase=True)
        argon = [timed(lambda: sealing.derive_kek(PASS.encode(), kdf, "bench")) for _ in range(5)]
        file_kdf = sealing.new_kdf(passphrase=False)
        hkdf = [timed(lambda: sealing.derive_kek(b"k" * 32, file_kdf, "bench")) for _ in range(5)]
        print(f"KDF: Argon2id {kdf['memory_kib'] // 1024} MiB, {kdf['iterations']} passes, {kdf['lanes']} lanes: "
              f"{statistics.median(argon):.3f} s median of 5; key file (HKDF-SHA-256): "
              f"{1e6 * statistics.median(hkdf):.0f} µs\n")
        batch = keys(max(args.keys, args.plain), args.side)
        rows = []
        plain = KeyStore(work / "plain", create=True)
        seconds = fill(plain, batch[:args.plain])
        rows.append(("fill plain store (add + use)", args.plain, seconds))
        store = admin.init_store(work / "protected", Credentials(passphrase=PASS))
        rows.append(("fill protected store (add + use)", args.keys, fill(store, batch[:args.keys])))
        rows.append(("unlock (KDF + open every index line)", args.keys,
                     timed(lambda: KeyStore(work / "protected", credentials=Credentials(passphrase=PASS)).entries())))
        rows.append(("rotate (new KDF, rewrap every data key)", args.keys,
                     timed(lambda: admin.rotate_store(work / "protected", Credentials(passphrase=PASS),
                                                      Credentials(passphrase=NEW)))))
        reopened = KeyStore(work / "protected", credentials=Credentials(passphrase=NEW))
        rows.append(("verify (open + check every key)", args.keys, timed(lambda: admin.verify_store(reopened))))
        rows.append(("audit (walk the chain, open every record)", args.keys,
                     timed(lambda: admin.audit_store(reopened))))
        print("| operation | keys | seconds | ms per key |")
        print("|---|---:|---:|---:|")
        for name, count, seconds in rows:
            print(f"| {name} | {count} | {seconds:.2f} | {1000 * seconds / count:.3f} |")
        plain_ms, protected_ms = (1000 * rows[0][2] / rows[0][1]), (1000 * rows[1][2] / rows[1][1])
        print(f"\nstoring a key: protected ÷ plain = {protected_ms / plain_ms:.2f} (same run)")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

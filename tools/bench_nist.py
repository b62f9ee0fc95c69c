"""Wall time of each NIST SP 800-22 test on 10^6 random bits.

    python tools/bench_nist.py [--bits N] [--repeat R] [--seed S]

Prints one row per test (best of R runs) and the total for ``run_all``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

try:
    from keras_dkg.analysis import nist
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from keras_dkg.analysis import nist


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=1_000_000, help="sequence length (default 10^6)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per test; the best is shown")
    parser.add_argument("--seed", type=int, default=0, help="numpy Generator seed")
    args = parser.parse_args(argv)
    if args.bits < 1 or args.repeat < 1:
        parser.error("--bits and --repeat must be >= 1")

    bits = np.random.default_rng(args.seed).integers(0, 2, args.bits, dtype=np.uint8)
    rows = []
    for name in nist.TESTS:
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            res = nist.run_all(bits, tests=[name])[0]
            times.append(time.perf_counter() - start)
        status = "n/a" if res.passed is None else ("pass" if res.passed else "FAIL")
        rows.append((name, 1000.0 * min(times), status, len(res.p_values)))
    start = time.perf_counter()
    nist.run_all(bits)
    total = time.perf_counter() - start

    width = max(len(r[0]) for r in rows)
    print(f"NIST SP 800-22 on {args.bits:,} random bits (seed {args.seed}, best of {args.repeat})")
    print(f"{'test':<{width}}  {'ms':>9}  {'result':>6}  {'p-values':>8}")
    print(f"{'-' * width}  {'-' * 9}  {'-' * 6}  {'-' * 8}")
    for name, ms, status, count in rows:
        print(f"{name:<{width}}  {ms:9.1f}  {status:>6}  {count:8d}")
    print(f"{'-' * width}  {'-' * 9}")
    print(f"{'sum of tests':<{width}}  {sum(r[1] for r in rows):9.1f}")
    print(f"{'run_all (once)':<{width}}  {1000.0 * total:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

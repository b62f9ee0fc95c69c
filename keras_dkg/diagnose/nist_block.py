"""NIST SP 800-22 on a run's held-back keys: the 15 tests on the first key, and by proportion
over all of them (`diagnose --nist`).

Two readings, because they answer different questions. *Strict* runs the battery on one key
(the first nonce key's bytes as bits) and counts the tests whose every p-value is ≥ 0.01.
*By proportion* runs it on each nonce key and applies the spec's Section 4.2.1 check per
p-value stream (keras_dkg.analysis.nist.summarize): a test passes when every one of its
streams' pass proportions lies in p̂ ± 3·sqrt(p̂(1−p̂)/m); with the default 8 keys that
interval needs all 8 to pass. Tests not applicable to a key's length count as neither.
"""

from __future__ import annotations

import numpy as np

from keras_dkg.analysis import nist


def nist_block(keys: np.ndarray) -> dict:
    """{"bits", "keys", "strict": {...}, "by_proportion": {...}} for a stack N×H×W×C uint8."""
    per_key = [nist.run_all(nist.bits_from_bytes(np.ascontiguousarray(key).reshape(-1))) for key in keys]
    first = per_key[0]
    applicable = [r.name for r in first if r.passed is not None]
    strict_passed = [r.name for r in first if r.passed]
    rows = nist.summarize(per_key)
    by_test: dict[str, bool] = {}
    for row in rows:
        by_test[row["name"]] = by_test.get(row["name"], True) and row["proportion_ok"]
    return {
        "bits": int(keys[0].size * 8), "keys": int(len(keys)),
        "strict": {"passed": len(strict_passed), "applicable": len(applicable),
                   "failed": sorted(set(applicable) - set(strict_passed)),
                   "not_applicable": sorted(r.name for r in first if r.passed is None)},
        "by_proportion": {"passed": sum(by_test.values()), "applicable": len(by_test),
                          "failed": sorted(name for name, ok in by_test.items() if not ok)},
    }

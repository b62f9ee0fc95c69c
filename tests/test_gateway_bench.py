"""tools/bench_gateway.py runs against a real Orthanc in CI (issue 25): a tiny setting of the load
bench — its rows, no failed C-STORE, every instance in Orthanc once. Speed is the bench's to
print, not this test's to check."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import gateway_kit as kit

pytestmark = pytest.mark.skipif(kit.servers_missing() is not None, reason=str(kit.servers_missing()))
pytest.importorskip("pynetdicom")

ROOT = Path(__file__).resolve().parents[1]


def test_the_load_bench_runs_against_real_orthanc(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_gateway.py"), "--senders", "2",
                           "--instances", "3", "--side", "32", "--model", "tiny", "--work", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| ([a-z -]+?(?:\([^)]*\))?) \| ([\d.]+) \|", done.stdout,
                                                        re.MULTILINE)}
    assert {"storescu direct", "direct", "pass-through", "gateway"} <= set(rows), done.stdout
    for line in done.stdout.splitlines():
        if line.startswith(("| direct ", "| pass-through ", "| gateway |")):
            assert line.split("|")[5].strip() == "0", line  # no failed C-STORE
    assert "Orthanc holds 6 instances after the gateway row (expected 6)" in done.stdout
    assert re.search(r"C-GET of one series \(3 instances\): direct [\d.]+/s, through the gateway [\d.]+/s", done.stdout)

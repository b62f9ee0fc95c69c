"""The committed reproduction report (reports/quick-cpu/) is the current code's.

The report names the commit it was generated from. It goes stale when keras_dkg/reproduce/
or the training recipes change after that commit, so this test fails then: regenerate it
with `python tools/reproduce_paper.py --quick --out DIR` from a committed state and copy
DIR/README.md, results.json and figures/ into reports/quick-cpu/ (docs/reproduce.md).
Outside a git checkout (an sdist, a wheel) there is no history to compare with: skipped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from keras_dkg.reproduce import provenance

REPORT = Path(__file__).resolve().parents[1] / "reports" / "quick-cpu"
STATED = re.compile(r"from commit `([0-9a-f]{40})`( with uncommitted changes)?")
MACHINE_PATHS = re.compile(r"(?<![\w.:/])/(?:work|tmp|root|home|Users|private|var|opt|usr|mnt)/")


def _stated() -> tuple[str, bool]:
    match = STATED.search((REPORT / "README.md").read_text(encoding="utf-8"))
    assert match, "reports/quick-cpu/README.md does not state the commit it was generated from"
    return match.group(1), bool(match.group(2))


def test_committed_report_is_not_older_than_its_code():
    if provenance.source_commit()["commit"] is None:
        pytest.skip("not a git checkout: no history to compare the report's commit with")
    stated, dirty = _stated()
    assert not dirty, "the committed report was generated with uncommitted changes; regenerate from a commit"
    assert provenance.git("cat-file", "-e", f"{stated}^{{commit}}") is not None, (
        f"the report's commit {stated[:12]} is not in this repository's history (rewritten?); regenerate it")
    last = provenance.last_change()
    assert last is not None
    assert provenance.is_ancestor(last, stated), (
        f"reports/quick-cpu was generated at {stated[:12]}, before the last change to "
        f"{', '.join(provenance.REPORT_SOURCES)} ({last[:12]}); regenerate it (module docstring)")


def test_committed_report_has_no_machine_paths():
    for name in ("README.md", "results.json"):
        text = (REPORT / name).read_text(encoding="utf-8")
        found = sorted(set(MACHINE_PATHS.findall(text)))
        assert not found, f"{name} names paths of the machine that made it: {found}"
    json.loads((REPORT / "results.json").read_text(encoding="utf-8"))


def test_staleness_check_sees_a_newer_change(tmp_path):
    """The mechanism itself: in a scratch repository a report commit older than a change is caught."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    try:
        git("init", "-q")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    source = tmp_path / "keras_dkg" / "reproduce"
    source.mkdir(parents=True)
    (source / "a.py").write_text("x = 1\n")
    git("add", "-A")
    git("commit", "-qm", "one")
    report_commit = git("rev-parse", "HEAD")
    assert provenance.is_ancestor(provenance.last_change(tmp_path), report_commit, tmp_path)
    (source / "a.py").write_text("x = 2\n")
    git("commit", "-qam", "two")
    assert not provenance.is_ancestor(provenance.last_change(tmp_path), report_commit, tmp_path)

"""Which source made a report: the git commit of the checkout the package runs from.

The committed report states its commit so a test (tests/test_report_fresh.py) can tell when
the report is older than the code that writes it. Outside a git checkout (an installed
wheel) there is no commit and the report says so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

#: The checkout root when the package runs from one (keras_dkg/reproduce/ -> repo).
ROOT = Path(__file__).resolve().parents[2]
#: What decides a report's content: a change under these makes a committed report stale.
REPORT_SOURCES = ("keras_dkg/reproduce", "keras_dkg/train/recipes.py")


def git(*args: str, root: Path = ROOT) -> str | None:
    """`git args` in `root`, stripped stdout; None when git or the checkout is missing."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_commit(root: Path = ROOT) -> dict:
    """{"commit": HEAD or None, "dirty": uncommitted changes to tracked package/tool files (None: unknown)}."""
    commit = git("rev-parse", "HEAD", root=root)
    if commit is None or git("rev-parse", "--show-toplevel", root=root) != str(root):
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no", "--", "keras_dkg", "tools", root=root)
    return {"commit": commit, "dirty": bool(status)}


def last_change(root: Path = ROOT, paths: tuple[str, ...] = REPORT_SOURCES) -> str | None:
    """The newest commit that touched `paths` (None outside a checkout)."""
    return git("log", "-1", "--format=%H", "--", *paths, root=root) or None


def is_ancestor(older: str, newer: str, root: Path = ROOT) -> bool:
    """True when commit `older` is `newer` or one of its ancestors."""
    try:
        done = subprocess.run(["git", "-C", str(root), "merge-base", "--is-ancestor", older, newer],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0

"""What a batch did, file by file: `FileResult`, `BatchReport` and the report file (JSON or CSV).

The report lists *every* entry under the input folder (docs/batch.md "Report"), so a
user can account for each file: done, resumed, failed, skipped (not opened, with why),
ignored (not an image) or interrupted (the batch stopped before it). `output` names a
file only when this run wrote it or kept it; a failed or interrupted file has none.

File names are text with surrogate escapes (how Python decodes non-UTF-8 names): the
JSON escapes them, the CSV writes the original bytes back (`surrogateescape`), so the
report names the real file either way.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from keras_dkg.common import printable
from keras_dkg.errors import DkgError, IntegrityError
from keras_dkg.runtime.guards.atomic import write_bytes_atomic

REPORT_NAME = "dkg-report.json"
PHASES = ("decode", "keygen", "keystore", "xor", "write", "verify")  # write: encode + write
REPORT_FORMAT = "keras_dkg batch report"  # marks our own reports (see `is_batch_report`)

ENCRYPTED, DECRYPTED, VERIFIED, RESUMED = "encrypted", "decrypted", "verified", "resumed"
FAILED, SKIPPED, IGNORED, INTERRUPTED = "failed", "skipped", "ignored", "interrupted"
STATUSES = (ENCRYPTED, DECRYPTED, VERIFIED, RESUMED, FAILED, SKIPPED, IGNORED, INTERRUPTED)
CSV_COLUMNS = ["path", "status", "reason", "output", "key_fingerprint", "key_file", "bytes", "shape", "dtype",
               "error", "worker"]
OLD_CSV_COLUMNS = CSV_COLUMNS[:-1]  # reports written before the worker column
MAX_LISTED_FAILURES = 20  # failure lines on stderr when the report file holds them all


@dataclass
class FileResult:
    """One entry's line in the report (`status` stays INTERRUPTED until its work is done)."""

    path: str  # relative to the input folder
    status: str = INTERRUPTED
    reason: str | None = None
    output: str | None = None  # relative to the output folder; only when written (or kept on resume)
    key_fingerprint: str | None = None
    key_file: str | None = None  # relative to the key store
    bytes: int = 0  # plaintext bytes
    shape: list[int] | None = None
    dtype: str | None = None
    error: str | None = None  # exception class, for failures
    worker: str | None = None  # who did it: "local@HOST:PID", or the Ray worker's shard name @HOST:PID


@dataclass
class BatchReport:
    """What a batch did: every entry's result, totals and the time per phase."""

    command: str
    input: str
    output: str | None
    keys: str
    started: str
    finished: str = ""
    elapsed_s: float = 0.0
    jobs: int = 1
    interrupted_by: str | None = None  # "SIGINT"/"SIGTERM" when the batch was stopped
    options: dict = field(default_factory=dict)
    timing_s: dict = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    files: list[FileResult] = field(default_factory=list)
    # why the report file could not be written (disk full, …); not a field: never in the file itself
    not_written = None

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == FAILED]

    @property
    def exit_code(self) -> int:
        """0: all good; 3: some tag failed (tampered/wrong key); 1: other failures, or the report
        file could not be written."""
        if not self.failed:
            return 1 if self.not_written else 0
        return 3 if any(f.error == IntegrityError.__name__ for f in self.failed) else 1

    def summary(self) -> dict:
        done = [f for f in self.files if f.status in (ENCRYPTED, DECRYPTED, VERIFIED)]
        total_bytes = sum(f.bytes for f in done)
        seconds = max(self.elapsed_s, 1e-9)
        counts = {status: self.count(status) for status in STATUSES}
        return {
            "files": len(self.files), **{k: v for k, v in counts.items() if v},
            "processed_bytes": total_bytes,
            "files_per_s": round(len(done) / seconds, 3),
            "mb_per_s": round(total_bytes / 1e6 / seconds, 3),
        }

    def to_dict(self) -> dict:
        data = {"format": REPORT_FORMAT, **asdict(self)}
        data["summary"] = self.summary()
        data["timing_s"] = {k: round(v, 6) for k, v in self.timing_s.items()}
        return data

    def summary_line(self) -> str:
        s = self.summary()
        parts = [f"{s.get(k)} {k}" for k in STATUSES if s.get(k)]
        return (f"{self.command}: {s['files']} files: {', '.join(parts) or 'nothing to do'} in "
                f"{self.elapsed_s:.2f} s ({s['files_per_s']:.2f} files/s, {s['mb_per_s']:.2f} MB/s)")

    def failure_lines(self, prog: str) -> list[str]:
        """One stderr line per failed file, names and reasons `printable` (a name holding a newline
        cannot forge a line); every failure when the report file was not written (stderr is then
        their only record), else the first MAX_LISTED_FAILURES."""
        failed = self.failed
        shown = failed if self.not_written else failed[:MAX_LISTED_FAILURES]
        lines = [f"{prog}: failed: {printable(f.path)}: {printable(f.reason or f.error or '')}" for f in shown]
        if len(failed) > len(shown):
            lines.append(f"{prog}: ... and {len(failed) - len(shown)} more failures")
        return lines

    def write_or_note(self, path: str | os.PathLike) -> Path | None:
        """`write`; when it fails (disk full, folder gone), keep why in `not_written` instead of
        raising: the batch is over, its per-file results must still reach the user."""
        try:
            return self.write(path)
        except (DkgError, OSError) as exc:
            self.not_written = f"the report {path} could not be written ({exc})"
            return None

    def to_bytes(self, suffix: str) -> bytes:
        """The report as JSON, or as CSV (one row per entry) when `suffix` is `.csv`."""
        if suffix.lower() != ".csv":
            return (json.dumps(self.to_dict(), indent=2) + "\n").encode("utf-8")
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for result in self.files:
            row = asdict(result)
            row["shape"] = "x".join(str(n) for n in result.shape) if result.shape else ""
            writer.writerow(row)
        return buffer.getvalue().encode("utf-8", "surrogateescape")

    def write(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """Write atomically (0600: it names plaintext files); the caller has checked the path."""
        target = Path(path)
        return write_bytes_atomic(target, self.to_bytes(target.suffix), overwrite=overwrite)


def is_batch_report(path: Path) -> bool:
    """Whether `path` holds a report an earlier batch wrote (JSON with our marker, or our CSV header)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    if path.suffix.lower() == ".csv":
        return head.split(b"\n", 1)[0].rstrip(b"\r") in (",".join(CSV_COLUMNS).encode(),
                                                          ",".join(OLD_CSV_COLUMNS).encode())
    return b'"format": "' + REPORT_FORMAT.encode() + b'"' in head

"""Run the bad-input matrix and print (or write) the table of docs/bad_inputs.md.

    python tools/bad_input_table.py            # run tests/test_bad_inputs*.py, print the Markdown table
    python tools/bad_input_table.py --write    # ... and replace the table in docs/bad_inputs.md

Every row is what a test run really produced: the command (paths relative to the case's
folder), the exit code and the exact error line, but for what differs from run to run
(`RUN_TO_RUN`: a protected store's random key file names, a fresh test model's size), shown
as a placeholder so that the table regenerates identically. The test module appends one JSON line
per case to the file named by DKG_BAD_INPUT_TABLE; this script sorts them into the
matrix's order and adds the rows for cases tested in other files.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "bad_inputs.md"
START, END = "<!-- table:start (tools/bad_input_table.py) -->", "<!-- table:end -->"

# Covered by other test files; listed so the table is the one place to look.
ELSEWHERE = [
    {"id": "batch-bad-file-mid-folder", "command": "dkg-encrypt --batch in -o out --keys ks ... (one corrupt PNG)",
     "bad_input": "a damaged file among good ones", "exit": 1,
     "message": "dkg-encrypt: failed: sub/e_corrupt.png: …/sub/e_corrupt.png: not a readable image (damaged, "
                "truncated or unsupported format)",
     "outputs": "every other file encrypted; no output for the bad one; listed in the report "
                "(tests/test_batch.py::test_corrupt_file_in_the_middle_is_reported_and_skipped)"},
    {"id": "batch-disk-full", "command": "dkg-encrypt --batch in -o out ... (ENOSPC on every output)",
     "bad_input": "disk full during a batch (simulated)", "exit": 1,
     "message": "dkg-encrypt: failed: a_gray16.png: …/a_gray16.png: write failed (No space left on device) (one per file)",
     "outputs": "no partial or temporary output; --resume finishes the job "
                "(tests/test_batch.py::test_disk_full_leaves_no_partial_output)"},
    {"id": "batch-interrupted", "command": "dkg-encrypt --batch ... --jobs 1 or 2 (SIGINT or SIGTERM mid-batch), "
     "then --resume", "bad_input": "batch stopped by Ctrl-C or kill", "exit": "130 / 143",
     "message": "dkg-encrypt: error: interrupted by SIGTERM: N of M files finished, the report out/dkg-report.json "
                "lists the unfinished ones as interrupted; rerun with --resume",
     "outputs": "workers ended (no process of the batch alive 5 s later, SIGKILL of the parent included), lock "
                "removed, no temporary file, the report lists every file; --resume: bit-exact decryptions "
                "(tests/test_batch_signals.py, tests/test_batch.py::test_kill_and_resume_equals_uninterrupted_run)"},
    {"id": "batch-tampered-archive", "command": "dkg-decrypt --batch out --keys ks --verify",
     "bad_input": "one encrypted DICOM in the archive edited", "exit": 3,
     "message": "dkg-decrypt: failed: g_rle.dcm: … authentication failed: …",
     "outputs": "nothing written (tests/test_batch.py::test_tampered_archive_fails_verification)"},
    {"id": "batch-other-key-store", "command": "dkg-decrypt --batch out -o back --keys other_keys",
     "bad_input": "another batch's key store", "exit": 1,
     "message": "dkg-decrypt: failed: …: no key with fingerprint … in this key store (per file) + hint "
                "\"no file's key is in KEY_DIR: wrong key store?\"",
     "outputs": "no plaintext written (tests/test_batch.py::test_wrong_key_store_is_a_clear_error)"},
    {"id": "custody-rotation-killed", "command": "dkg-keys rotate ks (killed after each phase: derive, index, "
     "commit, cleanup)", "bad_input": "a rotation that dies half-way", "exit": "—",
     "message": "(before the commit the old passphrase opens the store, after it the new one; never neither)",
     "outputs": "key files untouched, every key opens; an old index left after the commit is reported by dkg-keys "
                "verify and removed by the next rotate "
                "(tests/test_custody.py::test_rotation_killed_at_each_phase_leaves_one_working_master_key)"},
    {"id": "custody-protect-killed", "command": "dkg-keys protect ks (killed after each phase: keys, index, archive, "
     "commit, cleanup)", "bad_input": "a conversion to a protected store that dies half-way", "exit": "—",
     "message": "(before the commit still a plain store; after it protected, writers refused until protect is run "
                "again)", "outputs": "every key opens afterwards, no plaintext file left once protect is rerun "
                "(tests/test_custody.py::test_protect_killed_at_each_phase)"},
    {"id": "custody-stale-writer", "command": "a process that opened ks before dkg-keys rotate, then stores a key",
     "bad_input": "rotation while another process has the store open", "exit": 2,
     "message": "ks: the key store was rotated by another process while this one had it open; run the command "
                "again (with the new master key)",
     "outputs": "nothing appended under the old key (tests/test_custody.py::test_a_writer_opened_before_a_rotation_is_refused)"},
    {"id": "fit-resume-at-checkpoint", "command": "python -m keras_dkg.fit --steps 3 ...; then --steps 6 --resume",
     "bad_input": "training stopped at a checkpoint boundary", "exit": 0, "message": "(resumes)",
     "outputs": "weights equal the uninterrupted run's (tests/test_fit.py::test_resume_equals_uninterrupted_run)"},
]


def run_matrix(rows_file: Path) -> int:
    env = {**os.environ, "DKG_BAD_INPUT_TABLE": str(rows_file)}
    files = sorted(str(path) for path in (REPO / "tests").glob("test_bad_inputs*.py"))
    command = [sys.executable, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider"]
    return subprocess.run(command, cwd=REPO, env=env).returncode


#: what differs from one run to the next, so that the table regenerates identically: a protected
#: store's keyed file names (random per store) and the size of a freshly exported test model
RUN_TO_RUN = ((re.compile(r"\b[0-9a-f]{32}\.sealed\b"), "<keyed name>.sealed"),
              (re.compile(r"model is \d+ bytes"), "model is <size> bytes"))


def _stable(text: str) -> str:
    for pattern, placeholder in RUN_TO_RUN:
        text = pattern.sub(placeholder, text)
    return text


def _cell(text) -> str:
    return _stable(str(text)).replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[dict]) -> str:
    lines = [
        "| # | id | command | bad input | exit | message (stderr, one line, as produced) | outputs afterwards |",
        "|---:|---|---|---|---:|---|---|",
    ]
    for number, row in enumerate(rows, start=1):
        message = row["message"]
        shown = f"`{_cell(message)}`" if not message.startswith("(") else _cell(message)
        lines.append(f"| {number} | `{row['id']}` | `{_cell(row['command'])}` | {_cell(row['bad_input'])} | "
                     f"{row['exit']} | {shown} | {_cell(row['outputs'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"replace the table in {DOC.relative_to(REPO)}")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        rows_file = Path(folder) / "rows.jsonl"
        code = run_matrix(rows_file)
        rows = [json.loads(line) for line in rows_file.read_text(encoding="utf-8").splitlines()] if rows_file.exists() else []
    if code != 0:
        print(f"the matrix failed (pytest exit {code}); table not written", file=sys.stderr)
        return code
    table = markdown(rows + ELSEWHERE)
    if args.write:
        text = DOC.read_text(encoding="utf-8")
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        DOC.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")
        print(f"wrote {len(rows) + len(ELSEWHERE)} rows to {DOC}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

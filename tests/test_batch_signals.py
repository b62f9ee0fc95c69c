"""A batch stopped by SIGTERM or SIGINT (or its parent SIGKILLed) leaves no process behind,
only what `--resume` understands, and a report that lists every file.

Real processes: `dkg-encrypt --batch` runs as `python -m`-style subprocess with --jobs 1
and --jobs 2. A `sitecustomize.py` on PYTHONPATH slows each encryption down (in the
parent and in every spawned worker) so that the batch is still running when the test
signals it, right after the first output appears. While it runs, the test records every
descendant of the batch's process from /proc; 5 s after the signal none may be alive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from keras_dkg.runtime.cli.encrypt import decrypt_main, encrypt_main
from keras_dkg.runtime.formats.images import read_image, write_image

pydicom = pytest.importorskip("pydicom")
SEED = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
REPO = Path(__file__).resolve().parents[1]
FILES = 24
SLOW_S = 0.25  # per encryption: 24 files take >= 3 s with two workers
SLOW_HOOK = f"""
import os
if os.environ.get("DKG_TEST_SLOW_BATCH"):
    import time
    from keras_dkg.runtime import encryption
    _real = encryption.encrypt_array
    def _slow(*args, **kwargs):
        time.sleep({SLOW_S})
        return _real(*args, **kwargs)
    encryption.encrypt_array = _slow
"""
LAUNCH = "import sys\nfrom keras_dkg.runtime.cli.encrypt import encrypt_main\nsys.exit(encrypt_main(sys.argv[1:]))"


def _inputs(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    pixels = {}
    for i in range(FILES):
        relative = f"{'sub/' if i % 3 == 0 else ''}f{i:02d}.png"
        array = rng.integers(0, 65536 if i % 2 else 256, (12, 16), dtype=np.uint16 if i % 2 else np.uint8)
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        write_image(root / relative, array)
        pixels[relative] = array
    (root / "notes.txt").write_text("not an image")
    return pixels


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a process, from /proc/PID/stat; None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], fields[19]


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live descendant of `root`."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _stat(int(entry))) is not None:
            parents[int(entry)] = info
    found, frontier = {}, [root]
    while frontier:
        current = frontier.pop()
        for pid, (ppid, _, start) in parents.items():
            if ppid == current and pid not in found:
                found[pid] = start
                frontier.append(pid)
    return found


def _alive(processes: dict[int, str]) -> list[int]:
    """Those still running (a zombie is dead; a reused pid has another start time)."""
    alive = []
    for pid, start in processes.items():
        info = _stat(pid)
        if info is not None and info[1] != "Z" and info[2] == start:
            alive.append(pid)
    return alive


def _outputs(out: Path) -> list[Path]:
    return [p for p in out.rglob("*.png") if not p.name.startswith(".")]


def _start(tmp_path: Path, model: Path, jobs: int) -> tuple[subprocess.Popen, Path, Path, Path, dict]:
    source, out, keys = tmp_path / "in", tmp_path / "out", tmp_path / "keys"
    pixels = _inputs(source)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_HOOK)
    env = {**os.environ, "DKG_TEST_SLOW_BATCH": "1",
           "PYTHONPATH": os.pathsep.join([str(hook), str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", LAUNCH, "--batch", str(source), "-o", str(out), "--keys", str(keys),
               "--model", str(model), "--seed", str(SEED), "--jobs", str(jobs), "--no-progress", "--provider", "cpu"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, source, out, keys, pixels


def _run_until_first_output(process: subprocess.Popen, out: Path, jobs: int) -> dict[int, str]:
    """Wait for the first ciphertext (and, with jobs > 1, both workers), recording the batch's processes."""
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the batch ended before it was signalled: {process.communicate()}"
        seen.update(_descendants(process.pid))
        # jobs 2: chunks of 3 files, results come back per chunk; 5 outputs mean one chunk is done
        if len(_outputs(out)) >= (1 if jobs == 1 else 5):
            time.sleep(0.1)  # its results reach the parent
            seen.update(_descendants(process.pid))
            workers = [pid for pid in seen if "spawn_main" in _cmdline(pid)]
            assert len(workers) == (0 if jobs == 1 else jobs), [_cmdline(pid) for pid in seen]
            return seen
        time.sleep(0.05)
    raise AssertionError("no output appeared within 60 s")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _assert_none_survive(seen: dict[int, str], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while _alive(seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(seen), [(pid, _cmdline(pid)) for pid in _alive(seen)]


def _resume_is_bit_exact(tmp_path: Path, source: Path, out: Path, keys: Path, model: Path,
                         pixels: dict, capfd) -> None:
    capfd.readouterr()
    code = encrypt_main(["--batch", str(source), "-o", str(out), "--keys", str(keys), "--model", str(model),
                         "--seed", str(SEED), "--resume", "--no-progress", "--provider", "cpu"])
    printed = capfd.readouterr()
    assert code == 0, printed.err
    assert "resumed" in printed.out and "interrupted" not in printed.out, printed.out
    back = tmp_path / "back"
    assert decrypt_main(["--batch", str(out), "-o", str(back), "--keys", str(keys), "--no-progress"]) == 0
    for relative, array in pixels.items():
        restored = read_image(back / relative)
        assert restored.dtype == array.dtype, relative
        np.testing.assert_array_equal(restored, array, err_msg=relative)


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_batch_cleanly_and_resume_finishes_it(tmp_path, tiny_onnx_model, capfd, jobs, signum):
    process, source, out, keys, pixels = _start(tmp_path, tiny_onnx_model, jobs)
    try:
        seen = _run_until_first_output(process, out, jobs)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=5)  # the parent itself is gone within 5 s
    finally:
        if process.poll() is None:
            process.kill()
    _assert_none_survive(seen)

    assert process.returncode == 128 + signum, (process.returncode, stderr)
    name = signal.Signals(signum).name
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert stderr.startswith(f"dkg-encrypt: error: interrupted by {name}: "), stderr
    assert "rerun with --resume" in stderr, stderr
    assert not (out / ".dkg-batch.lock").exists()
    assert sorted(p.name for p in out.rglob(".*")) == []  # no temporary file left by a stopped worker
    assert oct((keys / "index.jsonl").stat().st_mode & 0o777) == "0o600"

    report = json.loads((out / "dkg-report.json").read_text())
    assert report["interrupted_by"] == name
    statuses = {f["path"]: f["status"] for f in report["files"]}
    assert sorted(statuses) == sorted([*pixels, "notes.txt"])  # every entry, once
    assert set(statuses.values()) <= {"encrypted", "interrupted", "ignored"}, statuses
    assert "interrupted" in statuses.values() and "encrypted" in statuses.values(), statuses
    for entry in report["files"]:
        if entry["status"] == "encrypted":
            assert (out / entry["output"]).is_file()
        else:
            assert entry["output"] is None, entry
    _resume_is_bit_exact(tmp_path, source, out, keys, tiny_onnx_model, pixels, capfd)


def test_workers_die_with_a_sigkilled_parent(tmp_path, tiny_onnx_model, capfd):
    """SIGKILL leaves no handler to run: the kernel ends the workers (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux only")
    process, source, out, keys, pixels = _start(tmp_path, tiny_onnx_model, 2)
    try:
        seen = _run_until_first_output(process, out, 2)
        process.kill()
        process.wait(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
    _assert_none_survive(seen)
    assert not (out / "dkg-report.json").exists()
    _resume_is_bit_exact(tmp_path, source, out, keys, tiny_onnx_model, pixels, capfd)

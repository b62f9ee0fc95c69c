"""A SIGKILLed Ray driver leaves no Ray behind (issue 23, class 10): `runtime/batch/engines/ray_reaper.py`.

Measured before the watcher (Ray 2.60): after `kill -9` of `dkg-encrypt --batch … --engine ray`,
its raylet's dashboard and runtime-env agents stayed alive for more than 60 s. The first tests
use a stand-in process tree (fast, no Ray); the last SIGKILLs a real batch driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

if not sys.platform.startswith("linux"):
    pytest.skip("the watcher reads /proc (Linux only)", allow_module_level=True)

DEADLINE_S = 20  # every Ray process of the session must be gone by then (SIGTERM, 2 s, SIGKILL)

# A stand-in driver: starts the watcher, then a "Ray" child naming its session folder (with a
# grandchild, as the raylet has agents and workers) and an unrelated child of its own; prints their
# pids, then waits for a word on stdin ("done": shut down like a batch that ends normally).
DRIVER = textwrap.dedent("""
    import os, subprocess, sys, time
    from keras_dkg.runtime.batch.engines import ray_reaper
    reaper = ray_reaper.start()
    session = f"/tmp/ray/session_2026-12-04_20-56-56_053573_{os.getpid()}"
    sleeper = [sys.executable, "-c", "import subprocess, sys, time; "
               "sys.argv[-1] == 'tree' and subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
               "time.sleep(600)"]
    ray_like = subprocess.Popen([*sleeper, f"--log_dir={session}/logs", "tree"])
    other = subprocess.Popen([*sleeper, "--not-ray", "leaf"])
    print(ray_like.pid, other.pid, flush=True)
    if sys.stdin.readline().strip() == "done":
        ray_like.kill(); ray_like.wait()  # "ray.shutdown()"
        reaper.release()
        print("released", flush=True)
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] != b"Z"


def _children(pid: int) -> list[int]:
    from keras_dkg.runtime.batch.engines.ray_reaper import descendants

    return sorted(descendants(pid))


def _wait_until(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def _stand_in(tmp_path: Path):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, start_new_session=True, cwd=tmp_path)
    ray_like, other = (int(pid) for pid in driver.stdout.readline().split())
    assert _wait_until(lambda: len(_children(ray_like)) == 1, 10), "the stand-in raylet's child did not start"
    grandchild = _children(ray_like)[0]
    time.sleep(1.5)  # the watcher notes the tree every 0.5 s
    return driver, ray_like, grandchild, other


def test_sigkill_of_the_driver_ends_its_ray_and_only_its_ray(tmp_path):
    driver, ray_like, grandchild, other = _stand_in(tmp_path)
    try:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        assert _wait_until(lambda: not _alive(ray_like) and not _alive(grandchild), DEADLINE_S)
        assert _alive(other), "a child of the driver that is not its Ray's was killed"
    finally:
        for pid in (ray_like, grandchild, other):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_batch_that_ends_normally_releases_the_watcher(tmp_path):
    driver, ray_like, grandchild, other = _stand_in(tmp_path)
    try:
        driver.stdin.write("done\n")
        driver.stdin.flush()
        assert driver.stdout.readline().strip() == "released"
        watchers = [pid for pid in _children(driver.pid) if pid not in (ray_like, grandchild, other)]
        assert not [pid for pid in watchers if _alive(pid)], "the watcher outlived its release"
        os.kill(driver.pid, signal.SIGKILL)  # a later death kills nothing: the watcher is gone
        driver.wait()
        time.sleep(1.0)
        assert _alive(other) and _alive(grandchild)  # (the stand-in killed only its "raylet")
    finally:
        for pid in (ray_like, grandchild, other):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_sigkilled_ray_batch_driver_leaves_no_ray_process(tmp_path, tiny_onnx_model):
    """The real thing: `dkg-encrypt --batch --engine ray` in a session of its own, SIGKILLed once its
    actors run; within DEADLINE_S no process of that session (GCS, raylet, agents, workers) runs."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'keras-dkg[ray]')")
    import numpy as np

    from keras_dkg.runtime.formats.images import write_image

    pydicom = pytest.importorskip("pydicom")
    seed = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"

    source = tmp_path / "in"
    source.mkdir()
    rng = np.random.default_rng(0)
    for index in range(400):
        write_image(source / f"{index:03d}.png", rng.integers(0, 1 << 16, (48, 48), dtype=np.uint16))
    argv = [sys.executable, "-c", "import sys; from keras_dkg.runtime.cli.encrypt import encrypt_main; "
            "sys.exit(encrypt_main(sys.argv[1:]))"]  # dkg-encrypt, from this interpreter
    driver = subprocess.Popen([*argv, "--batch", str(source), "-o", str(tmp_path / "out"), "--keys",
                               str(tmp_path / "ks"), "--model", str(tiny_onnx_model), "--seed", str(seed),
                               "--engine", "ray", "--workers", "2", "--no-progress"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              cwd=tmp_path)

    def session() -> dict[int, bytes]:
        """pid -> name of the running processes of the driver's session (Ray's inherit it)."""
        found = {}
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != driver.pid:
                try:
                    stat = Path(f"/proc/{name}/stat").read_bytes()
                except OSError:
                    continue
                fields = stat[stat.rfind(b")") + 2:].split()
                if int(fields[3]) == driver.pid and fields[0] != b"Z":
                    found[int(name)] = stat[stat.find(b"(") + 1:stat.rfind(b")")]
        return found

    try:
        started = _wait_until(lambda: sum(b"BatchActor" in n for n in session().values()) == 2, 180)
        assert started and driver.poll() is None, f"the Ray actors did not start: {session()}"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        assert _wait_until(lambda: not session(), DEADLINE_S), f"still running: {session()}"
    finally:
        for pid in session():
            os.kill(pid, signal.SIGKILL)

"""Multi-worker training: two TensorFlow workers on loopback ports (MultiWorkerMirroredStrategy, CPU).

The cluster test runs `python -m keras_dkg.fit` twice under one TF_CONFIG (ports found by
binding port 0), kills the non-chief worker after a checkpoint, checks that the chief
stops with the --resume hint, starts both again with --resume and checks that the run
completes: both workers end with the same weights, only the chief wrote the run folder
(the worker's files went to its scratch folder under its TMPDIR, removed at the end), and
the first steps' losses equal a one-worker run with the same global batch (so each
replica got its own share of every batch). Skipped, with the reason, when loopback ports
cannot be bound or the workers cannot connect. docs/training.md, "Multi-worker training".
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from keras_dkg.errors import TrainingError
from keras_dkg.train import cluster

SMALL = ["--image-size", "32", "--residual-blocks", "1", "--log-every", "1", "--no-progress"]
TINY = [*SMALL, "--batch-size", "2"]
STEPS, EVERY = 40, 4
RUN_FILES = {"run.json", "checkpoints", "data", "logs", "samples", "generator.keras"}
DIGEST = re.compile(r"final weights sha256 ([0-9a-f]{64})")
NO_CLUSTER = ("Address already in use", "Could not start gRPC server", "Failed to bind", "failed to connect to all",
              "Permission denied")


# --------------------------------------------------------------------------- no cluster needed


def test_tf_config_roles():
    assert cluster.role({}) == cluster.Role() and cluster.role({}).is_chief
    workers = {"cluster": {"worker": ["h:1", "h:2"]}}
    chief = cluster.role({"TF_CONFIG": json.dumps({**workers, "task": {"type": "worker", "index": 0}})})
    other = cluster.role({"TF_CONFIG": json.dumps({**workers, "task": {"type": "worker", "index": 1}})})
    assert chief.multi_worker and chief.is_chief and chief.workers == 2
    assert not other.is_chief and "worker" in other.describe()
    with_chief = {"cluster": {"chief": ["h:0"], "worker": ["h:1"]}}
    assert cluster.role({"TF_CONFIG": json.dumps({**with_chief, "task": {"type": "chief", "index": 0}})}).is_chief
    assert not cluster.role({"TF_CONFIG": json.dumps({**with_chief, "task": {"type": "worker", "index": 0}})}).is_chief
    one = {"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 0}}
    assert not cluster.role({"TF_CONFIG": json.dumps(one)}).multi_worker
    for bad, message in (("{not json", "not a usable cluster"),
                         (json.dumps({**workers, "task": {"type": "worker", "index": 2}}), "not one of its cluster"),
                         (json.dumps({"cluster": {"worker": ["h:1", "h:2"], "ps": ["h:3"]},
                                      "task": {"type": "worker", "index": 0}}), "ps tasks")):
        with pytest.raises(TrainingError, match=message):
            cluster.role({"TF_CONFIG": bad})


def test_batch_size_is_global_and_must_split_evenly():
    from keras_dkg.train.loop import per_replica_batch

    assert per_replica_batch(8, 4, "x") == 2 and per_replica_batch(1, 1, "x") == 1
    with pytest.raises(TrainingError, match=r"--batch-size 1 is the global batch.*multiple of 2; use --batch-size 2$"):
        per_replica_batch(1, 2, "MultiWorkerMirroredStrategy, 2 worker(s)")
    with pytest.raises(TrainingError, match=r"use --batch-size 4 or --batch-size 8"):
        per_replica_batch(5, 4, "x")


def test_each_replica_gets_its_own_share_of_every_global_batch():
    import tensorflow as tf

    from keras_dkg.train.data import replica_rows

    steps, batch = 3, 8
    columns = (np.arange(steps * batch).reshape(steps, batch), np.arange(steps * batch * 4).reshape(steps, batch, 4))
    assert replica_rows(columns, batch) is columns
    # 2 workers × 2 local replicas: worker w feeds replicas 2w, 2w+1 two consecutive elements per step
    shares = [replica_rows(columns, batch, tf.distribute.InputContext(2, w, 4)) for w in (0, 1)]
    for column in (0, 1):
        parts = [share[column].reshape(steps, 2, 2, *columns[column].shape[2:]) for share in shares]
        rebuilt = np.concatenate([p.reshape(steps, 4, *columns[column].shape[2:]) for p in parts], axis=1)
        np.testing.assert_array_equal(rebuilt, columns[column])
    assert shares[0][0][:2].tolist() == [[0, 1], [2, 3]] and shares[1][0][:2].tolist() == [[4, 5], [6, 7]]


MIRRORED_TWO_CPUS = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_dkg.train import loop
loop.select_strategy = lambda: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # as on two GPUs
from keras_dkg.fit import main
sys.exit(main(sys.argv[1:]))
"""


def _metrics(run: Path) -> dict[int, dict]:
    lines = (run / "logs" / "metrics.jsonl").read_text().splitlines()
    return {record["step"]: record for record in map(json.loads, lines)}  # a resumed step: its last line


def _assert_same_first_steps(run: Path, reference: Path, steps=(1, 2)) -> None:
    mine, theirs = _metrics(run), _metrics(reference)
    for step in steps:
        for name in ("g_loss", "d_loss", "d_acc_real", "d_acc_fake"):
            assert mine[step][name] == pytest.approx(theirs[step][name], rel=1e-4, abs=1e-6), (step, name)


def test_two_local_replicas_split_the_global_batch(tmp_path):
    """MirroredStrategy over two CPU devices (the path of one machine with two GPUs): one worker's batch of 4."""
    from keras_dkg import fit

    args = ["--steps", "2", "--checkpoint-every", "2", *SMALL, "--batch-size", "4"]
    done = subprocess.run([sys.executable, "-c", MIRRORED_TWO_CPUS, "--out", str(tmp_path / "two"), *args],
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "run.json").read_text())["summary"]
    assert (summary["strategy"], summary["replicas"], summary["per_replica_batch_size"]) == ("MirroredStrategy", 2, 2)
    assert fit.main(["--out", str(tmp_path / "one"), *args]) == 0
    _assert_same_first_steps(tmp_path / "two", tmp_path / "one")


# --------------------------------------------------------------------------- two workers


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    except OSError as exc:
        pytest.skip(f"cannot bind loopback ports for two TensorFlow workers: {exc}")
    finally:
        for sock in sockets:
            sock.close()


class Workers:
    """Two `python -m keras_dkg.fit` processes under one TF_CONFIG; logs in files, killed on exit."""

    def __init__(self, root: Path, session: str, args: list[str]):
        addresses = [f"127.0.0.1:{port}" for port in _free_ports(2)]
        self.logs = [root / f"{session}-worker{i}.log" for i in (0, 1)]
        self.procs = []
        for index, log in enumerate(self.logs):
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
                   "TMPDIR": str(root / f"tmp{index}"),
                   "TF_CONFIG": json.dumps({"cluster": {"worker": addresses},
                                            "task": {"type": "worker", "index": index}})}
            (root / f"tmp{index}").mkdir(exist_ok=True)
            with open(log, "w") as handle:
                self.procs.append(subprocess.Popen([sys.executable, "-m", "keras_dkg.fit", *args], env=env,
                                                   stdout=handle, stderr=subprocess.STDOUT))

    def text(self, index: int) -> str:
        return self.logs[index].read_text(errors="replace")

    def check_started(self) -> None:
        """Skip when a worker died because the cluster could not form; fail on any other early exit."""
        for index, proc in enumerate(self.procs):
            if proc.poll() is not None and proc.returncode != 0:
                text = self.text(index)
                reason = next((marker for marker in NO_CLUSTER if marker in text), None)
                if reason:
                    self.kill()
                    pytest.skip(f"the two-worker collective could not start on loopback ({reason})")
                raise AssertionError(f"worker {index} exited with {proc.returncode}:\n{text[-3000:]}")

    def wait(self, index: int, timeout: float) -> int:
        try:
            return self.procs[index].wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.kill()
            raise AssertionError(f"worker {index} still running after {timeout} s:\n{self.text(index)[-3000:]}") from exc

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _wait_for(pattern: str, root: Path, workers: Workers, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not list(root.glob(pattern)):
        workers.check_started()
        assert all(p.poll() is None for p in workers.procs), "a worker finished before the checkpoint appeared"
        assert time.monotonic() < deadline, f"no {pattern} after {timeout} s:\n{workers.text(0)[-3000:]}"
        time.sleep(0.05)


def test_two_workers_train_one_model_and_resume_after_a_worker_is_killed(tmp_path):
    from keras_dkg import fit
    from keras_dkg.train import checkpoints

    out = tmp_path / "run"
    args = ["--steps", str(STEPS), "--checkpoint-every", str(EVERY), "--out", str(out), *TINY]

    # 1. both workers train; the non-chief is killed once both have written the first checkpoint
    first = Workers(tmp_path, "first", args)
    checkpoint = f"checkpoints/{checkpoints.PREFIX}{EVERY:08d}/state.json"
    try:
        _wait_for(f"run/{checkpoint}", tmp_path, first, timeout=240)
        _wait_for(f"tmp1/keras_dkg-worker1-*/{checkpoint}", tmp_path, first, timeout=60)
        first.procs[1].kill()
        assert first.wait(0, timeout=120) != 0
    finally:
        first.kill()
    assert "start every worker again with --resume" in first.text(0), first.text(0)[-3000:]
    scratch = list((tmp_path / "tmp1").glob("keras_dkg-worker1-*"))
    assert len(scratch) == 1 and checkpoints.list_checkpoints(scratch[0] / "checkpoints"), \
        "the killed worker wrote its checkpoints to its scratch folder"
    kept = checkpoints.list_checkpoints(out / "checkpoints")[-1]
    resumed_from = int(kept.name.removeprefix(checkpoints.PREFIX))
    assert EVERY <= resumed_from < STEPS

    # 2. both again with --resume: the run completes, the workers agree, only the chief wrote --out
    second = Workers(tmp_path, "second", [*args, "--resume"])
    try:
        codes = [second.wait(index, timeout=240) for index in (0, 1)]
    finally:
        second.kill()
    assert codes == [0, 0], (second.text(0)[-3000:], second.text(1)[-3000:])
    digests = [DIGEST.findall(second.text(index)) for index in (0, 1)]
    assert digests[0] and digests[0] == digests[1], "the workers end with different weights"
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert summary["status"] == "finished" and summary["steps_done"] == STEPS
    assert summary["steps_this_session"] == STEPS - resumed_from
    assert summary["weights_sha256"] == digests[0][0]
    assert (summary["strategy"], summary["replicas"], summary["workers"]) == ("MultiWorkerMirroredStrategy", 2, 2)
    assert (summary["global_batch_size"], summary["per_replica_batch_size"]) == (2, 1)
    assert summary["task"].startswith("chief")
    assert checkpoints.list_checkpoints(out / "checkpoints")[-1].name == f"{checkpoints.PREFIX}{STEPS:08d}"
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert not list((tmp_path / "tmp1").glob("keras_dkg-*")), "the worker's scratch folder (and the killed one's) is gone"

    # 3. the same first steps as one worker with the same global batch
    single = tmp_path / "single"
    assert fit.main(["--steps", "2", "--checkpoint-every", "2", "--out", str(single), *TINY]) == 0
    _assert_same_first_steps(out, single)

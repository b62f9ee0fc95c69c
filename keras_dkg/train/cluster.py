"""This process's place in a multi-worker training: TF_CONFIG read once, no TensorFlow.

`MultiWorkerMirroredStrategy` runs when TF_CONFIG's cluster lists more than one task
(`chief` and `worker` entries together). Every task runs the same training in lockstep;
the chief is the `chief` task, or worker 0 when the cluster has no `chief` entry (the
rule of tf.distribute and of the TensorFlow multi-worker guide). Only the chief writes the
run folder. Every other worker writes the same files to a scratch folder of its own
(the guide's "write to a temporary path"), removed when its run ends, so all tasks run
the same code, collectives and saves included, and nothing of theirs reaches `--out`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from keras_dkg.errors import TrainingError

TASK_TYPES = ("chief", "worker")


@dataclass(frozen=True)
class Role:
    """One task of the cluster; a process without TF_CONFIG is the chief of a cluster of one."""

    task_type: str | None = None
    task_id: int = 0
    workers: int = 1  # training tasks in the cluster (chief + workers)
    has_chief_task: bool = False

    @property
    def multi_worker(self) -> bool:
        return self.workers > 1

    @property
    def is_chief(self) -> bool:
        if self.task_type is None or self.task_type == "chief":
            return True
        return self.task_type == "worker" and self.task_id == 0 and not self.has_chief_task

    @property
    def index(self) -> int:
        """This task's position among the training tasks (the chief task first)."""
        if self.task_type == "worker" and self.has_chief_task:
            return self.task_id + 1
        return self.task_id

    def describe(self) -> str:
        if not self.multi_worker:
            return "single worker"
        return f"{'chief' if self.is_chief else 'worker'} ({self.task_type} {self.task_id}) of {self.workers} workers"


def role(environ=None) -> Role:
    """The Role TF_CONFIG describes (TrainingError when it is malformed or names another task type)."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not raw or not raw.strip():
        return Role()
    try:
        spec = json.loads(raw)
        if not isinstance(spec, dict):
            raise ValueError("not a JSON object")
        cluster = spec.get("cluster") or {}
        task = spec.get("task") or {}
        if not isinstance(cluster, dict) or not isinstance(task, dict):
            raise ValueError('"cluster" and "task" must be objects')
        counts = {name: len(cluster.get(name) or []) for name in TASK_TYPES}
        task_type = task.get("type")
        task_id = int(task.get("index", 0))
    except (ValueError, TypeError) as exc:
        raise TrainingError(f"TF_CONFIG is not a usable cluster description ({exc})") from exc
    workers = sum(counts.values())
    if workers <= 1:
        return Role()
    other = sorted(set(cluster) - set(TASK_TYPES))
    if other:
        raise TrainingError(f"TF_CONFIG lists {', '.join(other)} tasks: multi-worker training "
                            "(MultiWorkerMirroredStrategy) uses only chief and worker tasks")
    if task_type not in TASK_TYPES or not 0 <= task_id < counts[task_type]:
        raise TrainingError(f"TF_CONFIG's task {task_type!r} {task_id} is not one of its cluster's "
                            f"{counts['chief']} chief and {counts['worker']} worker tasks")
    return Role(task_type, task_id, workers, counts["chief"] > 0)


def scratch_folder(out: Path, this: Role) -> Path:
    """The empty folder where a non-chief worker writes what the chief writes to `out`.

    Under the system's temporary folder (TMPDIR), named by the task and the run folder's
    absolute path: a worker started again (--resume after a crash) first removes what a
    killed one left there.
    """
    digest = hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"keras_dkg-{this.task_type}{this.task_id}-{Path(out).name}-{digest}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def remove_scratch(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)

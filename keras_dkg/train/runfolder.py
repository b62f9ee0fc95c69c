"""The run folder of one training: checked, created or reopened, recorded in run.json.

`run.json` holds every resolved option (written first, completed at the end — like
pix2pix's train_opt.txt). A fresh run that fails before its first checkpoint leaves
nothing behind; a resumed run must match the recorded options (config.RESUME_FIELDS).
No Keras here: the CLI checks a run folder before the training stack loads.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

import keras_dkg
from keras_dkg.errors import TrainingError
from keras_dkg.train import checkpoints, recipes
from keras_dkg.train.config import TrainConfig

RUN_FILE = "run.json"


def recorded_recipe(out: Path) -> str | None:
    """The recipe a run folder's run.json names; None if unreadable (prepare reports that)."""
    try:
        recorded = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))["options"]
        name = recorded.get("recipe", recipes.DEFAULT) if isinstance(recorded, dict) else None
        return name if isinstance(name, str) else None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None


def check_outputs(config: TrainConfig) -> None:
    """The output rule (runtime.guards.outputs): a run folder is never an input, inside one, or in a key store."""
    from keras_dkg.runtime.guards.outputs import OutputGuard

    inputs = {"source folder": config.source, "domain folder": config.domain, "seed image": config.seed_image}
    why = "the run's own images would be read as training data (choose an --out outside it)"
    outside = {label: (inputs[label], why) for label in ("source folder", "domain folder")}
    OutputGuard(inputs=inputs, outside=outside).check_folder(Path(config.out), "run folder")


def prepare(config: TrainConfig, create: bool = True) -> dict | None:
    """Create or reopen the run folder; return the previous run.json when resuming.

    `create=False` (a non-chief worker of a multi-worker run, which reads the chief's folder
    and writes elsewhere) makes the same checks and creates nothing.
    """
    out = Path(config.out)
    check_outputs(config)
    record = out / RUN_FILE
    has_checkpoints = bool(checkpoints.list_checkpoints(out / "checkpoints"))
    if not config.resume:
        if has_checkpoints or (out / "generator.keras").exists():
            raise TrainingError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")
        if create:
            out.mkdir(parents=True, exist_ok=True)
        return None
    if not record.is_file() or not has_checkpoints:
        shared = "" if create else " (every worker reads the chief's --out: it must be on a shared filesystem)"
        raise TrainingError(f"{out}: nothing to resume (no run.json or no checkpoint){shared}")
    try:
        previous = json.loads(record.read_text(encoding="utf-8"))
        if not isinstance(previous, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TrainingError(f"{record}: cannot read the run settings to resume ({exc}); use a new --out") from exc
    changed = config.resume_mismatches(previous.get("options", {}))
    if changed:
        raise TrainingError(f"{out}: --resume with different settings ({', '.join(changed)}); use a new --out")
    return previous


def discard_failed(out: Path, before: list[Path] | None) -> None:
    """A fresh run that failed before its first checkpoint leaves nothing behind.

    Only what this run created goes (the folder itself when the run made it); once a
    checkpoint exists the folder is kept for --resume.
    """
    if checkpoints.list_checkpoints(out / "checkpoints"):
        return
    if before is None:
        shutil.rmtree(out, ignore_errors=True)
        return
    for path in set(out.iterdir()) - set(before):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def write_record(config: TrainConfig, summary: dict, versions: dict | None = None) -> Path:
    """Write run.json atomically: the options, the summary so far, versions and machine."""
    from keras_dkg.runtime.guards.atomic import write_bytes_atomic

    record = {
        "options": config.options(),
        "image_size": config.image_size,
        "summary": summary,
        "versions": {"keras_dkg": keras_dkg.__version__, **(versions or {}), "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
    }
    path = Path(config.out) / RUN_FILE
    write_bytes_atomic(path, json.dumps(record, indent=2).encode(), overwrite=True)
    return path

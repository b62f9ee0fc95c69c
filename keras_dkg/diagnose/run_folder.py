"""What a `python -m keras_dkg.fit` run folder holds, read without TensorFlow.

run.json (options), logs/metrics.jsonl (per-window means of D's and G's metrics; older
runs only have TensorBoard event files, whose scalars are running means since the last
checkpoint and are read with the `tensorboard` package when it is installed), samples/
(the held-back seed's key at every checkpoint) and the domain images the run trained on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from keras_dkg import embedded
from keras_dkg.analysis import metrics
from keras_dkg.errors import InputError
from keras_dkg.runtime.formats.images import read_image
from keras_dkg.runtime.formats.sources import list_images
from keras_dkg.runtime.keys.preprocess import preprocess_uint8

METRICS_LOG = "metrics.jsonl"  # keras_dkg.train.loop.METRICS_LOG (not imported: it needs TF)
SAMPLE = re.compile(r"key_step(\d+)\.png$")
MAX_DOMAIN_IMAGES = 64


def read_run(run_dir: str | Path) -> dict:
    """run.json as a dict; InputError naming the folder when it is not a run."""
    record = Path(run_dir) / "run.json"
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{run_dir}: not a run folder of python -m keras_dkg.fit (no run.json)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{record}: cannot read the run record ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("options"), dict):
        raise InputError(f"{record}: not a run record (no options)")
    return data


def training_curves(run_dir: str | Path) -> dict:
    """{"source": ..., "steps": [...], metric: [...]}: the metrics log, else TensorBoard scalars."""
    log = Path(run_dir) / "logs" / METRICS_LOG
    if log.is_file():
        by_step: dict[int, dict] = {}
        for line in log.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                by_step[int(entry["step"])] = entry  # a resumed run rewrites steps after its checkpoint
        return _columns(METRICS_LOG + " (means over each logging window)", [by_step[s] for s in sorted(by_step)])
    return _tensorboard_curves(Path(run_dir) / "logs")


def _columns(source: str, entries: list[dict]) -> dict:
    names = sorted({k for e in entries for k in e} - {"step", "steps"})
    curves = {"source": source, "steps": [int(e["step"]) for e in entries]}
    curves.update({n: [e.get(n) for e in entries] for n in names})
    return curves


def _tensorboard_curves(logs: Path) -> dict:
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util.tensor_util import make_ndarray
    except ImportError:
        return {"source": None, "steps": []}
    by_step: dict[int, dict] = {}
    for path in sorted(logs.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                # the sample key's entropy is measured from samples/ instead
                if value.HasField("tensor") and not value.tensor.string_val and value.tag != "sample_key_entropy":
                    by_step.setdefault(event.step, {"step": event.step})[value.tag] = float(make_ndarray(value.tensor))
    entries = [by_step[s] for s in sorted(by_step)]
    return _columns("TensorBoard scalars (running means since the last checkpoint)", entries)


def sample_keys(run_dir: str | Path) -> list[tuple[int, np.ndarray]]:
    """(step, key) of every samples/key_stepN.png, oldest first."""
    found = []
    for path in (Path(run_dir) / "samples").glob("key_step*.png"):
        match = SAMPLE.search(path.name)
        if match:
            found.append((int(match.group(1)), read_image(path)))
    return sorted(found, key=lambda item: item[0])


def entropy_over_steps(samples: list[tuple[int, np.ndarray]]) -> list[dict]:
    """Entropy and saturation of the held-back seed's key at each checkpoint."""
    return [{"step": step, "entropy": metrics.entropy(key), "saturated_share": float(np.mean((key == 0) | (key == 255)))}
            for step, key in samples]


def domain_folder(run_dir: str | Path, options: dict) -> Path | None:
    """The transformation-domain folder the run trained on (built into the run folder by default)."""
    if options.get("domain"):
        return Path(options["domain"])
    folder = Path(run_dir) / "data" / f"domain-{options.get('domain_kind')}-{options.get('image_size')}"
    return folder if folder.is_dir() else None


def domain_images(folder: Path | None, size: int, gray: bool = False,
                  limit: int = MAX_DOMAIN_IMAGES) -> np.ndarray | None:
    """Up to `limit` domain images at the training size, as D saw them (`gray`: --domain-gray)."""
    if folder is None or not folder.is_dir():
        return None
    paths = list_images(folder)[:limit]
    if not paths:
        return None
    stack = np.stack([preprocess_uint8(read_image(p), size) for p in paths])
    return np.repeat(stack[..., :1], 3, axis=-1) if gray else stack


def seed_image_path(options: dict, override: str | None = None) -> Path:
    """The held-back seed: the one given, else the run's --seed-image, else the embedded CT slice."""
    return Path(override or options.get("seed_image") or embedded.seed_path())

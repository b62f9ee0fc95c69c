"""Trainings of a reproduction on the backend its profile asks for.

TensorFlow trainings run in-process (`keras_dkg.train.train`, one TensorFlow import for
the whole pipeline). A JAX training cannot share that process (Keras picks its backend
once, and the export stage needs TensorFlow), so it runs as `python -m keras_dkg.fit
--backend jax ...` in a subprocess, with the same options, and the stage reads the run
folder it leaves. Either way a run folder with a checkpoint resumes (`--resume`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from keras_dkg.errors import TrainingError
from keras_dkg.train import recipes
from keras_dkg.train.config import RECIPE_FIELDS

BACKEND_CHOICES = ("auto", "tensorflow", "jax")
#: TrainConfig field -> `fit` flag for the settings that are not recipe options
PLAIN_FLAGS = {"out": "--out", "source": "--source", "domain": "--domain", "domain_kind": "--domain-kind",
               "domain_seed": "--domain-seed", "seed_image": "--seed-image", "image_size": "--image-size",
               "steps": "--steps", "batch_size": "--batch-size", "seed": "--seed",
               "checkpoint_every": "--checkpoint-every", "backend": "--backend", "log_every": "--log-every"}


def gpu_backend() -> str | None:
    """JAX's default backend when JAX sees an accelerator ("gpu"/"tpu"), else None.

    Asked in a subprocess: initialising JAX here would claim GPU memory the trainings need.
    """
    probe = "import jax; print(jax.default_backend())"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    backend = done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else ""
    return backend if backend in ("gpu", "cuda", "rocm", "tpu") else None


def resolve_backend(requested: str) -> str:
    """"auto" -> "jax" with an accelerator visible to JAX, else "tensorflow"; others as given."""
    if requested not in BACKEND_CHOICES:
        raise TrainingError(f"backend {requested!r} is not one of {', '.join(BACKEND_CHOICES)}")
    if requested != "auto":
        return requested
    return "jax" if gpu_backend() else "tensorflow"


def fit_argv(config) -> list[str]:
    """The `python -m keras_dkg.fit` arguments that rebuild `config` (every option explicit)."""
    argv = ["--recipe", config.recipe, "--no-progress"]
    for field, flag in PLAIN_FLAGS.items():
        value = getattr(config, field)
        if value is not None:
            argv += [flag, str(value)]
    for dest in recipes.PAPER:
        value = getattr(config, RECIPE_FIELDS.get(dest, dest))
        flag = "--" + dest.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else f"--no-{flag[2:]}")
        elif value is not None:
            argv += [flag, str(value)]
    return argv + (["--jit-compile"] if config.jit_compile else [])


@dataclass
class FitResult:
    """What a subprocess training leaves: its run.json summary."""

    summary: dict


def run_fit_subprocess(config, resume: bool) -> FitResult:
    """`python -m keras_dkg.fit` for `config`; TrainingError with its last stderr lines when it fails."""
    import json

    command = [sys.executable, "-m", "keras_dkg.fit", *fit_argv(config), *(["--resume"] if resume else [])]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise TrainingError(f"fit --backend {config.backend} failed (exit {done.returncode}): "
                            f"{done.stderr.strip()[-1500:]}")
    record = json.loads((Path(config.out) / "run.json").read_text(encoding="utf-8"))
    return FitResult(summary=record["summary"])

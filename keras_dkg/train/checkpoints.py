"""Training checkpoints: weights of G and D, both optimizers' state, and the step.

A checkpoint is a folder `ckpt-00000500/` holding `generator.weights.h5`,
`discriminator.weights.h5`, `optimizers.npz`, `state.json` and, when the model has
training state outside its networks (`model.state_variables`: the image pool, the key
predictor's weights and optimizer), `state.npz`.
It is written under a
temporary name and renamed when complete, so a killed run never leaves a half checkpoint
that `--resume` would pick up. The newest `keep` checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from keras_dkg.errors import TrainingError

PREFIX = "ckpt-"


def _optimizer_arrays(model) -> dict[str, np.ndarray]:
    arrays = {}
    for label, optimizer in (("g", model.g_optimizer), ("d", model.d_optimizer)):
        for index, variable in enumerate(optimizer.variables):
            arrays[f"{label}_{index:04d}"] = np.asarray(variable.numpy())
    return arrays


def save(model, folder: str | Path, step: int, extra: dict | None = None, keep: int = 2) -> Path:
    """Write checkpoint `step` under `folder` atomically; prune old ones."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    temporary = root / f".tmp-{PREFIX}{step:08d}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    model.generator.save_weights(temporary / "generator.weights.h5")
    model.discriminator.save_weights(temporary / "discriminator.weights.h5")
    np.savez(temporary / "optimizers.npz", **_optimizer_arrays(model))
    state = getattr(model, "state_variables", [])  # the --d-history pool, the --predictor-weight P
    if state:
        np.savez(temporary / "state.npz", **{f"s_{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(state)})
    (temporary / "state.json").write_text(json.dumps({"step": step, **(extra or {})}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(temporary, final)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(folder)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").is_file())


def restore(model, checkpoint: Path) -> dict:
    """Load weights and optimizer state into a compiled model; return the saved state."""
    try:
        model.generator.load_weights(checkpoint / "generator.weights.h5")
        model.discriminator.load_weights(checkpoint / "discriminator.weights.h5")
        model.build_optimizers()
        with np.load(checkpoint / "optimizers.npz") as saved:
            for label, optimizer in (("g", model.g_optimizer), ("d", model.d_optimizer)):
                variables = optimizer.variables
                keys = sorted(k for k in saved.files if k.startswith(f"{label}_"))
                if len(keys) != len(variables):
                    raise TrainingError(
                        f"{checkpoint}: optimizer state has {len(keys)} arrays, model expects {len(variables)} "
                        "(different architecture?)"
                    )
                for key, variable in zip(keys, variables, strict=True):
                    variable.assign(saved[key])
        state = getattr(model, "state_variables", [])
        if state:
            with np.load(checkpoint / "state.npz") as saved:
                for index, variable in enumerate(state):
                    variable.assign(saved[f"s_{index:04d}"])
        return json.loads((checkpoint / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{checkpoint}: cannot restore checkpoint ({exc})") from exc

"""Table XXI: mean key entropy on held-out seeds over learning rate × batch size × steps.

As in the paper (Sec. V-A) the source is split 90 % / 10 %: the generator trains on the
90 % (against a chaotic domain built from them) and every held-out image seeds one key.
One training per (lr, batch size) is stopped at each row's step count, its generator is
saved, exported to ONNX and evaluated, and the training resumes (`fit --resume`) to the
next row — so the rows are checkpoints of one run, like the paper's "epochs". A training
that stops on a non-finite loss gives no key: its row and all later rows are null, the
paper's "NaN".
"""

from __future__ import annotations

import math
import shutil

import numpy as np

from keras_dkg.common import short_error
from keras_dkg.errors import DkgError, TrainingError
from keras_dkg.reproduce.profiles import grid_name
from keras_dkg.reproduce.runner import Context
from keras_dkg.reproduce.stages import export_model, run_training, train_config
from keras_dkg.runtime.formats.sources import list_images


def grid_checkpoint_every(ctx: Context) -> int:
    return math.gcd(ctx.profile.checkpoint_every, *(steps for steps, _ in ctx.profile.grid_rows))


def evaluate(ctx: Context, model) -> dict:
    """Keys (ONNX, onnxruntime) from every held-out seed; their entropies and mean."""
    from keras_dkg.analysis.metrics import entropy
    from keras_dkg.runtime.keys.generator import KeyGenerator

    manifest = ctx.plaintext_manifest()
    generator = KeyGenerator(model)
    entropies = [entropy(generator.generate(path, ctx.image_size()).pixels)
                 for path in list_images(manifest["grid"]["validation"])]
    return {"mean_entropy": float(np.mean(entropies)), "entropies": entropies}


def grid_row(ctx: Context, lr: float, batch_size: int, steps: int, paper_epochs: int) -> dict:
    name = grid_name(lr, batch_size)
    run_dir = ctx.path("hparams", "runs", name)
    config = train_config(ctx, run_dir, "grid_high", blocks=6, seed=0, steps=steps, lr=lr,
                          batch_size=batch_size, source=ctx.plaintext_manifest()["grid"]["train"],
                          checkpoint_every=grid_checkpoint_every(ctx))
    row = {"lr": lr, "batch_size": batch_size, "steps": steps, "paper_epochs": paper_epochs}
    try:
        run_training(config)
    except TrainingError as exc:  # a diverged run is a result of the grid, not a failure of it
        ctx.log(f"  {name} at {steps} steps: training stopped — {short_error(exc, 300)}")
        return row | {"mean_entropy": None, "status": "diverged", "message": short_error(exc, 500)}
    snapshot = ctx.path("hparams", "snapshots", f"{name}_{steps}.keras")
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "generator.keras", snapshot)
    try:
        model = ctx.path("hparams", "models", f"{name}_{steps}.onnx")
        model.parent.mkdir(parents=True, exist_ok=True)
        export_model(ctx, str(snapshot), model, training_size=ctx.image_size())
        evaluation = evaluate(ctx, model)
    except DkgError as exc:  # NaN weights fail the parity check or key generation
        ctx.log(f"  {name} at {steps} steps: no key — {exc}")
        return row | {"mean_entropy": None, "status": "no key", "message": short_error(exc, 500)}
    ctx.log(f"  {name} at {steps} steps: mean key entropy {evaluation['mean_entropy']:.4f}")
    return row | evaluation | {"status": "ok"}


def grid_config(ctx: Context, lr: float, batch_size: int) -> dict:
    name = grid_name(lr, batch_size)
    rows, stopped = [], False
    for steps, paper_epochs in ctx.profile.grid_rows:
        if stopped:
            rows.append({"lr": lr, "batch_size": batch_size, "steps": steps, "paper_epochs": paper_epochs,
                         "mean_entropy": None, "status": "not reached (training stopped earlier)"})
            continue
        row = ctx.stage(f"hparams/{name}/{steps}", lambda c, s=steps, p=paper_epochs: grid_row(c, lr, batch_size, s, p))
        stopped = row["status"] != "ok"
        rows.append(row)
    return {"lr": lr, "batch_size": batch_size, "rows": rows}


def stage_hparams(ctx: Context) -> dict:
    configs = {}
    for lr in ctx.profile.grid_lrs:
        for batch_size in ctx.profile.grid_batch_sizes:
            name = grid_name(lr, batch_size)
            configs[name] = ctx.stage(f"hparams/{name}", lambda c, a=lr, b=batch_size: grid_config(c, a, b),
                                      f"lr {lr:g}, batch size {batch_size}")
    manifest = ctx.plaintext_manifest()
    return {"configs": configs, "validation_count": manifest["grid"]["validation_count"],
            "train_count": manifest["grid"]["train_count"], "checkpoint_every": grid_checkpoint_every(ctx)}

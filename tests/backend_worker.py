"""Run k real train steps on the backend KERAS_BACKEND names, from given weights and data.

    KERAS_BACKEND=jax python tests/backend_worker.py CASE.npz OUT_DIR new [old ...]

CASE.npz holds the source and domain images (uint8) and the initial weights of G and D
(lists g_000…, d_000…). The steps run through keras_dkg.train.loop's runner for the
backend (the code `python -m keras_dkg.fit` runs), so tests/test_backends.py compares the
two backends' real steps. OUT.npz gets each step's values and the final weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def run_one(arrays: dict, label: str, steps: int, out: Path) -> None:
    """`steps` steps of the step `label` from the case's weights; saved to out/label.npz."""
    import keras

    from keras_dkg.train import loop
    from keras_dkg.train.config import TrainConfig
    from keras_dkg.train.data import ImageFolder
    from keras_dkg.train.model import DeepKeyGen

    size, batch = arrays["source"].shape[1], int(arrays["batch"])
    folders = [ImageFolder(Path(name), [Path(name)] * len(arrays[name]), arrays[name]) for name in ("source", "domain")]
    original = DeepKeyGen.compile
    DeepKeyGen.compile = lambda self, *a, **k: original(self, *a, **k, reuse_generator_pass=label == "new")
    try:
        config = TrainConfig(out=str(out), image_size=size, steps=steps, batch_size=batch, residual_blocks=1,
                             backend=keras.config.backend(), checkpoint_every=steps)
        runner = (loop.JaxRunner if config.backend == "jax" else loop.TensorFlowRunner)(config, *folders, out)
    finally:
        DeepKeyGen.compile = original
    model = runner.model
    for prefix, network in (("g", model.generator), ("d", model.discriminator)):
        network.set_weights([arrays[f"{prefix}_{i:03d}"] for i in range(len(network.weights))])
    seen: list[dict] = []

    class Recorder(loop.StepMonitor):
        def record(self, values):
            seen.append(values)
            return super().record(values)

    runner.run(0, steps, Recorder(0, log_every=1, bar=None))
    names = sorted(seen[0])
    np.savez(out / f"{label}.npz", names=np.array(names), replicas=runner.devices["replicas"],
             values=np.array([[v[n] for n in names] for v in seen]),
             **{f"g_{i:03d}": w for i, w in enumerate(model.generator.get_weights())},
             **{f"d_{i:03d}": w for i, w in enumerate(model.discriminator.get_weights())})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case")
    parser.add_argument("out")
    parser.add_argument("steps", nargs="+", choices=["new", "old"])
    parser.add_argument("--count", type=int, default=3, help="train steps per run")
    args = parser.parse_args()
    with np.load(args.case) as case:
        arrays = {k: case[k] for k in case.files}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for label in args.steps:
        run_one(arrays, label, args.count, out)


if __name__ == "__main__":
    sys.exit(main())

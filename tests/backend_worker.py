"""Run k real train steps on the backend KERAS_BACKEND names, from given weights and data.

    KERAS_BACKEND=jax python tests/backend_worker.py CASE.npz OUT.npz [--old-step] [--batch N]

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case")
    parser.add_argument("out")
    parser.add_argument("--old-step", action="store_true")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    import keras

    from keras_dkg.train import loop
    from keras_dkg.train.config import TrainConfig
    from keras_dkg.train.data import ImageFolder
    from keras_dkg.train.model import DeepKeyGen

    with np.load(args.case) as case:
        arrays = {k: case[k] for k in case.files}
    size = arrays["source"].shape[1]
    folders = [ImageFolder(Path(name), [Path(name)] * len(arrays[name]), arrays[name]) for name in ("source", "domain")]
    if args.old_step:
        original = DeepKeyGen.compile
        DeepKeyGen.compile = lambda self, *a, **k: original(self, *a, **k, reuse_generator_pass=False)
    config = TrainConfig(out="unused", image_size=size, steps=args.steps, batch_size=args.batch, residual_blocks=1,
                         backend=keras.config.backend(), checkpoint_every=args.steps)
    runner = (loop.JaxRunner if config.backend == "jax" else loop.TensorFlowRunner)(config, *folders, Path("unused"))
    model = runner.model
    for prefix, network in (("g", model.generator), ("d", model.discriminator)):
        network.set_weights([arrays[f"{prefix}_{i:03d}"] for i in range(len(network.weights))])
    seen: list[dict] = []

    class Recorder(loop.StepMonitor):
        def record(self, values):
            seen.append(values)
            return super().record(values)

    runner.run(0, args.steps, Recorder(0, log_every=1, bar=None))
    names = sorted(seen[0])
    np.savez(args.out, names=np.array(names), replicas=runner.devices["replicas"], values=np.array([[v[n] for n in names] for v in seen]),
             **{f"g_{i:03d}": w for i, w in enumerate(model.generator.get_weights())},
             **{f"d_{i:03d}": w for i, w in enumerate(model.discriminator.get_weights())})


if __name__ == "__main__":
    sys.exit(main())

"""Training-time cost of the key objectives: train steps per second of each configuration, measured
in one process, interleaved, so the machine's load hits every configuration alike (docs/key_quality.md).

    nice -n 15 python tools/objectives_cost.py [--size 64] [--steps 40] [--rounds 3]

Random images stand in for the data (the cost of a step does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dkg.train.losses import KeyObjectives, Stabilizers  # noqa: E402
from keras_dkg.train.model import DeepKeyGen  # noqa: E402

CONFIGS = {
    "paper": ({}, {}),
    "r1=1": ({"r1_gamma": 1.0}, {}),
    "sens1": ({}, {"sensitivity_weight": 1.0}),
    "unif1": ({}, {"uniformity_weight": 1.0}),
    "pred1": ({}, {"predictor_weight": 1.0}),
    "r1+sens+unif+pred": ({"r1_gamma": 1.0}, {"sensitivity_weight": 1.0, "uniformity_weight": 1.0,
                                              "predictor_weight": 1.0}),
}


def build(size: int, aids: dict, goals: dict):
    """A compiled model and its traced train step for one configuration."""
    keras.utils.set_random_seed(0)
    model = DeepKeyGen(num_residual_blocks=6)
    model.compile(stabilizers=Stabilizers(**aids), objectives=KeyObjectives(**goals), image_shape=(size, size, 3))
    model.build_optimizers()
    return tf.function(model.train_step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    batch = tuple(tf.constant(rng.uniform(-1, 1, (1, args.size, args.size, 3)), tf.float32) for _ in range(2))
    steps = {name: build(args.size, *config) for name, config in CONFIGS.items()}
    for step in steps.values():
        step(batch)  # trace
    seconds = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            for _ in range(args.steps):
                step(batch)
            seconds[name].append((time.perf_counter() - started) / args.steps)
    paper = np.median(seconds["paper"])
    print("| config | steps/s | time per step vs paper |\n|---|---|---|")
    for name, values in seconds.items():
        median = float(np.median(values))
        print(f"| {name} | {1 / median:.1f} | {median / paper:.2f}× |")


if __name__ == "__main__":
    main()

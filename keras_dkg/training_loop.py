"""The training loop behind `python -m keras_dkg.fit`: data, strategy, fit, checkpoints.

Training runs as `model.fit` calls of `checkpoint_every` steps each on a step-indexed
dataset (keras_dkg.data), so after a checkpoint at step k a resumed run feeds step k+1
exactly what the uninterrupted run would have.

Besides TensorBoard's scalars, `logs/metrics.jsonl` gets one JSON line per `--log-every`
steps with the mean of every metric over those steps (Keras hands callbacks running means
since the start of each `fit` call; the monitor turns them back into per-step values), so
`python -m keras_dkg.diagnose` can read D's loss and accuracy without TensorFlow.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_dkg import checkpoints, embedded
from keras_dkg.data import ImageFolder, gray_domain, load_folder, make_dataset
from keras_dkg.domains import build_domain, byte_entropy
from keras_dkg.errors import TrainingError
from keras_dkg.model import DeepKeyGen, Stabilizers, default_optimizer
from keras_dkg.objectives import KeyObjectives
from keras_dkg.runtime.imageio import atomic_output, read_image, write_image
from keras_dkg.runtime.preprocess import preprocess, quantize_key

log = logging.getLogger("keras_dkg.fit")
METRICS_LOG = "metrics.jsonl"


class StepMonitor(keras.callbacks.Callback):
    """Counts global steps, stops on a non-finite loss, logs scalars and drives the progress bar."""

    def __init__(self, start_step: int, writer, log_every: int, bar, metrics_log: Path | None = None):
        super().__init__()
        self.step = start_step
        self.writer = writer
        self.log_every = log_every
        self.bar = bar
        self.metrics_log = metrics_log
        self.diverged: dict | None = None
        self.last: dict = {}
        self._window: dict[str, float] = {}
        self._window_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        values = {k: float(v) for k, v in (logs or {}).items()}
        previous = self.last if batch else {}
        self.last = values
        if not all(math.isfinite(v) for v in values.values()):
            self.diverged = {"step": self.step, **values}
            self.model.stop_training = True
            return
        # running mean m_k over k = batch + 1 steps -> this step's value k·m_k − (k−1)·m_(k−1)
        for name, value in values.items():
            this_step = (batch + 1) * value - batch * previous.get(name, 0.0)
            self._window[name] = self._window.get(name, 0.0) + this_step
        self._window_steps += 1
        if self.step % self.log_every == 0:
            with self.writer.as_default(step=self.step):
                for name, value in values.items():
                    tf.summary.scalar(name, value)
            self.flush()
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()}, refresh=False)

    def flush(self) -> None:
        """Append the mean of the steps since the last line to the metrics log."""
        if self.metrics_log is not None and self._window_steps:
            record = {"step": self.step, "steps": self._window_steps,
                      **{k: round(v / self._window_steps, 6) for k, v in self._window.items()}}
            with open(self.metrics_log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        self._window, self._window_steps = {}, 0


def resolve_data(out: Path, options: dict) -> tuple[ImageFolder, ImageFolder, dict | None]:
    """Source folder (embedded by default) and domain folder (built when not given)."""
    size = options["image_size"]
    source_dir = out / "data" / "source" if options["source"] == "embedded" else Path(options["source"])
    if options["source"] == "embedded":
        embedded.materialize_source(source_dir)
    source = load_folder(source_dir, size)
    manifest = None
    if options["domain"]:
        domain_dir = Path(options["domain"])
    else:
        domain_dir = out / "data" / f"domain-{options['domain_kind']}-{size}"
        if not (domain_dir / "manifest.json").is_file():
            manifest = build_domain(source_dir, domain_dir, kind=options["domain_kind"], size=size,
                                    seed=options["domain_seed"], overwrite=True)
            log.info("built %s domain: %d images, mean entropy %.4f", options["domain_kind"],
                     manifest["count"], manifest["mean_entropy"])
    domain = load_folder(domain_dir, size)
    if options["domain_gray"]:
        domain = gray_domain(domain)
    return source, domain, manifest


def sample_key(generator: keras.Model, seed_pixels: np.ndarray) -> np.ndarray:
    """The key the generator makes from the held-back seed (same path as dkg-keygen)."""
    output = generator(seed_pixels[None], training=False)
    return quantize_key(np.asarray(output)[0])


def run_training(out: Path, options: dict, previous: dict | None, progress: bool, log_every: int) -> dict:
    keras.utils.set_random_seed(options["seed"])
    source, domain, manifest = resolve_data(out, options)
    seed_path = options["seed_image"] or embedded.seed_path()
    seed_pixels = preprocess(read_image(seed_path), options["image_size"])

    strategy = select_strategy()
    with strategy.scope():
        model = DeepKeyGen(num_residual_blocks=options["residual_blocks"],
                           d_spectral_norm=options["d_spectral_norm"])
        model.compile(
            g_optimizer=default_optimizer(options["g_learning_rate"], options["beta_1"], options["beta_2"]),
            d_optimizer=default_optimizer(options["d_learning_rate"], options["beta_1"], options["beta_2"]),
            loss=options["loss"], jit_compile=options["jit_compile"],
            stabilizers=stabilizers_from(options), image_shape=(options["image_size"], options["image_size"], 3),
            objectives=objectives_from(options),
        )
        model.build_optimizers()
    step = 0
    if previous is not None:
        newest = checkpoints.list_checkpoints(out / "checkpoints")[-1]
        with strategy.scope():
            step = checkpoints.restore(model, newest)["step"]
        log.info("resumed from %s at step %d", newest.name, step)
    total = options["steps"]
    if step >= total:
        log.info("already at step %d of %d", step, total)

    writer = tf.summary.create_file_writer(str(out / "logs"))
    bar = _progress_bar(total, step) if progress else None
    (out / "logs").mkdir(exist_ok=True)
    monitor = StepMonitor(step, writer, log_every, bar, metrics_log=out / "logs" / METRICS_LOG)
    started, first_step = time.time(), step
    samples = out / "samples"
    samples.mkdir(exist_ok=True)
    try:
        while step < total:
            chunk = min(options["checkpoint_every"], total - step)
            dataset = make_dataset(source, domain, total, options["batch_size"], options["seed"], start_step=step,
                                   augment=options["domain_augment"])
            model.fit(dataset.take(chunk), epochs=1, steps_per_epoch=chunk, verbose=0, shuffle=False, callbacks=[monitor])
            if monitor.diverged:
                kept = checkpoints.list_checkpoints(out / "checkpoints")
                raise TrainingError(
                    f"training diverged at step {monitor.diverged['step']}: non-finite loss "
                    f"({', '.join(f'{k}={v}' for k, v in monitor.diverged.items() if k != 'step')}); "
                    "lower --lr or check the data; "
                    + (f"last good checkpoint kept in {kept[-1]}" if kept else "no checkpoint was written yet")
                )
            step = monitor.step
            key = sample_key(model.generator, seed_pixels)
            write_image(samples / f"key_step{step:08d}.png", key, overwrite=True)
            with writer.as_default(step=step):
                tf.summary.scalar("sample_key_entropy", byte_entropy(key))
                tf.summary.image("sample_key", key[None], max_outputs=1)
            checkpoints.save(model, out / "checkpoints", step, extra={"metrics": monitor.last})
    finally:
        if bar is not None:
            bar.close()
        if not monitor.diverged:
            monitor.flush()
        writer.flush()

    generator_path = out / "generator.keras"
    with atomic_output(generator_path, overwrite=True) as temporary:
        keras_path = temporary.with_name(temporary.name + ".keras")
        model.generator.save(keras_path)
        keras_path.replace(temporary)
    key = sample_key(model.generator, seed_pixels)
    write_image(samples / "key_final.png", key, overwrite=True)
    trained = step - first_step
    seconds = time.time() - started
    return {
        "steps_done": step,
        "steps_this_session": trained,
        "steps_per_second": round(trained / seconds, 3) if trained and seconds > 0 else None,
        "final_metrics": monitor.last,
        "sample_key_entropy": round(byte_entropy(key), 6),
        "seed_image": str(seed_path),
        "source_images": len(source),
        "domain_images": len(domain),
        "domain_mean_entropy": None if manifest is None else manifest["mean_entropy"],
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "generator": str(generator_path),
        "generator_parameters": int(model.generator.count_params()),
    }


def stabilizers_from(options: dict) -> Stabilizers:
    """The discriminator aids of a run's options (all off for the paper's recipe)."""
    return Stabilizers(d_history=options["d_history"], instance_noise=options["instance_noise"],
                       noise_anneal_steps=options["instance_noise_anneal"] or 1,
                       r1_gamma=options["r1_gamma"], seed=options["seed"])


def objectives_from(options: dict) -> KeyObjectives:
    """The key terms of a run's options (all off for the paper's recipe; older run.json: off)."""
    return KeyObjectives(sensitivity_weight=options.get("sensitivity_weight", 0.0),
                         uniformity_weight=options.get("uniformity_weight", 0.0),
                         predictor_weight=options.get("predictor_weight", 0.0), seed=options["seed"])


def select_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirrored with a multi-worker TF_CONFIG, Mirrored on GPUs, else the default."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    if len(tf_config.get("cluster", {}).get("worker", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _progress_bar(total: int, start: int):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

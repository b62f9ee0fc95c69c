"""`train(config) -> TrainResult`: one training, on the TensorFlow or the JAX backend.

Training runs in chunks of `checkpoint_every` steps on step-indexed data
(keras_dkg.train.data), so after a checkpoint at step k a resumed run feeds step k+1
exactly what the uninterrupted run would have. After each chunk: a sample key from the
held-back seed and a checkpoint. Under TensorFlow a chunk is a loop over the step run by
`strategy.run` in a `tf.function` under `tf.distribute` (TensorFlowRunner); under JAX a
loop over the jitted step (step_jax). Both report per-step values to one `StepMonitor`:
`logs/metrics.jsonl` (the mean of every metric per `log_every` steps, what
`python -m keras_dkg.diagnose` reads), TensorBoard scalars where TensorFlow runs, the
progress bar, and the stop on a non-finite loss. Under a multi-worker TF_CONFIG
(keras_dkg.train.cluster) every worker runs this same code; only the chief's files land
in the run folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from keras_dkg import embedded
from keras_dkg.common import progress_bar, quiet
from keras_dkg.errors import DkgError, TrainingError
from keras_dkg.train import cluster, runfolder
from keras_dkg.train.config import TrainConfig

log = logging.getLogger("keras_dkg.fit")
METRICS_LOG = "metrics.jsonl"


@dataclass
class TrainResult:
    """What `train` did: where the run stands, its last losses, its files, how fast it went."""

    step: int
    steps_this_session: int
    losses: dict[str, float]
    out: Path
    generator: Path
    run_json: Path
    wall_seconds: float
    steps_per_second: float | None
    sample_key_entropy: float
    summary: dict = field(default_factory=dict)  # everything run.json's "summary" records


def select_backend(requested: str) -> None:
    """Make Keras use `requested`; a Keras already loaded with another backend cannot switch."""
    import sys

    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = requested
    import keras

    if keras.config.backend() != requested:
        raise TrainingError(f"--backend {requested}: Keras is already running on {keras.config.backend()} in this "
                            f"process; set KERAS_BACKEND={requested} before Keras is imported")


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) one training; raises TrainingError / InputError / OutputError, never exits.

    Under a multi-worker TF_CONFIG every worker calls this with the same config; only the
    chief writes `config.out` (keras_dkg.train.cluster), the others return the chief's paths.
    """
    this = cluster.role()
    if this.multi_worker and config.backend != "tensorflow":
        raise TrainingError(f"TF_CONFIG describes a cluster of {this.workers} workers: multi-worker training runs "
                            "on --backend tensorflow (MultiWorkerMirroredStrategy); unset TF_CONFIG for --backend jax")
    if not this.is_chief:
        return _train_worker(config, this)
    out = Path(config.out)
    before = sorted(out.iterdir()) if out.is_dir() else None
    previous = runfolder.prepare(config)
    started = time.time()
    try:
        if previous is None:
            runfolder.write_record(config, {"status": "running"})
        select_backend(config.backend)
        summary = _run(config, previous)
    except DkgError:
        if previous is None:
            runfolder.discard_failed(out, before)
        raise
    summary["wall_seconds"] = round(time.time() - started, 2)
    summary["status"] = "finished"
    versions = summary.pop("versions")
    run_json = runfolder.write_record(config, summary, versions)
    return TrainResult(step=summary["steps_done"], steps_this_session=summary["steps_this_session"],
                       losses=summary["final_metrics"], out=out, generator=Path(summary["generator"]),
                       run_json=run_json, wall_seconds=summary["wall_seconds"],
                       steps_per_second=summary["steps_per_second"],
                       sample_key_entropy=summary["sample_key_entropy"], summary=summary)


def _train_worker(config: TrainConfig, this: cluster.Role) -> TrainResult:
    """A non-chief worker: the chief's checks on --out (read, never written), the same training, its
    files in a scratch folder removed at the end; on --resume it restores the chief's newest checkpoint."""
    out = Path(config.out)
    previous = runfolder.prepare(config, create=False)
    scratch = cluster.scratch_folder(out, this)
    started = time.time()
    try:
        select_backend(config.backend)
        summary = _run(config.replace(out=str(scratch)), previous, checkpoint_folder=out / "checkpoints")
    finally:
        cluster.remove_scratch(scratch)
    summary.pop("versions")
    summary.update(wall_seconds=round(time.time() - started, 2), status="finished",
                   generator=str(out / "generator.keras"))
    return TrainResult(step=summary["steps_done"], steps_this_session=summary["steps_this_session"],
                       losses=summary["final_metrics"], out=out, generator=out / "generator.keras",
                       run_json=out / runfolder.RUN_FILE, wall_seconds=summary["wall_seconds"],
                       steps_per_second=summary["steps_per_second"],
                       sample_key_entropy=summary["sample_key_entropy"], summary=summary)


def weights_digest(model) -> str:
    """SHA-256 of G's and D's weights (values, in order): equal on every worker of a multi-worker run."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for network in (model.generator, model.discriminator):
        for weight in network.get_weights():
            digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


class StepMonitor:
    """Takes each step's values: counts steps, logs them, drives the bar, stops on a non-finite loss.

    `last` is the mean since the start of the current chunk (what Keras' `fit` reports).
    """

    def __init__(self, start_step: int, log_every: int, bar, metrics_log: Path | None = None, writer=None):
        self.step = start_step
        self.log_every = log_every
        self.bar = bar
        self.metrics_log = metrics_log
        self.writer = writer  # a TensorBoard writer (TensorFlow) or None
        self.diverged: dict | None = None
        self.last: dict = {}
        self._chunk: dict[str, float] = {}
        self._chunk_steps = 0
        self._window: dict[str, float] = {}
        self._window_steps = 0

    def start_chunk(self) -> None:
        self._chunk, self._chunk_steps = {}, 0

    def record(self, values: dict[str, float]) -> bool:
        """One step's values; False once the run must stop (a non-finite value)."""
        self.step += 1
        if not all(math.isfinite(v) for v in values.values()):
            self.diverged = {"step": self.step, **values}
            return False
        self._chunk_steps += 1
        for name, value in values.items():
            self._chunk[name] = self._chunk.get(name, 0.0) + value
            self._window[name] = self._window.get(name, 0.0) + value
        self.last = {k: v / self._chunk_steps for k, v in self._chunk.items()}
        self._window_steps += 1
        if self.step % self.log_every == 0:
            if self.writer is not None:
                self.writer(self.step, self.last)
            self.flush()
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in self.last.items()}, refresh=False)
        return True

    def flush(self) -> None:
        """Append the mean of the steps since the last line to the metrics log."""
        if self.metrics_log is not None and self._window_steps:
            record = {"step": self.step, "steps": self._window_steps,
                      **{k: round(v / self._window_steps, 6) for k, v in self._window.items()}}
            with open(self.metrics_log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        self._window, self._window_steps = {}, 0


def resolve_data(out: Path, config: TrainConfig):
    """Source folder (embedded by default) and domain folder (built when not given)."""
    from keras_dkg.domains import build_domain
    from keras_dkg.train.data import gray_domain, load_folder

    size = config.image_size
    source_dir = out / "data" / "source" if config.source is None else Path(config.source)
    if config.source is None:
        embedded.materialize_source(source_dir)
    source = load_folder(source_dir, size)
    manifest = None
    if config.domain:
        domain_dir = Path(config.domain)
    else:
        domain_dir = out / "data" / f"domain-{config.domain_kind}-{size}"
        if not (domain_dir / "manifest.json").is_file():
            manifest = build_domain(source_dir, domain_dir, kind=config.domain_kind, size=size,
                                    seed=config.domain_seed, overwrite=True)
            log.info("built %s domain: %d images, mean entropy %.4f", config.domain_kind,
                     manifest["count"], manifest["mean_entropy"])
    domain = load_folder(domain_dir, size)
    if config.domain_gray:
        domain = gray_domain(domain)
    return source, domain, manifest


def build_model(config: TrainConfig):
    """The compiled DeepKeyGen of a config, optimizer slots built (so a checkpoint can load)."""
    from keras_dkg.train import losses
    from keras_dkg.train.model import DeepKeyGen, default_optimizer

    model = DeepKeyGen(num_residual_blocks=config.residual_blocks, d_spectral_norm=config.d_spectral_norm,
                       upsample=config.upsample)
    model.compile(
        g_optimizer=default_optimizer(config.g_learning_rate, config.beta_1, config.beta_2),
        d_optimizer=default_optimizer(config.d_learning_rate, config.beta_1, config.beta_2),
        loss=config.loss, jit_compile=config.jit_compile,
        stabilizers=losses.Stabilizers(d_history=config.d_history, instance_noise=config.instance_noise,
                                       noise_anneal_steps=config.instance_noise_anneal or 1,
                                       r1_gamma=config.r1_gamma, seed=config.seed),
        image_shape=(config.image_size, config.image_size, 3),
        objectives=losses.KeyObjectives(sensitivity_weight=config.sensitivity_weight,
                                        uniformity_weight=config.uniformity_weight,
                                        predictor_weight=config.predictor_weight, seed=config.seed),
    )
    model.build_optimizers()
    return model


class TensorFlowRunner:
    """Chunks as loops over the distributed step under the tf.distribute strategy the machine calls for.

    The step is `DeepKeyGen.train_step` run by `strategy.run` in one `tf.function` (what
    `model.fit` runs, without its data handling): the data come from
    `strategy.distribute_datasets_from_function`, each replica taking its share of the
    step's global batch (data.replica_rows), and each step's values are the means over
    the replicas. Keras' `model.fit` is not used because it cannot run under
    MultiWorkerMirroredStrategy in Keras 3 (keras-team/keras#20585: its symbolic build
    reduces the input batch across workers and fails), and it splits each batch unevenly.
    """

    def __init__(self, config: TrainConfig, source, domain, out: Path):
        import keras
        import tensorflow as tf

        self.tf, self.keras = tf, keras
        self.config, self.source, self.domain = config, source, domain
        self.strategy = select_strategy()
        replicas = self.strategy.num_replicas_in_sync
        self.role = cluster.role()
        # tf.distribute.MultiWorkerMirroredStrategy is the class CollectiveAllReduceStrategy
        name = "MultiWorkerMirroredStrategy" if self.role.multi_worker else type(self.strategy).__name__
        per_replica = per_replica_batch(config.batch_size, replicas, f"{name}, {self.role.workers} worker(s)")
        with self.strategy.scope():
            self.model = build_model(config)
        self._writer = tf.summary.create_file_writer(str(out / "logs"))
        self._step = None
        self.versions = {"tensorflow": tf.__version__, "keras": keras.__version__, "backend": "tensorflow"}
        self.devices = {"strategy": name, "replicas": replicas,
                        "workers": self.role.workers, "global_batch_size": config.batch_size,
                        "per_replica_batch_size": per_replica,
                        **({"task": self.role.describe()} if self.role.multi_worker else {})}

    def restore(self, checkpoint: Path) -> int:
        from keras_dkg.train import checkpoints

        with self.strategy.scope():
            return checkpoints.restore(self.model, checkpoint)["step"]

    def scalars(self, step: int, values: dict) -> None:
        with self._writer.as_default(step=step):
            for name, value in values.items():
                self.tf.summary.scalar(name, value)

    def sample(self, step: int, key) -> None:
        from keras_dkg.domains import byte_entropy

        with self._writer.as_default(step=step):
            self.tf.summary.scalar("sample_key_entropy", byte_entropy(key))
            self.tf.summary.image("sample_key", key[None], max_outputs=1)

    def _make_step(self):
        """One distributed step on the next element of a distributed iterator; values averaged over replicas."""
        tf, model, strategy = self.tf, self.model, self.strategy
        per_replica = self.devices["per_replica_batch_size"]
        names = list(model.metric_names)

        def replica_step(data):
            # a static batch (step_tf says why); MultiWorkerMirroredStrategy's iterator leaves it unknown
            data = tuple(x if x.shape[0] is not None else tf.ensure_shape(x, (per_replica, *x.shape[1:]))
                         for x in data)
            for metric in model.metrics:  # each step's own values, not running means
                metric.reset_state()
            values = model.train_step(data)
            return tf.stack([tf.cast(values[name], "float32") for name in names])

        def one_step(data):
            # one all-reduce for all the values (the step's replicas have equal shares: the mean is the batch's)
            means = strategy.reduce("MEAN", strategy.run(replica_step, args=(data,)), axis=None)
            return dict(zip(names, tf.unstack(means, num=len(names)), strict=True))

        # as model.fit: no AutoGraph (the step is written for plain tracing), XLA only when asked
        one_step = tf.function(one_step, reduce_retracing=True, autograph=False,
                               jit_compile=bool(self.config.jit_compile))
        return tf.function(lambda iterator: one_step(next(iterator)), reduce_retracing=True, autograph=False)

    def run(self, start: int, chunk: int, monitor: StepMonitor) -> None:
        from keras_dkg.train.data import make_dataset

        config = self.config

        def dataset_fn(input_context):
            return make_dataset(self.source, self.domain, config.steps, config.batch_size, config.seed,
                                start_step=start, augment=config.domain_augment, input_context=input_context)

        if self._step is None:
            self._step = self._make_step()
        try:
            iterator = iter(self.strategy.distribute_datasets_from_function(dataset_fn))
            for _ in range(chunk):
                values = self._step(iterator)
                if not monitor.record({name: float(value) for name, value in values.items()}):
                    break
        except self.tf.errors.OpError as exc:
            if not self.role.multi_worker:
                raise
            reason = " ".join(re.sub(r"\{\{[^}]*\}\}", "", exc.message or str(exc)).split())
            reason = reason if len(reason) <= 300 else reason[:300] + " …"
            raise TrainingError(f"multi-worker training stopped after step {monitor.step} ({self.role.describe()}): "
                                f"{type(exc).__name__}: {reason}; the chief's checkpoints are kept: start every "
                                "worker again with --resume") from exc

    def finish(self) -> None:
        self._writer.flush()


def per_replica_batch(batch_size: int, replicas: int, where: str) -> int:
    """The per-replica share of the global `--batch-size`; TrainingError unless it splits evenly."""
    if batch_size % replicas:
        lower = batch_size - batch_size % replicas
        choices = " or ".join(f"--batch-size {b}" for b in (lower, lower + replicas) if b)
        raise TrainingError(f"--batch-size {batch_size} is the global batch, split evenly over the {replicas} replicas "
                            f"({where}): it must be a multiple of {replicas}; use {choices}")
    return batch_size // replicas


class JaxRunner:
    """Chunks as a Python loop over the jitted step; values fetched once per `log_every` steps."""

    def __init__(self, config: TrainConfig, source, domain, out: Path):
        import jax
        import keras

        from keras_dkg.train import step_jax
        from keras_dkg.train.data import augment_parameters, step_orders

        logging.getLogger("jax._src.xla_bridge").setLevel(logging.ERROR)  # "no TPU" on every start
        self.jax, self.step_jax, self.config = jax, step_jax, config
        self.distribution = step_jax.data_parallel()
        replicas = len(jax.local_devices()) if self.distribution else 1
        per_replica = per_replica_batch(config.batch_size, replicas, "keras.distribution.DataParallel")
        if self.distribution is not None:
            keras.distribution.set_distribution(self.distribution)
        self.model = build_model(config)
        self.source_order, self.domain_order = step_orders(len(source), len(domain), config.steps,
                                                           config.batch_size, config.seed)
        self.parameters = (augment_parameters(config.steps, config.batch_size, domain.pixels.shape[1:3], config.seed)
                           if config.domain_augment else None)
        self.pixels = (jax.device_put(source.pixels), jax.device_put(domain.pixels))
        self.step_fn = step_jax.make_step(self.model, augment=config.domain_augment)
        self.versions = {"jax": jax.__version__, "keras": keras.__version__, "backend": "jax"}
        self.devices = {"strategy": "DataParallel" if self.distribution else "single device",
                        "replicas": replicas, "workers": 1, "global_batch_size": config.batch_size,
                        "per_replica_batch_size": per_replica, "device": str(jax.local_devices()[0].platform)}

    def restore(self, checkpoint: Path) -> int:
        from keras_dkg.train import checkpoints

        return checkpoints.restore(self.model, checkpoint)["step"]

    def scalars(self, step: int, values: dict) -> None:
        """No TensorBoard without TensorFlow: logs/metrics.jsonl has the same numbers."""

    def sample(self, step: int, key) -> None:
        """Sample keys are the PNGs in samples/ (no TensorBoard under JAX)."""

    def _batch(self, rows):
        if self.distribution is None:
            return rows
        layout = self.distribution.get_data_layout(rows.shape)
        return self.jax.device_put(rows, layout.backend_layout)

    def run(self, start: int, chunk: int, monitor: StepMonitor) -> None:
        jnp = self.jax.numpy
        state = self.step_jax.state_of(self.model)
        pending: list = []
        for step in range(start, start + chunk):
            params = None if self.parameters is None else self._batch(self.parameters[step])
            state, metrics = self.step_fn(state, *self.pixels, self._batch(self.source_order[step]),
                                          self._batch(self.domain_order[step]), params, jnp.int32(step))
            pending.append(metrics)
            if len(pending) == monitor.log_every or step == start + chunk - 1:
                if not self._report(pending, monitor):
                    break
                pending = []
        self.step_jax.write_back(self.model, state)

    def _report(self, pending: list, monitor: StepMonitor) -> bool:
        fetched = self.jax.device_get(pending)
        return all(monitor.record({k: float(v) for k, v in values.items()}) for values in fetched)

    def finish(self) -> None:
        pass


def select_strategy():
    """MultiWorkerMirrored with a multi-worker TF_CONFIG, Mirrored on GPUs, else the default."""
    import tensorflow as tf

    if cluster.role().multi_worker:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def sample_key(generator, seed_pixels):
    """The key the generator makes from the held-back seed (same path as dkg-keygen)."""
    import numpy as np

    from keras_dkg.runtime.keys.preprocess import quantize_key

    output = generator(seed_pixels[None], training=False)
    return quantize_key(np.asarray(output)[0])


def _run(config: TrainConfig, previous: dict | None, checkpoint_folder: Path | None = None) -> dict:
    """The training of `train`; `checkpoint_folder` (default: the run's) is where a resume restores from."""
    import keras

    from keras_dkg.domains import byte_entropy
    from keras_dkg.runtime.formats.images import read_image, write_image
    from keras_dkg.runtime.guards.atomic import atomic_output
    from keras_dkg.runtime.keys.preprocess import preprocess
    from keras_dkg.train import checkpoints

    out = Path(config.out)
    with quiet():  # Keras seeds TensorFlow too where it is installed, which then prints its banners
        keras.utils.set_random_seed(config.seed)
    source, domain, manifest = resolve_data(out, config)
    seed_path = config.seed_image or embedded.seed_path()
    seed_pixels = preprocess(read_image(seed_path), config.image_size)
    runner = (JaxRunner if config.backend == "jax" else TensorFlowRunner)(config, source, domain, out)
    model = runner.model
    step = 0
    if previous is not None:
        newest = checkpoints.list_checkpoints(checkpoint_folder or out / "checkpoints")[-1]
        step = runner.restore(newest)
        log.info("resumed from %s at step %d", newest.name, step)
    total = config.steps
    if step >= total:
        log.info("already at step %d of %d", step, total)

    (out / "logs").mkdir(parents=True, exist_ok=True)
    bar = progress_bar(total=total, initial=step, unit="step") if config.progress else None
    monitor = StepMonitor(step, config.log_every, bar, metrics_log=out / "logs" / METRICS_LOG,
                          writer=runner.scalars)
    started, first_step = time.time(), step
    samples = out / "samples"
    samples.mkdir(exist_ok=True)
    try:
        while step < total:
            chunk = min(config.checkpoint_every, total - step)
            monitor.start_chunk()
            runner.run(step, chunk, monitor)
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
            runner.sample(step, key)
            checkpoints.save(model, out / "checkpoints", step, extra={"metrics": monitor.last})
    finally:
        if bar is not None:
            bar.close()
        if not monitor.diverged:
            monitor.flush()
        runner.finish()

    generator_path = out / "generator.keras"
    with atomic_output(generator_path, overwrite=True) as temporary:
        keras_path = temporary.with_name(temporary.name + ".keras")
        model.generator.save(keras_path)
        keras_path.replace(temporary)
    key = sample_key(model.generator, seed_pixels)
    write_image(samples / "key_final.png", key, overwrite=True)
    digest = weights_digest(model)
    if cluster.role().multi_worker:
        log.info("%s: final weights sha256 %s", cluster.role().describe(), digest)
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
        **runner.devices,
        "generator": str(generator_path),
        "generator_parameters": int(model.generator.count_params()),
        "weights_sha256": digest,
        "versions": runner.versions,
    }

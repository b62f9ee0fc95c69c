"""The pipeline stages: data → domains → architecture → train → export → keys → encrypt.

Every stage uses the project's real pipeline: `keras_dkg.domains.build_domain`,
`keras_dkg.train.train` (in-process, one TensorFlow import), `keras_dkg.export.export_onnx`
(what `dkg-export onnx` runs), `KeyGenerator` (onnxruntime) for every key and
`encrypt_array`/`decrypt_array` for every ciphertext. Trainings, exports and key sets are
units with their own markers, so an interrupted run resumes at the unit it stopped in
(and a training at its last checkpoint, resumed).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from keras_dkg import embedded
from keras_dkg.reproduce.datasets import (
    MODALITIES,
    prepare_plaintexts,
    prepare_source,
    split_source,
)
from keras_dkg.reproduce.profiles import recipe_run, training_runs
from keras_dkg.reproduce.runner import Context, read_json, write_json
from keras_dkg.runtime.formats.images import read_image, write_image
from keras_dkg.runtime.formats.sources import list_images

# name -> (domain kind, cipher master seed, source folder key in the data manifest)
DOMAINS = {
    "high": ("chaotic", 0, "source"),
    "low": ("chaotic-low", 0, "source"),
    "high_seed1": ("chaotic", 1, "source"),
    "grid_high": ("chaotic", 0, "grid_train"),
}
SENSITIVITY_NOTE = ("K_b: the seed of key i with one pixel (all 3 channels, random position) set to "
                    "another random value")


# ---------------------------------------------------------------------- data and domains


def stage_data(ctx: Context) -> dict:
    data = ctx.path("data")
    source, source_label = prepare_source(data, ctx.options.get("source"))
    manifest = prepare_plaintexts(data / "plaintexts", ctx.image_size(), ctx.profile.plaintexts, ctx.options)
    seed = ctx.options.get("seed_image") or str(embedded.seed_path())
    manifest.update({
        "source": str(source), "source_label": source_label, "source_count": len(list_images(source)),
        "seed_image": seed,
        "seed_label": "user seed" if ctx.options.get("seed_image") else embedded.SEED_DESCRIPTION,
        "grid": split_source(source, data),
    })
    write_json(data / "manifest.json", manifest)
    return {m: len(manifest["modalities"][m]["images"]) for m in MODALITIES} | {
        "source_count": manifest["source_count"]}


def needed_domains(ctx: Context) -> list[str]:
    return ["high", *ctx.profile.leak_domains, "grid_high"]


def stage_domains(ctx: Context) -> dict:
    from keras_dkg.domains import build_domain

    manifest = ctx.plaintext_manifest()
    folders = {"source": manifest["source"], "grid_train": manifest["grid"]["train"]}
    result = {}
    for name in needed_domains(ctx):
        kind, seed, source = DOMAINS[name]
        built = build_domain(folders[source], ctx.path("domains", name), kind=kind, size=ctx.image_size(),
                             seed=seed, overwrite=True)
        result[name] = {"kind": kind, "seed": seed, "count": built["count"], "cipher": built["cipher"],
                        "mean_entropy": built["mean_entropy"], "mean_plain_entropy": built["mean_plain_entropy"]}
        ctx.log(f"  domain {name}: {kind} seed {seed}, {built['count']} images, mean entropy "
                f"{built['mean_entropy']:.4f}")
    return result


# ---------------------------------------------------------------------- architecture and training


def stage_architecture(ctx: Context) -> dict:
    """Our parameter counts beside Tables I-II, and the attack networks' sizes (Table XVI)."""
    from keras_dkg.export.source import import_keras
    from keras_dkg.train.architecture import parameter_table

    keras = import_keras()
    from keras_dkg.train.networks import build_discriminator, build_generator

    tables = parameter_table(build_generator(), build_discriminator())
    rows = {label: [row.__dict__ for row in rows] for label, rows in tables.items()}
    blocks = {str(b): int(build_generator(num_residual_blocks=b).count_params()) for b in (3, 6, 9, 12)}
    keras.utils.clear_session()
    return {"rows": rows, "generator_params_by_blocks": blocks}


def train_config(ctx: Context, run_dir, domain: str, *, blocks: int, seed: int, steps: int, lr: float | None,
                 batch_size: int, source: str, checkpoint_every: int, recipe: str = "paper",
                 overrides: dict | None = None):
    """The TrainConfig of one training; lr None leaves the learning rate to the recipe."""
    from keras_dkg.train import TrainConfig

    manifest = ctx.plaintext_manifest()
    return TrainConfig.from_recipe(
        recipe, out=str(run_dir), source=source, domain=str(ctx.path("domains", domain)),
        seed_image=manifest["seed_image"], image_size=ctx.image_size(), steps=steps, batch_size=batch_size,
        **({"learning_rate": lr} if lr is not None else {}), residual_blocks=blocks, seed=seed,
        checkpoint_every=checkpoint_every, progress=False, backend=ctx.backend, **(overrides or {}))


def run_training(config):
    """`keras_dkg.train.train` (TensorFlow, in-process) or `fit --backend jax` (a subprocess, fitrun),
    resuming when the run folder holds a checkpoint."""
    from pathlib import Path

    from keras_dkg.reproduce.fitrun import run_fit_subprocess
    from keras_dkg.train import checkpoints

    run_dir = Path(config.out)
    resume = (run_dir / "run.json").is_file() and bool(checkpoints.list_checkpoints(run_dir / "checkpoints"))
    if config.backend == "jax":
        return run_fit_subprocess(config, resume)
    import keras

    from keras_dkg.train import train

    result = train(config.replace(resume=resume))
    keras.utils.clear_session()
    return result


def train_one(ctx: Context, name: str, settings: dict) -> dict:
    profile = ctx.profile
    run_dir = ctx.path("runs", name)
    recipe = settings.get("recipe", "paper")
    config = train_config(ctx, run_dir, settings["domain"], blocks=settings["blocks"], seed=settings["seed"],
                          steps=profile.steps, lr=2e-4 if recipe == "paper" else None,
                          batch_size=profile.batch_size, source=ctx.plaintext_manifest()["source"],
                          checkpoint_every=profile.checkpoint_every, recipe=recipe,
                          overrides=settings.get("overrides"))
    summary = run_training(config).summary
    record = read_json(run_dir / "run.json")
    ctx.log(f"  {name}: {summary['steps_done']} steps, {summary.get('steps_per_second')} steps/s, "
            f"sample key entropy {summary['sample_key_entropy']:.4f}")
    return {"settings": settings, "run_dir": str(run_dir), "summary": summary, "versions": record["versions"],
            "machine": record["machine"]}


def stage_train(ctx: Context) -> dict:
    result = {}
    for name, settings in training_runs(ctx.profile).items():
        result[name] = ctx.stage(f"train/{name}", lambda c, n=name, s=settings: train_one(c, n, s),
                                 f"{settings['blocks']} blocks, domain {settings['domain']}, seed {settings['seed']}, "
                                 f"recipe {settings.get('recipe', 'paper')}")
    return {name: {"steps": r["summary"]["steps_done"], "sample_key_entropy": r["summary"]["sample_key_entropy"],
                   "steps_per_second": r["summary"].get("steps_per_second")} for name, r in result.items()}


# ---------------------------------------------------------------------- export


def export_model(ctx: Context, source: str, target, training_size: int | None = None) -> dict:
    import keras

    from keras_dkg.export import export_onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    result = export_onnx(source, target, overwrite=True, training_size=training_size)
    keras.utils.clear_session()
    return {"model": str(target), "bytes": target.stat().st_size, "parity_passed": result.parity.passed,
            "parity_max_abs_delta": max((c.max_abs_delta for c in result.parity.cases), default=None)}


def stage_export(ctx: Context) -> dict:
    result = {}
    for name in training_runs(ctx.profile):
        result[name] = ctx.stage(f"export/{name}", lambda c, n=name: export_model(
            c, str(c.path("runs", n)), c.path("models", f"{n}.onnx")))
    return result


# ---------------------------------------------------------------------- keys


def _save(key, folder, label: str) -> str:
    path = folder / f"{label}.png"
    key.save(path, overwrite=True)
    return path.name


def keys_for_run(ctx: Context, name: str) -> dict:
    from keras_dkg.runtime.keys.generator import KeyGenerator
    from keras_dkg.runtime.keys.nonces import V1, V2, perturb_seed
    from keras_dkg.runtime.keys.preprocess import preprocess_uint8

    size = ctx.image_size()
    manifest = ctx.plaintext_manifest()
    seed = manifest["seed_image"]
    folder = ctx.path("keys", name)
    folder.mkdir(parents=True, exist_ok=True)
    # Nonce scheme v1: the paper's tables want keys from distinct generator inputs (one
    # perturbed seed each); v2 keys of one seed would all share one histogram.
    generator = KeyGenerator(ctx.path("models", f"{name}.onnx"), nonce_scheme=V1)
    saved = {"seed": _save(generator.generate(seed, size), folder, "seed")}
    # table keys: network A, the low-domain generator (Sec. V-C) and the recipe runs (Tables III, XVII, XVIII);
    # per-plaintext keys for the two that encrypt; sensitivity pairs for Table IV
    recipe_runs = {recipe_run(r) for r in ctx.profile.recipes}
    if name not in ("otp_0", "leak_low", *recipe_runs):
        return {"keys": saved, "provider": generator.provider}
    for i in range(1, ctx.profile.plaintexts + 1):
        saved[f"table-{i}"] = _save(generator.generate(seed, size, nonce=f"table-{i}"), folder, f"table-{i}")
    if name in ("otp_0", "leak_low", *recipe_runs):  # the runs whose keys encrypt (stage_encrypt)
        for modality in MODALITIES:
            for i, _ in enumerate(manifest["modalities"][modality]["images"], start=1):
                label = f"enc-{modality}-{i}"
                saved[label] = _save(generator.generate(seed, size, nonce=label), folder, label)
    if name == "leak_low":
        return {"keys": saved, "provider": generator.provider}
    # the runtime's per-file keys (nonce scheme v2: a keyed permutation of the seed's key),
    # for the finding on whether keys of different files are related
    per_file = KeyGenerator(ctx.path("models", f"{name}.onnx"), nonce_scheme=V2)
    for i in range(1, ctx.profile.plaintexts + 1):
        saved[f"v2-table-{i}"] = _save(per_file.generate(seed, size, nonce=f"table-{i}"), folder, f"v2-table-{i}")
    base_seed = preprocess_uint8(read_image(seed), (size, size))
    changes = []
    for i in range(1, ctx.profile.plaintexts + 1):
        base = perturb_seed(base_seed, f"table-{i}")
        rng = np.random.default_rng([20210, i])
        row, col = (int(v) for v in rng.integers(0, size, 2))
        old = int(base[row, col, 0])
        new = int((old + rng.integers(1, 256)) % 256)
        changed = base.copy()
        changed[row, col, :] = new
        key_a = generator.generate(base, size)
        key_b = generator.generate(changed, size)
        saved[f"sens-{i}-a"] = _save(key_a, folder, f"sens-{i}-a")
        saved[f"sens-{i}-b"] = _save(key_b, folder, f"sens-{i}-b")
        same_as_table = bool(np.array_equal(key_a.pixels, read_image(folder / saved[f"table-{i}"])))
        changes.append({"pair": i, "row": row, "col": col, "from": old, "to": new, "key_a_equals_table_key": same_as_table})
    return {"keys": saved, "provider": generator.provider, "sensitivity_changes": changes, "note": SENSITIVITY_NOTE}


def key_timing(ctx: Context) -> dict:
    """Table XIX: seconds per DeepKeyGen key with onnxruntime in this (TensorFlow) process."""
    from keras_dkg.runtime.keys.generator import KeyGenerator

    seed = ctx.plaintext_manifest()["seed_image"]
    sizes = sorted({ctx.image_size(), 256})
    began = time.perf_counter()
    generator = KeyGenerator(ctx.path("models", "otp_0.onnx"))
    generator.generate(seed, sizes[0])
    first = time.perf_counter() - began
    per_size = {}
    for size in sizes:
        times = []
        for r in range(ctx.profile.timing_repeats):
            start = time.perf_counter()
            generator.generate(seed, size, nonce=f"timing-{r}")
            times.append(time.perf_counter() - start)
        per_size[str(size)] = {"median_seconds": statistics.median(times), "best_seconds": min(times)}
    return {"load_and_first_key_seconds": first, "per_key": per_size, "provider": generator.provider,
            "repeats": ctx.profile.timing_repeats, "note": "onnxruntime inside the TensorFlow process "
            "(shared/TOOLCHAIN.md: ~40 % slower than in its own process)"}


def stage_keys(ctx: Context) -> dict:
    result = {name: ctx.stage(f"keys/{name}", lambda c, n=name: keys_for_run(c, n)) for name in training_runs(ctx.profile)}
    timing = key_timing(ctx)
    write_json(ctx.path("keys", "timing.json"), timing)
    return {"runs": {n: len(r["keys"]) for n, r in result.items()}, "timing": timing}


# ---------------------------------------------------------------------- encryption


def hardened_available() -> bool:
    """True when the hardened mode can run here (it needs the `cryptography` package)."""
    from keras_dkg.runtime.ciphers import hardened

    return hardened.available()


def encrypt_set(ctx: Context, kind: str, run: str, cipher_name: str) -> dict:
    from keras_dkg.runtime.ciphers.registry import decrypt_array, encrypt_array
    from keras_dkg.runtime.keys.artifact import load_key

    manifest = ctx.plaintext_manifest()
    exact = []
    for modality in MODALITIES:
        folder = ctx.path("ciphers", kind, modality)
        folder.mkdir(parents=True, exist_ok=True)
        for i, entry in enumerate(manifest["modalities"][modality]["images"], start=1):
            plain = read_image(ctx.path("data", "plaintexts", entry["file"]))
            key = load_key(ctx.path("keys", run, f"enc-{modality}-{i}.png"))
            cipher, meta = encrypt_array(plain, key.pixels, cipher=cipher_name, nonce=key.record.get("nonce"))
            exact.append(bool(np.array_equal(decrypt_array(cipher, key.pixels, meta), plain)))
            write_image(folder / f"{i:02d}.png", cipher, overwrite=True)
            (folder / f"{i:02d}.json").write_text(meta.to_json() + "\n", encoding="utf-8")
    return {"run": run, "cipher": cipher_name, "count": len(exact), "all_decrypt_bit_exact": all(exact)}


def stage_encrypt(ctx: Context) -> dict:
    sets = {"xor": ("otp_0", "xor")}
    if "low" in ctx.profile.leak_domains:
        sets["xor_low"] = ("leak_low", "xor")
    available = hardened_available()
    if available:
        sets["hardened"] = ("otp_0", "hardened")
    for variant in ctx.profile.recipes:  # XOR under the keys of network A trained with each variant
        sets[f"xor_{variant}"] = (recipe_run(variant), "xor")
    result = {kind: encrypt_set(ctx, kind, run, name) for kind, (run, name) in sets.items()}
    result["hardened_available"] = available
    return result

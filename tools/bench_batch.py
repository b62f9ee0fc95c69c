"""Batch encryption speed: files/s and MB/s, 1 vs 2 jobs, with the time split by phase.

    python tools/bench_batch.py [--model G.onnx] [--pngs 32] [--dicoms 16] [--jobs 1 2] [--stores plain protected]
    python tools/bench_batch.py --baseline /tmp/old-checkout ...   # + this code vs an older checkout's

Two folders are made: 256×256 8-bit RGB PNGs (the paper's image and key size) and
512×512 16-bit signed CT-like DICOMs (12 bits stored, uncompressed). For each, the
end-to-end `encrypt_folder` (what `dkg-encrypt --batch` runs: read, one fresh key per
file, XOR + tag, atomic write, key store) is timed with each --jobs value, then
`decrypt_folder` with --verify (no writes); its own per-phase timers are shown too
(keystore = storing the key and recording its use, each an fsync'd atomic write).
With `--baseline DIR` (e.g. `git worktree add DIR <commit>`), the plain-store local rows are
also run with DIR's keras_dkg and with this checkout's, each in a child process, alternating
(baseline, current, baseline, current), so their ratio comes from the same run; each child's
time includes importing the runtime (the layouts import in a different order).

MB are plaintext bytes (10^6). `--stores` runs each case into a plain key store and into a
protected one (`dkg-keys init`, the default Argon2id parameters; its one KDF run per batch is
inside the time), side by side in the same run.

The phase split is measured separately, one phase at a time over all files in this
process after two untimed key-generation batches (ms per file): decode = read + decode the plaintext (+ the DICOM context hash),
keygen = onnxruntime key generation batched like the batch does, xor = `encrypt_array`
(XOR + HMAC tag), encode+write = the format's `save_ciphertext` (file bytes: PNG + metadata
chunk, the DICOM dataset or the NIfTI file with its extension; then the atomic write + fsync).

Without --model, an untrained full-size generator (`build_generator()`, 6 residual
blocks; speed does not depend on the weights) is exported to ONNX in a child process,
so TensorFlow never shares this process with onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXPORT_SNIPPET = """
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from pathlib import Path
from keras_dkg.common import quiet
from keras_dkg.export.source import import_keras, load_source
keras = import_keras()
from keras_dkg.train.networks import build_generator
from keras_dkg.export.onnx import export_onnx
run, target, blocks = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
run.mkdir(parents=True, exist_ok=True)
keras.utils.set_random_seed(0)
with quiet():
    build_generator(num_residual_blocks=blocks).save(run / "generator.keras")
(run / "run.json").write_text(json.dumps({"image_size": 256}))
with quiet():
    export_onnx(load_source(run), target, overwrite=True)
print(target)
"""


def export_model(work: Path, blocks: int) -> Path:
    target = work / "generator.onnx"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", EXPORT_SNIPPET, str(work / "run"), str(target), str(blocks)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    print(f"exported an untrained {blocks}-block generator to {target} in {time.perf_counter() - started:.1f} s")
    return target


# ---- data --------------------------------------------------------------------------------

def phantom(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth body-like disc with texture and noise, float in [0, 1]."""
    y, x = np.mgrid[0:size, 0:size] / size - 0.5
    centre = rng.uniform(-0.05, 0.05, 2)
    r = np.hypot(x - centre[0], y - centre[1])
    body = (r < 0.42) * (0.55 + 0.25 * np.cos(14 * x + rng.uniform(0, 6)) * np.sin(11 * y))
    organs = sum((np.hypot(x - cx, y - cy) < rad) * 0.3
                 for cx, cy, rad in rng.uniform([-0.25, -0.25, 0.04], [0.25, 0.25, 0.12], (4, 3)))
    return np.clip(body + organs + rng.normal(0, 0.03, (size, size)), 0, 1)


def make_pngs(folder: Path, count: int) -> None:
    import cv2

    rng = np.random.default_rng(1)
    for index in range(count):
        gray = phantom(rng, 256)
        rgb = np.stack([gray, gray ** 1.2, gray ** 0.8], axis=-1)
        cv2.imwrite(str(folder / f"slice_{index:03d}.png"), np.rint(rgb * 255).astype(np.uint8))


def make_dicoms(folder: Path, count: int) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(2)
    series = generate_uid()
    for index in range(count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.InstanceNumber = series, index + 1
        ds.PatientName, ds.PatientID, ds.Modality = "Bench^Phantom", "BENCH", "CT"
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 1
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        hu = np.rint(phantom(rng, 512) * 2000 - 1024).astype("<i2")
        ds.PixelData = hu.tobytes()
        ds.save_as(folder / f"ct_{index:03d}.dcm", implicit_vr=False, little_endian=True, enforce_file_format=True)


# ---- measurements ------------------------------------------------------------------------

def phase_split(folder: Path, model: Path, seed: Path, work: Path, chunk: int) -> dict[str, float]:
    """ms per file for decode, keygen, xor, encode, write, one phase at a time."""
    from keras_dkg.runtime import formats
    from keras_dkg.runtime.batch.listing import list_folder
    from keras_dkg.runtime.ciphers.metadata import key_size_for
    from keras_dkg.runtime.ciphers.registry import encrypt_array
    from keras_dkg.runtime.keys.generator import KeyGenerator, random_nonce

    files, _ = list_folder(folder)
    times = dict.fromkeys(("decode", "keygen", "xor", "encode+write"), 0.0)
    generator = KeyGenerator(model, batch_size=chunk)
    start = time.perf_counter()
    plains = [formats.open_plaintext(p) for p in files]
    contexts = [p.context for p in plains]
    arrays = [p.array for p in plains]
    times["decode"] = time.perf_counter() - start
    # warm-up: onnxruntime's first runs at a new shape are up to 2x slower (allocation)
    size = key_size_for(arrays[0].shape, arrays[0].dtype)
    for _ in range(2):
        generator.generate_many(seed, size, [random_nonce() for _ in range(min(chunk, len(arrays)))])
    keys = []
    start = time.perf_counter()
    for first in range(0, len(arrays), chunk):
        group = arrays[first:first + chunk]
        size = key_size_for(group[0].shape, group[0].dtype)  # all files of a folder share a size here
        keys += generator.generate_many(seed, size, [random_nonce() for _ in group])
    times["keygen"] = time.perf_counter() - start
    start = time.perf_counter()
    encrypted = [encrypt_array(a, k.pixels, nonce=k.record["nonce"], context=c) for a, k, c in zip(arrays, keys, contexts, strict=True)]
    times["xor"] = time.perf_counter() - start
    target = work / "phase_write"
    target.mkdir(exist_ok=True)
    start = time.perf_counter()
    for path, plain, (ciphertext, meta) in zip(files, plains, encrypted, strict=True):
        plain.save_ciphertext(target / path.name, ciphertext, meta)
    times["encode+write"] = time.perf_counter() - start
    shutil.rmtree(target)
    return {phase: 1000 * seconds / len(files) for phase, seconds in times.items()}


def end_to_end(folder: Path, model: Path, seed: Path, work: Path, jobs: int, chunk: int, store: str = "plain",
               engine: str = "local", backend: str = "auto") -> dict:
    from keras_dkg.runtime.batch.driver import decrypt_folder, encrypt_folder
    from keras_dkg.runtime.keystore.custody import Credentials

    out, keys = work / f"out_{folder.name}_{jobs}", work / f"keys_{folder.name}_{jobs}"
    credentials = None
    if store == "protected":
        from keras_dkg.runtime.keystore.admin import init_store

        init_store(keys, Credentials(passphrase="bench passphrase"))
    start = time.perf_counter()
    if store == "protected":  # a fresh one each time: the batch's own KDF run is timed
        credentials = Credentials(passphrase="bench passphrase")
    engine_options = {"engine": "ray", "workers": jobs} if engine == "ray" else {"jobs": jobs}
    report = encrypt_folder(folder, out, keys=keys, model=model, seed=seed, chunk=chunk,
                            credentials=credentials, backend=backend, **engine_options)
    seconds = time.perf_counter() - start
    assert report.exit_code == 0, report.failed[:3]
    done = [f for f in report.files if f.status == "encrypted"]
    megabytes = sum(f.bytes for f in done) / 1e6
    start = time.perf_counter()
    verified = decrypt_folder(out, None, keys=keys, verify_only=True, credentials=credentials, **engine_options)
    verify_seconds = time.perf_counter() - start
    assert verified.exit_code == 0, verified.failed[:3]
    shutil.rmtree(out)
    shutil.rmtree(keys)
    split = {phase: 1000 * value / max(1, len(done)) for phase, value in report.timing_s.items()}
    return {"files": len(done), "seconds": seconds, "key_engine": report.options.get("key_engine", {}), "ray_startup_s": report.options.get("ray_startup_s", 0.0), "files_s": len(done) / seconds, "mb_s": megabytes / seconds,
            "verify_files_s": len(done) / verify_seconds, "verify_mb_s": megabytes / verify_seconds,
            "split": split}


CHILD_SNIPPET = """
import json, sys, time
root, folder, out, keys, model, seed, jobs, chunk = sys.argv[1:9]
sys.path.insert(0, root)
import keras_dkg
assert keras_dkg.__file__.startswith(root), keras_dkg.__file__
# the clock starts before the runtime is imported: which of its imports come before `encrypt_folder`
# and which inside it depends on a checkout's layout, not on its speed
start = time.perf_counter()
from keras_dkg.runtime.batch import encrypt_folder  # a path every checkout has (a module before the relayout)
report = encrypt_folder(folder, out, keys=keys, model=model, seed=seed, jobs=int(jobs), chunk=int(chunk))
seconds = time.perf_counter() - start
done = sum(1 for f in report.files if f.status == "encrypted")
assert report.exit_code == 0
print(json.dumps({"files": done, "files_s": done / seconds}))
"""


def child_run(root: Path, folder: Path, model: Path, seed: Path, work: Path, jobs: int, chunk: int, tag: str) -> float:
    out, keys = work / f"child_out_{tag}", work / f"child_keys_{tag}"
    done = subprocess.run([sys.executable, "-c", CHILD_SNIPPET, str(root), str(folder), str(out), str(keys),
                           str(model), str(seed), str(jobs), str(chunk)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"child run in {root} failed:\n{done.stderr[-2000:]}")
    shutil.rmtree(out)
    shutil.rmtree(keys)
    return json.loads(done.stdout.strip().splitlines()[-1])["files_s"]


VOLUME_SNIPPET = """
import json, sys, time
root, source, out, keys, model, seed = sys.argv[1:7]
sys.path.insert(0, root)
import keras_dkg
assert keras_dkg.__file__.startswith(root), keras_dkg.__file__
from keras_dkg.runtime import cipher_cli  # the old path: this script also runs older checkouts
start = time.perf_counter()
code = cipher_cli.encrypt_main([source, "-o", out, "--model", model, "--seed", seed, "--keys", keys])
assert code == 0, code
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def make_volume(work: Path, shape: tuple[int, ...]) -> Path:
    """An int16 .nii.gz of smooth anatomy-like values plus noise, so gzip has work like on scans."""
    import nibabel

    source = work / "volume.nii.gz"
    if not source.exists():
        rng = np.random.default_rng(0)
        x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
        data = (1000 * np.exp(-3 * (x ** 2 + y ** 2 + z ** 2)) + rng.normal(0, 20, shape)).astype(np.int16)
        nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), source)
    return source


def volume_child(root: Path, source: Path, model: Path, seed: Path, work: Path, tag: str) -> float:
    """Seconds of one whole `dkg-encrypt VOLUME.nii.gz` (read, key, XOR, .nii.gz write, key store) in a child."""
    out, keys = work / f"volume_out_{tag}.nii.gz", work / f"volume_keys_{tag}"
    done = subprocess.run([sys.executable, "-c", VOLUME_SNIPPET, str(root), str(source), str(out), str(keys),
                           str(model), str(seed)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"volume run in {root} failed:\n{done.stderr[-2000:]}")
    out.unlink()
    shutil.rmtree(keys)
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def volume_split(model: Path, seed: Path, work: Path, shape: tuple[int, ...]) -> dict[str, float]:
    """Seconds of each phase of encrypting one int16 NIfTI volume (.nii.gz), one after the other."""
    import gzip as gzip_module

    from keras_dkg.runtime import formats
    from keras_dkg.runtime.ciphers.metadata import key_size_for
    from keras_dkg.runtime.ciphers.registry import encrypt_array
    from keras_dkg.runtime.keys.generator import KeyGenerator, random_nonce

    source = make_volume(work, shape)
    times: dict[str, float] = {}
    start = time.perf_counter()
    plain = formats.open_plaintext(source)
    plain.array, plain.context  # noqa: B018 - both are computed on first use
    times["read + gunzip + parse"] = time.perf_counter() - start
    size = key_size_for(plain.array.shape, plain.array.dtype)
    for scheme in ("v2", "v3"):
        generator = KeyGenerator(model, nonce_scheme=scheme)
        start = time.perf_counter()
        key = generator.generate(seed, size=size, nonce=random_nonce())
        times[f"key generation, nonce scheme {scheme} ({size[0]}×{size[1]})"] = time.perf_counter() - start
    start = time.perf_counter()
    ciphertext, meta = encrypt_array(plain.array, key.pixels, context=plain.context)
    times["xor + tag"] = time.perf_counter() - start
    body = work / "volume.enc.nii"
    start = time.perf_counter()
    plain.save_ciphertext(body, ciphertext, meta)
    times["file bytes + write (.nii)"] = time.perf_counter() - start
    start = time.perf_counter()
    gzip_module.compress(body.read_bytes(), compresslevel=6, mtime=0)
    times["gzip (what .nii.gz adds)"] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="generator .onnx (default: export an untrained full-size one)")
    parser.add_argument("--blocks", type=int, default=6, help="residual blocks of the exported generator")
    parser.add_argument("--pngs", type=int, default=32, help="number of 256x256 PNGs")
    parser.add_argument("--dicoms", type=int, default=16, help="number of 512x512 16-bit DICOMs")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk", type=int, default=8, help="files per task = keys per session run")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; the row shows the median files/s")
    parser.add_argument("--baseline", type=Path, help="a checkout of an older commit: its batch vs this one's")
    parser.add_argument("--engines", nargs="+", choices=("local", "ray"), default=["local"],
                        help="batch engines, side by side (ray: --jobs N actors on a local Ray started once)")
    parser.add_argument("--stores", nargs="+", choices=("plain", "protected"), default=["plain", "protected"],
                        help="key store kinds, each run side by side (default: both)")
    parser.add_argument("--backends", nargs="+", choices=("auto", "onnxruntime", "openvino"), default=["auto"],
                        help="key engines, side by side (default: auto, what dkg-encrypt uses)")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--volume", type=int, nargs="*", default=[240, 240, 155], metavar="N",
                        help="shape of the int16 NIfTI volume whose encryption is split into phases "
                             "(BraTS: 240 240 155); none: skip")
    args = parser.parse_args()

    import onnxruntime

    from keras_dkg.embedded import seed_path

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="dkg-bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        model = Path(args.model) if args.model else export_model(work, args.blocks)
        seed = seed_path()
        folders = {}
        if args.pngs:
            folders["256² RGB PNG"] = work / "png"
            folders["256² RGB PNG"].mkdir(exist_ok=True)
            make_pngs(folders["256² RGB PNG"], args.pngs)
        if args.dicoms:
            folders["512² 16-bit DICOM"] = work / "dicom"
            folders["512² 16-bit DICOM"].mkdir(exist_ok=True)
            make_dicoms(folders["512² 16-bit DICOM"], args.dicoms)
        print(f"onnxruntime {onnxruntime.__version__} ({', '.join(onnxruntime.get_available_providers())}), "
              f"{os.cpu_count()} CPUs, model {model.name}, seed {seed.name}, chunk {args.chunk}")
        print()
        if "ray" in args.engines:  # started once, its start-up timed apart from the batches
            import ray

            start = time.perf_counter()
            ray.init(num_cpus=max(args.jobs), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            print(f"Ray {ray.__version__} start-up: {time.perf_counter() - start:.2f} s (not in the rows)\n")
        print("| data | engine | jobs / workers | store | key engine | files | files/s | MB/s | verify files/s | "
              "verify MB/s | files/s ÷ first row of its jobs |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        batch_splits = []
        for label, folder in folders.items():
            for jobs in args.jobs:
                first_rate = None
                for engine, store, backend in ((e, s, b) for e in args.engines for s in args.stores
                                               for b in args.backends):
                        runs = [end_to_end(folder, model, seed, work, jobs, args.chunk, store, engine, backend)
                                for _ in range(args.repeat)]
                        r = sorted(runs, key=lambda run: run["files_s"])[len(runs) // 2]  # the median run
                        first_rate = first_rate or r["files_s"]
                        batch_splits.append((f"{label}, {engine}, {store}", jobs, r["split"]))
                        key_engine = r["key_engine"]
                        chosen = f"{backend}: {key_engine.get('name')} {key_engine.get('precision')}"
                        print(f"| {label} | {engine} | {jobs} | {store} | {chosen} | {r['files']} | {r['files_s']:.2f} | "
                              f"{r['mb_s']:.2f} | {r['verify_files_s']:.2f} | {r['verify_mb_s']:.2f} | "
                              f"{r['files_s'] / first_rate:.2f} |", flush=True)
        if args.baseline:
            print(f"\nThis checkout vs {args.baseline} (local engine, plain store; child processes, alternating, "
                  f"median of {max(2, args.repeat)} each):\n")
            print("| data | jobs | baseline files/s | this checkout files/s | ratio |\n|---|---|---|---|---|")
            for label, folder in folders.items():
                for jobs in args.jobs:
                    rates: dict[str, list[float]] = {"baseline": [], "current": []}
                    for repeat in range(max(2, args.repeat)):
                        for tag, root in (("baseline", args.baseline.resolve()), ("current", ROOT)):
                            rates[tag].append(child_run(root, folder, model, seed, work, jobs, args.chunk,
                                                        f"{tag}{repeat}"))
                    old, new = (float(np.median(rates[t])) for t in ("baseline", "current"))
                    print(f"| {label} | {jobs} | {old:.2f} | {new:.2f} | {new / old:.2f} |", flush=True)
            if args.volume:
                source = make_volume(work, tuple(args.volume))
                seconds: dict[str, list[float]] = {"baseline": [], "current": []}
                for repeat in range(2):
                    for tag, root in (("baseline", args.baseline.resolve()), ("current", ROOT)):
                        seconds[tag].append(volume_child(root, source, model, seed, work, f"{tag}{repeat}"))
                old, new = (float(np.median(seconds[t])) for t in ("baseline", "current"))
                print(f"\nOne {'×'.join(map(str, args.volume))} int16 .nii.gz, whole dkg-encrypt (child processes, "
                      f"alternating, median of 2): baseline {old:.2f} s, this checkout {new:.2f} s, "
                      f"speed-up {old / new:.2f}×", flush=True)
        print()
        print("The batch's own timers (encryption runs above), ms per file summed over workers;")
        print("encode is inside write (one save_ciphertext call per file):")
        print()
        phases = ("decode", "keygen", "keystore", "xor", "write")
        print("| data | jobs | " + " | ".join(phases) + " |")
        print("|---|---|" + "---|" * len(phases))
        for label, jobs, split in batch_splits:
            print(f"| {label} | {jobs} | " + " | ".join(f"{split.get(p, 0.0):.1f}" for p in phases) + " |")
        print()
        print("Phase split, one process, ms per file (share of the sum):")
        print()
        print("| data | decode | keygen | xor | encode+write |")
        print("|---|---|---|---|---|")
        for label, folder in folders.items():
            split = phase_split(folder, model, seed, work, args.chunk)
            total = sum(split.values())
            print(f"| {label} | " + " | ".join(f"{split[p]:.1f} ({100 * split[p] / total:.0f} %)"
                                                for p in ("decode", "keygen", "xor", "encode+write")) + " |",
                  flush=True)
        if args.volume:
            shape = tuple(args.volume)
            split = volume_split(model, seed, work, shape)
            total = sum(split.values())
            voxels = int(np.prod(shape))
            print(f"\nOne {'×'.join(map(str, shape))} int16 NIfTI volume (.nii.gz), phases one after the other:\n")
            print("| phase | seconds | share |\n|---|---|---|")
            for phase, seconds in split.items():
                print(f"| {phase} | {seconds:.2f} | {100 * seconds / total:.0f} % |")
            keygen = next(v for k, v in split.items() if k.startswith("key generation"))
            print(f"\nkey cost: {1e9 * keygen / voxels:.0f} ns per voxel ({voxels / 1e6:.1f} M voxels)")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

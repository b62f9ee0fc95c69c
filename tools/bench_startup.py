"""Whole-process `dkg-keygen` time for one key, beside the floor its libraries set, in one run.

    python tools/bench_startup.py --model G.onnx [--size 256] [--repeat 7] [--baseline DIR]

Rows (median wall time of --repeat runs, the rows taking turns so the machine's drift hits
them alike): the bare interpreter; `import numpy, onnxruntime, cv2` (what any key costs
before our code runs); `dkg-keygen --model G.onnx --seed SEED.png -o KEY.png` from this
checkout; with `--baseline DIR` (e.g. `git worktree add DIR <commit>`) the same command
with DIR's keras_dkg first on the path. Each run writes a fresh key into a temporary
folder. The seed is a size×size PNG of the embedded CT slice. No TensorFlow is imported
by any row (the runtime layer never imports it).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEYGEN = "import sys; from keras_dkg.runtime.cli.keygen import main; sys.exit(main())"


def seed_png(folder: Path, size: int) -> Path:
    import cv2

    from keras_dkg.embedded import seed_path
    from keras_dkg.runtime.formats.images import read_image
    from keras_dkg.runtime.keys.preprocess import preprocess_uint8

    path = folder / "seed.png"
    cv2.imwrite(str(path), preprocess_uint8(read_image(seed_path()), size)[..., ::-1])
    return path


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="an exported generator, e.g. runs/demo/generator.onnx")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="a checkout of an older commit: its dkg-keygen beside this one's")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        seed = seed_png(folder, args.size)

        def keygen_row(root: Path, *extra: str) -> tuple[list[str], dict]:
            env = {**os.environ, "PYTHONPATH": str(root)}
            return [sys.executable, "-c", KEYGEN, "--model", str(args.model), "--seed", str(seed), *extra, "-o"], env

        rows = [("python -c pass", [sys.executable, "-c", "pass"], dict(os.environ)),
                ("import numpy, onnxruntime, cv2", [sys.executable, "-c", "import numpy, onnxruntime, cv2"],
                 dict(os.environ)),
                ("dkg-keygen, this checkout (--backend auto, its choice cached)", *keygen_row(ROOT))]
        if importlib.util.find_spec("openvino") is not None:
            rows += [("import numpy, openvino, cv2", [sys.executable, "-c", "import numpy, openvino, cv2"],
                      dict(os.environ)),
                     ("dkg-keygen --backend onnxruntime", *keygen_row(ROOT, "--backend", "onnxruntime")),
                     ("dkg-keygen --backend openvino", *keygen_row(ROOT, "--backend", "openvino"))]
        subprocess.run([*rows[2][1], str(folder / "warm.png")], env=rows[2][2], check=True,
                       capture_output=True)  # auto measures once; the rows time the cached choice
        if args.baseline:
            rows.append((f"dkg-keygen, {args.baseline}", *keygen_row(args.baseline.resolve())))
        times: list[list[float]] = [[] for _ in rows]
        for repeat in range(args.repeat + 1):  # the first round warms the page cache and is dropped
            for index, (_, command, env) in enumerate(rows):
                if "-o" in command:
                    command = [*command, str(folder / f"key{index}_{repeat}.png")]
                seconds = timed(command, env)
                if repeat:
                    times[index].append(seconds)
    medians = [float(np.median(t)) for t in times]
    print(f"\nWhole-process time, one {args.size}² key, median of {args.repeat} (rows alternate):\n")
    print("| command | seconds | vs `import numpy, onnxruntime, cv2` |\n|---|---:|---:|")
    for (label, _, _), median in zip(rows, medians, strict=True):
        print(f"| {label} | {median:.3f} | {median / medians[1]:.2f}× |")
    if args.baseline:
        print(f"\nthis checkout ÷ baseline: {medians[2] / medians[-1]:.2f}× the time")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Key-quality ablation grid: each cell trains with the real `python -m keras_dkg.fit`, then
`python -m keras_dkg.diagnose` measures its keys on the held-back seed (docs/key_quality.md).

    nice -n 15 python tools/key_quality_study.py --out runs/key_quality [--steps 300] [--size 64]
        [--seeds 0 1] [--cells paper pool ...] [--residual-blocks 6]

Each diagnosis runs `diagnose --nist`: the 15 SP 800-22 tests on the first held-back key
(strict: tests passed of the applicable ones) and by proportion over the --nonces keys.

Every (cell, training seed) is its own run folder under --out, so a stopped study continues
where it stopped (finished runs with a diagnosis are reused). Writes --out/results.json
and prints a Markdown table of the means over the training seeds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from keras_dkg.diagnose.summary import key_row

CELLS = {
    "paper": [],
    "pool50": ["--d-history", "50"],
    "noise0.1": ["--instance-noise", "0.1"],
    "r1=1": ["--r1", "1"],
    "spectral": ["--d-spectral-norm"],
    "ttur-d/4": ["--d-lr", "5e-5"],
    "gray": ["--domain-gray"],
    "augment": ["--domain-augment"],
    "sens1": ["--sensitivity-weight", "1"],
    "unif1": ["--uniformity-weight", "1"],
    "unif3": ["--uniformity-weight", "3"],
    "unif10": ["--uniformity-weight", "10"],
    "pred1": ["--predictor-weight", "1"],
    "r1+sens+unif": ["--r1", "1", "--sensitivity-weight", "1", "--uniformity-weight", "1"],
    "r1+sens+unif+pred": ["--r1", "1", "--sensitivity-weight", "1", "--uniformity-weight", "1",
                          "--predictor-weight", "1"],
    "sens10": ["--sensitivity-weight", "10"],
    "r1+sens10+unif": ["--r1", "1", "--sensitivity-weight", "10", "--uniformity-weight", "1"],
    "r1=0.1": ["--r1", "0.1"],
    "augment+ttur-d/4": ["--domain-augment", "--d-lr", "5e-5"],
    "unif1+pred1": ["--uniformity-weight", "1", "--predictor-weight", "1"],
    "recommended": ["--recipe", "recommended"],
    "resize": ["--upsample", "resize"],
    "recommended+resize": ["--recipe", "recommended", "--upsample", "resize"],
}
COLUMNS = [  # (header, path into the diagnosis, format)
    ("entropy", ("keys", "bytes", "entropy_per_image"), "{:.4f}"),
    ("χ² p", ("keys", "bytes", "chi2_p_pooled"), "{:.2g}"),
    ("0/255 share", ("saturated",), "{:.4f}"),
    ("NPCR %", ("one_pixel", "npcr"), "{:.1f}"),
    ("UACI %", ("one_pixel", "uaci"), "{:.1f}"),
    ("nonce equal %", ("nonce_equal_pct",), "{:.2f}"),
    ("lag-1 |r|", ("lag1",), "{:.3f}"),
    ("lag-4 |r|", ("lag4",), "{:.3f}"),
    ("spectrum peak×median", ("peak_times_median",), "{:.0f}"),
    ("peak at cycles/px", ("peak_frequency",), "{:.3f}"),
    ("NIST strict", ("nist_strict",), "{:.1f}"),
    ("NIST by proportion", ("nist_proportion",), "{:.1f}"),
    ("d_loss end", ("d_loss_end",), "{:.3f}"),
    ("D acc end", ("d_acc_end",), "{:.2f}"),
    ("steps/s", ("steps_per_second",), "{:.1f}"),
]
LOCALITY_COLUMNS = [  # where a one-pixel seed change moves key bytes (diagnose's locality block)
    ("NPCR %", ("one_pixel", "npcr"), "{:.1f}"),
    ("reach % (local bound)", ("locality", "bound_npcr"), "{:.1f}"),
    ("changed inside reach %", ("locality", "npcr_inside"), "{:.1f}"),
    ("changed beyond reach %", ("locality", "npcr_outside"), "{:.2f}"),
    ("changed within 8 px %", ("within8",), "{:.1f}"),
    ("changed 32+ px away %", ("beyond32",), "{:.1f}"),
    ("centred pixel's reach at 256² %", ("reach256",), "{:.1f}"),
]


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr[-2000:]}")


def measure(out: Path, cell: str, seed: int, args: argparse.Namespace) -> dict:
    run_dir = out / cell / f"seed{seed}"
    report_path = run_dir / "diagnosis.json"
    stale = report_path.is_file() and not {"locality", "nist"} <= set(json.loads(report_path.read_text()))
    if stale or not report_path.is_file():  # a diagnosis without the locality or NIST block is made again
        if not (run_dir / "generator.keras").is_file():
            resume = ["--resume"] if (run_dir / "checkpoints").is_dir() else []
            run([sys.executable, "-m", "keras_dkg.fit", "--steps", str(args.steps), "--image-size", str(args.size),
                 "--residual-blocks", str(args.residual_blocks), "--seed", str(seed), "--out", str(run_dir),
                 "--checkpoint-every", str(max(1, args.steps // 4)), "--no-progress", *resume, *CELLS[cell]])
        run([sys.executable, "-m", "keras_dkg.diagnose", str(run_dir), "--json", str(report_path),
             "--nonces", str(args.nonces), "--nist", *(["--overwrite"] if stale else [])])
    report = json.loads(report_path.read_text())
    curves = report["training"]
    tail = slice(-max(1, len(curves["steps"]) // 10), None)  # the last tenth of training
    speed = json.loads((run_dir / "run.json").read_text())["summary"]["steps_per_second"]
    rings = report["locality"]["rings"]

    def ring_share(selected) -> float:
        chosen = [r for r in rings if selected(r)]
        total = sum(r["bytes"] for r in chosen)
        return sum(r["changed_percent"] * r["bytes"] for r in chosen) / total if total else float("nan")

    return {**report, **key_row(report), "steps_per_second": speed,
            "within8": ring_share(lambda r: r["to"] is not None and r["to"] <= 8),
            "beyond32": ring_share(lambda r: r["from"] >= 32),
            "reach256": 100 * report["locality"]["centred_reach_share_256"],
            "d_loss_end": float(np.mean(curves["d_loss"][tail])),
            "d_acc_end": float(np.mean([(a + b) / 2 for a, b in zip(curves["d_acc_real"][tail],
                                                                    curves["d_acc_fake"][tail], strict=True)]))}


def value(result: dict, path: tuple):
    for key in path:
        result = result[key]
    return float(result)


def table(results: dict[str, list[dict]], columns: list = COLUMNS) -> str:
    lines = ["| cell | " + " | ".join(h for h, _, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for cell, runs in results.items():
        cells = []
        for _, path, fmt in columns:
            values = [value(r, path) for r in runs]
            spread = f" ({fmt.format(min(values))}–{fmt.format(max(values))})" if len(values) > 1 else ""
            cells.append(fmt.format(float(np.mean(values))) + spread)
        lines.append(f"| {cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/key_quality")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    parser.add_argument("--residual-blocks", type=int, default=6)
    parser.add_argument("--nonces", type=int, default=8)
    args = parser.parse_args()
    out = Path(args.out)
    results = {}
    for cell in args.cells:
        results[cell] = [measure(out, cell, seed, args) for seed in args.seeds]
        print(f"{cell}: done", file=sys.stderr, flush=True)
    summary = {cell: [{k: v for k, v in r.items() if k not in ("options", "training")} for r in runs]
               for cell, runs in results.items()}
    (out / "results.json").write_text(json.dumps({"args": vars(args), "cells": CELLS, "results": summary}, indent=2))
    print(table(results))
    print()
    print(table(results, LOCALITY_COLUMNS))


if __name__ == "__main__":
    main()

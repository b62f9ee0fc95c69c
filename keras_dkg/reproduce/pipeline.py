"""The ordered stages of a reproduction and the one function that runs them."""

from __future__ import annotations

from pathlib import Path

from keras_dkg.reproduce.hparams import stage_hparams
from keras_dkg.reproduce.profiles import get_profile
from keras_dkg.reproduce.report import write_report
from keras_dkg.reproduce.runner import Context
from keras_dkg.reproduce.stages import (
    stage_architecture,
    stage_data,
    stage_domains,
    stage_encrypt,
    stage_export,
    stage_keys,
    stage_train,
)
from keras_dkg.reproduce.tables import check_coverage, load_paper_values, stage_analysis

STAGES = (
    ("data", stage_data, "plaintexts per modality, training source, 90/10 split"),
    ("domains", stage_domains, "chaotic transformation domains (high, low, other seed, grid)"),
    ("architecture", stage_architecture, "parameter counts (Tables I-II, XVI)"),
    ("train", stage_train, "trainings: independent runs, attack networks, other domains"),
    ("export", stage_export, "ONNX export with parity check"),
    ("keys", stage_keys, "keys with onnxruntime (KeyGenerator)"),
    ("encrypt", stage_encrypt, "ciphertexts with encrypt_array"),
    ("hparams", stage_hparams, "Table XXI grid: lr x batch size x steps"),
    ("analysis", stage_analysis, "every table of the paper"),
)


def run(profile_name: str, out: Path, options: dict, paper_path: str | None = None, echo=print,
        started: float | None = None) -> dict:
    """Run (or resume) every stage in `out`, then write README.md, results.json and figures."""
    paper, source = load_paper_values(paper_path)
    check_coverage(paper)
    ctx = Context(get_profile(profile_name), Path(out), options, paper=paper, echo=echo)
    if started is not None:
        ctx.started = started
    ctx.open()
    ctx.log(f"reproduce_paper --{profile_name} --out {out}")
    for name, function, label in STAGES:
        ctx.stage(name, function, label)
    ctx.log("start report")
    results = write_report(ctx, source)
    ctx.log(f"done report: {ctx.path('README.md')}")
    return results

"""The ordered stages of a reproduction and the one function that runs them."""

from __future__ import annotations

from pathlib import Path

from keras_dkg.errors import InputError
from keras_dkg.reproduce.fitrun import resolve_backend
from keras_dkg.reproduce.hparams import stage_hparams
from keras_dkg.reproduce.profiles import (
    expected_seconds,
    get_profile,
    scaled,
    training_runs,
    training_steps,
)
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
        started: float | None = None, image_size: int | None = None, steps: int | None = None,
        until: str | None = None) -> dict | None:
    """Run (or resume) every stage in `out`, then write README.md, results.json and figures.

    `image_size`/`steps` scale the profile (profiles.scaled); `until` stops after that stage
    (no report; a later run with the same folder continues). Before the first stage the
    log states the trainings' backend and expected wall time.
    """
    paper, source = load_paper_values(paper_path)
    check_coverage(paper)
    profile = scaled(get_profile(profile_name), image_size, steps)
    names = [name for name, _, _ in STAGES]
    if until is not None and until not in names:
        raise InputError(f"--until {until!r} is not a stage; choose from {', '.join(names)}")
    ctx = Context(profile, Path(out).resolve(), options, paper=paper, echo=echo,
                  backend=resolve_backend(profile.backend))
    if started is not None:
        ctx.started = started
    ctx.open()
    ctx.log(f"reproduce_paper --profile {profile_name} --out {out}")
    hours = expected_seconds(profile, ctx.backend) / 3600
    ctx.log(f"expected: {len(training_runs(profile))} trainings + the Table XXI grid, {training_steps(profile):,} "
            f"image-steps at {profile.image_size}² on {ctx.backend} — about {hours:.1f} h of training "
            f"({'from scratch; finished stages in this folder are skipped' if not ctx.done('train') else 'resuming'})")
    for name, function, label in STAGES:
        ctx.stage(name, function, label)
        if name == until:
            ctx.log(f"stopped after stage {until} (--until); rerun without it to continue")
            return None
    ctx.log("start report")
    results = write_report(ctx, source)
    ctx.log(f"done report: {ctx.path('README.md')}")
    return results

"""`tools/reproduce_paper.py --profile paper`: every training at 256², 20,000 steps through fit
(JAX in a subprocess when a GPU is visible to JAX, else TensorFlow), its wall-time statement and
stage-by-stage resume, exercised at a tiny size; and `tools/gpu_paper_scale.sh` at a tiny size."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keras_dkg.reproduce import fitrun, profiles
from keras_dkg.train import TrainConfig
from keras_dkg.train.cli import build_parser, config_from

ROOT = Path(__file__).resolve().parents[1]


def test_paper_profile_is_the_papers_setting_on_auto_backend():
    paper = profiles.get_profile("paper")
    assert (paper.image_size, paper.steps, paper.batch_size, paper.backend) == (256, 20000, 1, "auto")
    hours_cpu = profiles.expected_seconds(paper, "tensorflow") / 3600
    hours_gpu = profiles.expected_seconds(paper, "jax") / 3600
    assert hours_cpu > 24 * hours_gpu > 0  # 3.5 vs 110 steps/s at 256²
    small = profiles.scaled(paper, 32, 4)
    assert (small.image_size, small.steps) == (32, 4) and all(s <= 6 for s, _ in small.grid_rows)
    assert "overridden" in small.reductions[-1]
    with pytest.raises(Exception, match="backend"):
        fitrun.resolve_backend("cuda")


def test_fit_argv_rebuilds_the_config(tmp_path):
    config = TrainConfig.from_recipe("recommended", out=str(tmp_path / "run"), image_size=32, steps=3, seed=2,
                                     residual_blocks=1, upsample="resize", d_spectral_norm=True, d_history=5,
                                     checkpoint_every=1, backend="jax")
    rebuilt = config_from(build_parser().parse_args(fitrun.fit_argv(config)))
    assert rebuilt.options() | {"recipe_overrides": None} == config.options() | {"recipe_overrides": None}


def test_jax_training_runs_through_fit_in_a_subprocess(tmp_path):
    pytest.importorskip("jax")
    from keras_dkg.reproduce.stages import run_training

    config = TrainConfig(out=str(tmp_path / "run"), image_size=32, steps=2, residual_blocks=1, checkpoint_every=1,
                         backend="jax")
    result = run_training(config)
    assert result.summary["steps_done"] == 2
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["options"]["backend"] == "jax" and (tmp_path / "run" / "generator.keras").is_file()


def _reproduce(out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "tools" / "reproduce_paper.py"), "--profile", "paper", "--image-size", "32",
               "--steps", "2", "--out", str(out), *extra]
    return subprocess.run(command, cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True,
                          text=True, timeout=600)


def test_paper_profile_states_its_wall_time_and_resumes_by_stage(tmp_path):
    out = tmp_path / "paper"
    first = _reproduce(out, "--until", "domains")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "expected: 11 trainings + the Table XXI grid" in first.stdout
    assert "stopped after stage domains" in first.stdout
    assert (out / "stages" / "domains.json").is_file() and not (out / "stages" / "architecture.json").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["profile"]["name"] == "paper" and config["profile"]["image_size"] == 32
    second = _reproduce(out, "--until", "domains")
    assert second.returncode == 0 and "skip data: done earlier" in second.stdout and "skip domains" in second.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_script_at_a_tiny_size(tmp_path):
    pytest.importorskip("jax")
    env = dict(os.environ, SIZE="32", STEPS="2", RECIPES="paper", SEEDS="0", RUNS=str(tmp_path / "runs"),
               OUT=str(tmp_path / "out"), PYTHON=sys.executable)
    done = subprocess.run(["bash", str(ROOT / "tools" / "gpu_paper_scale.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (row,) = summary["rows"]
    assert (row["recipe"], row["seed"], row["image_size"], row["steps"], row["backend"]) == ("paper", 0, 32, 2, "jax")
    assert 0 < row["entropy"] <= 8 and "| paper | 0 | 32² | 2 | jax |" in done.stdout

"""Bad-input matrix: `python -m keras_dkg.fit --recipe` (docs/training.md, "Recipes").

Every case fails before training starts, so no run folder is left behind.
"""

from badinput_kit import Matrix, check_case

MATRIX = Matrix()
case = MATRIX.case
FIT = ["--image-size", "32", "--checkpoint-every", "2", "--residual-blocks", "1", "--no-progress", "--steps", "2"]


@case("recipe-unknown", "keras_dkg.fit", "--recipe with a name that is no recipe", 2,
      r"--recipe 'best' is not a recipe; choose from paper, recommended", "no run folder")
def _(env):
    return ["--recipe", "best", "--out", "run", *FIT]


@case("recipe-resume-changed", "keras_dkg.fit", "--resume of a paper run with --recipe recommended", 2,
      r"run: --resume with different settings \(.+\); use a new --out", "the run folder unchanged")
def _(env):
    env.write("run/run.json", b'{"options": {"recipe": "paper", "image_size": 32}}')
    env.write("run/checkpoints/ckpt-00000002/state.json", b'{"step": 2}')
    return ["--recipe", "recommended", "--out", "run", "--resume", *FIT]


@MATRIX.parametrize()
def test_bad_input(case, tmp_path, request, monkeypatch, capfd):
    check_case(case, tmp_path, request, monkeypatch, capfd)

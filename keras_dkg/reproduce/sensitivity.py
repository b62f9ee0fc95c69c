"""What Table IV's one-pixel NPCR/UACI can and cannot be: the two measurements behind the
report's locality and Table IV findings, both made on this run's own generators.

* `locality`: where network A's one-pixel pairs (the `sens-*` keys) changed key bytes —
  inside the window G's convolutions reach from the changed pixel, or beyond it, where only
  instance norm's image-wide statistics carry the change (keras_dkg.diagnose.keys.local_reach,
  docs/key_quality.md "Locality").
* `checkpoint_pairs`: keys of ONE seed from TWO weight states of one training (the sample
  keys `fit` writes at consecutive checkpoints). If the paper's pairs came from a G still
  training, Table IV measured this; a one-pixel change through one fixed G cannot give it.
"""

from __future__ import annotations

from keras_dkg.analysis import differential
from keras_dkg.reproduce.tablekit import Artifacts, mean

PAPER_SIZE = 256


def locality(art: Artifacts, run: str = "otp_0") -> dict:
    """diagnose's locality block over the run's sensitivity pairs (Table IV's changed pixels)."""
    from keras_dkg.diagnose.keys import load_generator, locality_of_pairs
    from keras_dkg.diagnose.run_folder import read_run

    run_dir = art.ctx.path("runs", run)
    generator = load_generator(run_dir, read_run(run_dir)["options"])
    changes = art.stage(f"keys/{run}").get("sensitivity_changes", [])
    pairs = [(art.key(run, f"sens-{c['pair']}-a"), art.key(run, f"sens-{c['pair']}-b")) for c in changes]
    positions = [(c["row"], c["col"]) for c in changes]
    return {"run": run, **locality_of_pairs(generator, art.ctx.profile.image_size, pairs, positions, PAPER_SIZE)}


def checkpoint_pairs(art: Artifacts, runs: list[str]) -> list[dict]:
    """NPCR/UACI between the held-back seed's keys at consecutive checkpoints of each run."""
    from keras_dkg.diagnose.run_folder import sample_keys

    out = []
    for run in runs:
        samples = [(step, key) for step, key in sample_keys(art.ctx.path("runs", run)) if step > 0]
        for (step_a, key_a), (step_b, key_b) in zip(samples[:-1], samples[1:], strict=True):
            report = differential.npcr_uaci_report(key_a, key_b, f"{run}: step {step_a} vs {step_b}")
            out.append({"run": run, "steps": [step_a, step_b], "gap": step_b - step_a, **report})
    return out


def summary(pairs: list[dict]) -> dict:
    """Mean NPCR/UACI of the checkpoint pairs and their range (None when the run kept one checkpoint)."""
    if not pairs:
        return {"pairs": 0, "npcr": None, "uaci": None}
    npcr, uaci = [p["npcr"] for p in pairs], [p["uaci"] for p in pairs]
    return {"pairs": len(pairs), "npcr": mean(npcr), "uaci": mean(uaci), "npcr_range": [min(npcr), max(npcr)],
            "uaci_range": [min(uaci), max(uaci)], "gaps": sorted({p["gap"] for p in pairs})}

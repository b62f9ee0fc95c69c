"""The run folder of a reproduction: its settings, stage markers, log and shared look-ups.

A stage (or one unit of a stage, e.g. one training) is finished when its marker
``DIR/stages/<name>.json`` exists; the marker holds the stage's result and wall time. A
rerun with the same folder reads the markers and skips those stages ("skip" lines in
``DIR/reproduce.log``), so an interrupted run continues where it stopped. A folder made
with another profile or other data is refused, so results are never mixed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from keras_dkg.common import to_jsonable
from keras_dkg.errors import InputError, OutputError
from keras_dkg.reproduce.profiles import Profile
from keras_dkg.reproduce.provenance import source_commit
from keras_dkg.runtime.guards.atomic import write_bytes_atomic

CONFIG = "config.json"
LOG = "reproduce.log"
STAGES = "stages"


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"), overwrite=True)


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


@dataclass
class Context:
    """Everything a stage needs: the profile, the run folder, the data options, the log."""

    profile: Profile
    out: Path
    options: dict  # data options: source, seed_image, xray, ultrasound, mri (None = embedded)
    paper: dict = field(default_factory=dict)  # paper_values.json
    echo: Callable[[str], None] = print
    started: float = field(default_factory=time.time)
    backend: str = "tensorflow"  # the trainings' Keras backend, resolved (fitrun.resolve_backend)
    # the commit whose code this process runs: read once, at the start (HEAD may move during a long run)
    source: dict = field(default_factory=source_commit)
    skipped: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ folder
    def open(self) -> None:
        """Create the folder or reopen it; refuse one made with another profile or data."""
        self.out.mkdir(parents=True, exist_ok=True)
        config = {"profile": self.profile.to_dict(), "options": self.options}
        path = self.out / CONFIG
        if path.is_file():
            previous = read_json(path)
            if previous != to_jsonable(config):
                changed = [k for k in ("profile", "options") if previous.get(k) != to_jsonable(config[k])]
                raise OutputError(
                    f"{self.out}: holds a reproduction with another {' and '.join(changed)} "
                    f"(profile {previous.get('profile', {}).get('name')!r}); use another --out"
                )
        else:
            write_json(path, config)

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def log(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        with open(self.out / LOG, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        self.echo(message)

    # ------------------------------------------------------------------ markers
    def marker(self, name: str) -> Path:
        return self.out / STAGES / f"{name}.json"

    def done(self, name: str) -> bool:
        return self.marker(name).is_file()

    def result(self, name: str):
        path = self.marker(name)
        if not path.is_file():
            raise InputError(f"{self.out}: stage {name!r} has not run yet (no {path})")
        return read_json(path)["result"]

    def stage(self, name: str, function: Callable[[Context], dict], label: str | None = None):
        """Run `function(self)` unless the marker says it is done; return its result."""
        if self.done(name):
            self.log(f"skip {name}: done earlier ({self.marker(name).relative_to(self.out)})")
            self.skipped.append(name)
            return self.result(name)
        self.log(f"start {name}" + (f": {label}" if label else ""))
        began = time.time()
        result = function(self)
        seconds = time.time() - began
        write_json(self.marker(name), {"stage": name, "seconds": round(seconds, 2),
                                       "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                                       "source": self.source, "result": result})
        self.log(f"done {name} in {seconds:.1f} s")
        self.ran.append(name)
        return to_jsonable(result)

    def stage_commits(self) -> dict[str, str | None]:
        """The commit each finished marker's stage ran at ("+dirty" with uncommitted changes; None: unknown)."""
        folder = self.out / STAGES
        commits = {}
        for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
            source = read_json(path).get("source") or {}
            commit = source.get("commit")
            commits[str(path.relative_to(folder).with_suffix(""))] = (
                None if commit is None else commit[:12] + ("+dirty" if source.get("dirty") else ""))
        return commits

    def stage_seconds(self) -> dict[str, float]:
        """Wall seconds of every finished marker (top-level stages and their units)."""
        folder = self.out / STAGES
        times = {}
        for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
            times[str(path.relative_to(folder).with_suffix(""))] = float(read_json(path).get("seconds", 0.0))
        return times

    # ------------------------------------------------------------------ shared look-ups
    def image_size(self) -> int:
        return self.profile.image_size

    def plaintext_manifest(self) -> dict:
        return read_json(self.path("data", "manifest.json"))

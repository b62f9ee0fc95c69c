"""The bad-input matrix's kit: a case's folder, snapshots, fixtures' helpers and the check.

Each `Case` builds one bad input under a fresh folder, runs a real console-script `main`
in-process with that folder as the working directory (so paths in messages are short and
relative), and `check_case` checks:

* the exit code;
* stderr is exactly ONE line, `PROG: error: ...`, no traceback (captured at the file
  descriptor level, so OpenCV/onnxruntime logs would show), matching the case's regex,
  which names the file (or option) and the cause;
* the folder is unchanged afterwards: no new file or folder, no temporary file, every
  existing file (inputs, keys, key records, symlinked model and seed) byte-identical
  (SHA-256). A few cases allow a named new file (a batch report).

Test modules `tests/test_bad_inputs*.py` each hold a `Matrix` of cases;
`tools/bad_input_table.py` runs them with DKG_BAD_INPUT_TABLE=FILE and prints
docs/bad_inputs.md from the rows.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from keras_dkg.runtime.ciphers.metadata import key_size_for, plaintext_digest
from keras_dkg.runtime.ciphers.registry import encrypt_array
from keras_dkg.runtime.cli import keygen as keygen_cli
from keras_dkg.runtime.formats.images import read_image, write_image
from keras_dkg.runtime.formats.png_tiff import save_ciphertext
from keras_dkg.runtime.keys.artifact import Key, load_key, make_record, mark_key_used

pydicom = pytest.importorskip("pydicom")
DICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
REPO = Path(__file__).resolve().parents[1]
TABLE_ENV = "DKG_BAD_INPUT_TABLE"
NOTHING = "nothing written; inputs, keys and records byte-identical"
PLAIN_SHAPE, PLAIN_DTYPE = (24, 20), np.uint16  # the usual plaintext: a 16-bit gray slice


def record_row(row: dict) -> None:
    """Add a row to the docs table when tools/bad_input_table.py asks for one."""
    target = os.environ.get(TABLE_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


def _mains() -> dict[str, Callable[[list[str]], int]]:
    from keras_dkg.runtime.cli import encrypt as cipher

    def fit_main(argv):
        from keras_dkg import fit

        return fit.main(argv)

    def export_main(argv):
        from keras_dkg.export import cli

        return cli.main(argv)

    def domain_main(argv):
        from keras_dkg import domains

        return domains.main(argv)

    def analyze_main(argv):
        from keras_dkg.analysis import cli

        return cli.main(argv)

    from keras_dkg.runtime.cli import keys as keys_cli

    return {
        "dkg-encrypt": cipher.encrypt_main, "dkg-decrypt": cipher.decrypt_main, "dkg-keygen": keygen_cli.main,
        "dkg-keys": keys_cli.main,
        "dkg-export": export_main, "keras_dkg.fit": fit_main, "dkg-domain": domain_main,
        "dkg-analyze": analyze_main,
    }


# --------------------------------------------------------------------------- the case folder


class Env:
    """A case's folder (the working directory) and lazy access to the shared fixtures."""

    def __init__(self, root: Path, request, monkeypatch, stack: contextlib.ExitStack):
        self.root, self.request, self.monkeypatch, self.stack = root, request, monkeypatch, stack

    def path(self, relative: str) -> Path:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def folder(self, relative: str) -> str:
        (self.root / relative).mkdir(parents=True, exist_ok=True)
        return relative

    def write(self, relative: str, data: bytes) -> str:
        self.path(relative).write_bytes(data)
        return relative

    def link(self, relative: str, fixture_or_path) -> str:
        source = fixture_or_path if isinstance(fixture_or_path, Path) else self.request.getfixturevalue(fixture_or_path)
        target = self.path(relative)
        if not target.exists():
            target.symlink_to(Path(source).resolve())
        return relative

    @property
    def model(self) -> str:
        return self.link("g.onnx", "tiny_onnx_model")

    @property
    def seed(self) -> str:
        return self.link("seed.dcm", DICOM_FILES / "CT_small.dcm")

    @property
    def keras_file(self) -> str:
        return self.link("g.keras", "tiny_generator_keras")


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root: 'dir', 'special' (FIFO, device), or the SHA-256 of a file (through
    symlinks, with their target)."""
    state = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            target = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "special"
            state[relative] = f"link {os.readlink(path)} {target}"
        elif path.is_dir():
            state[relative] = "dir"
        elif not path.is_file():  # a FIFO or device: reading it would block or never end
            state[relative] = "special"
        elif path.name == "audit.jsonl":  # a key store's audit log grows on reads too (test_custody checks it)
            state[relative] = "audit log"
        else:
            state[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def random_image(shape=PLAIN_SHAPE, dtype=PLAIN_DTYPE, seed: int = 0) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min, info.max + 1, size=shape, dtype=dtype)


def image(env: Env, relative: str, shape=PLAIN_SHAPE, dtype=PLAIN_DTYPE, seed: int = 0) -> str:
    write_image(env.path(relative), random_image(shape, dtype, seed))
    return relative


def key_file(env: Env, relative: str = "k/key.png", shape=PLAIN_SHAPE, dtype=PLAIN_DTYPE, seed: int = 1,
             pixels: np.ndarray | None = None) -> str:
    """A key (with its record) big enough for a plaintext of `shape`/`dtype`."""
    if pixels is None:
        height, width = key_size_for(shape, dtype)
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Key(pixels, make_record(pixels, nonce=None)).save(env.path(relative))
    return relative


def encrypted(env: Env, suffix: str = ".png") -> tuple[str, str, str]:
    """(plaintext, key, ciphertext) made through the library, the key marked used."""
    plain, key = image(env, "in/ct.png"), key_file(env)
    pixels = read_image(env.root / plain)
    ciphertext, meta = encrypt_array(pixels, load_key(env.root / key).pixels, nonce=None)
    target = f"enc/ct{suffix}"
    save_ciphertext(env.path(target), ciphertext, meta)
    mark_key_used(env.root / key, plaintext_digest(pixels), str((env.root / plain).resolve()))
    return plain, key, target


def encrypt_argv(source: str, output: str = "out/enc.png", key: str = "k/key.png") -> list[str]:
    return [source, "--key", key, "-o", output]


def png_bytes(array: np.ndarray, suffix: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(suffix, array)
    assert ok
    return buffer.tobytes()


def dicom_copy(env: Env, name: str, relative: str) -> str:
    source = DICOM_FILES / name
    if not source.is_file():
        pytest.skip(f"{name} is not shipped with this pydicom")
    shutil.copyfile(source, env.path(relative))
    return relative


def disk_full_after(env: Env, folder: str, allowed_writes: int = 0) -> None:
    """Simulate a full disk in `folder`: half of a file is written, then ENOSPC."""
    real = Path.write_bytes
    target = (env.root / folder).resolve()
    calls = {"n": 0}

    def write_bytes(self, data):
        if Path(self).resolve().parent == target:
            calls["n"] += 1
            if calls["n"] > allowed_writes:
                with open(self, "wb") as handle:
                    handle.write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    env.monkeypatch.setattr(Path, "write_bytes", write_bytes)


def read_only(env: Env, folder: str) -> str:
    """A folder nobody may write in: chmod 555, and (as root, where chmod does not stop
    writes) the same EACCES from the temporary-file call every atomic write starts with."""
    path = env.root / env.folder(folder)
    path.chmod(0o555)
    env.stack.callback(path.chmod, 0o755)
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if Path(kwargs.get("dir") or ".").resolve() == path.resolve():
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, **kwargs)

    env.monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return folder


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    id: str
    tool: str
    bad_input: str
    setup: Callable[[Env], list[str]]
    code: int
    message: str  # regex searched in the one error line
    outputs: str = NOTHING
    allowed_new: tuple[str, ...] = field(default=())  # globs of new files a case may leave (a batch report)


class Matrix:
    """The cases of one test module; `@matrix.case(...)` registers a setup function."""

    def __init__(self) -> None:
        self.cases: list[Case] = []

    def case(self, id: str, tool: str, bad_input: str, code: int, message: str, outputs: str = NOTHING,
             allowed_new: tuple[str, ...] = ()):
        def register(setup: Callable[[Env], list[str]]):
            self.cases.append(Case(id, tool, bad_input, setup, code, message, outputs, allowed_new))
            return setup
        return register

    def parametrize(self):
        return pytest.mark.parametrize("case", self.cases, ids=[c.id for c in self.cases])


def _run_case(case: Case, env: Env, capfd) -> tuple[int, str, str, list[str]]:
    argv = case.setup(env)
    before = snapshot(env.root)
    capfd.readouterr()
    code = _mains()[case.tool](argv)
    out, err = capfd.readouterr()
    after = snapshot(env.root)
    new = {k: v for k, v in after.items() if k not in before}
    assert all(any(fnmatch.fnmatch(k, pattern) for pattern in case.allowed_new) for k in new), \
        f"new files or folders left behind: {sorted(new)}"
    assert {k: v for k, v in after.items() if k in before} == before, "an existing file was changed or removed"
    return code, out, err, argv


def check_case(case: Case, tmp_path: Path, request, monkeypatch, capfd) -> None:
    """Run one case in its own folder and check exit code, the one stderr line and the snapshot."""
    monkeypatch.chdir(tmp_path)
    with contextlib.ExitStack() as stack:
        env = Env(tmp_path, request, monkeypatch, stack)
        code, out, err, argv = _run_case(case, env, capfd)
    prog = case.tool
    assert code == case.code, f"exit {code}, expected {case.code}; stderr: {err!r}"
    assert err.endswith("\n") and err.count("\n") == 1, f"not exactly one line on stderr: {err!r}"
    assert "Traceback" not in err
    if case.code != 1:  # 1: per-file failures of a batch ("PROG: failed: ...")
        assert err.startswith(f"{prog}: error: "), err
    assert re.search(case.message, err), f"{case.message!r} not in {err!r}"
    shown = err.strip().replace(f"{tmp_path}/", "…/")  # absolute paths (fit resolves --source) shortened
    record_row({"id": case.id, "command": " ".join([case.tool, *argv]), "bad_input": case.bad_input,
                "exit": code, "message": shown, "outputs": case.outputs})

"""keras_dkg.common: the helpers every layer shares."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from keras_dkg.common import (
    LockHeld,
    file_lock,
    progress_bar,
    quiet,
    short_error,
    to_jsonable,
    utc_timestamp,
)


def test_progress_bar_off_gives_the_iterable_or_none():
    items = [1, 2, 3]
    assert progress_bar(total=3, iterable=items, enabled=False) is items
    assert progress_bar(total=3, enabled=False) is None


def test_progress_bar_when_enabled_counts_on_stderr(capsys):
    pytest.importorskip("tqdm")
    bar = progress_bar(total=2, desc="files", unit="file", enabled=True)
    bar.update(2)
    bar.close()
    captured = capsys.readouterr()
    assert captured.out == "" and "files" in captured.err and "2/2" in captured.err


def test_progress_bar_auto_is_off_without_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", open(os.devnull, "w"))  # not a terminal
    try:
        assert progress_bar(total=1, iterable=[0], enabled=None) == [0]
    finally:
        sys.stderr.close()


@dataclasses.dataclass
class _Point:
    x: np.float32
    where: Path


class _Result:
    def to_dict(self):
        return {"value": np.int64(3)}


def test_to_jsonable_converts_numpy_paths_dataclasses_and_sets():
    value = {
        1: (np.float64("nan"), np.inf, np.bool_(True), np.uint8(7)),
        "array": np.arange(3, dtype=np.int16),
        "path": Path("a/b"),
        "point": _Point(np.float32(0.5), Path("c")),
        "set": {3, 1, 2},
        "result": _Result(),
    }
    out = to_jsonable(value)
    assert out == {"1": [None, None, True, 7], "array": [0, 1, 2], "path": "a/b",
                   "point": {"x": 0.5, "where": "c"}, "set": [1, 2, 3], "result": {"value": 3}}
    assert type(out["1"][3]) is int and type(out["point"]["x"]) is float
    json.dumps(out, allow_nan=False)


def test_file_lock_non_blocking_refuses_while_held(tmp_path):
    path = tmp_path / "x.lock"
    with file_lock(path, blocking=False, remove=True):
        assert path.is_file() and (os.stat(path).st_mode & 0o777) == 0o600
        with pytest.raises(LockHeld) as info, file_lock(path, blocking=False):
            pass
        assert isinstance(info.value, BlockingIOError) and str(path) in str(info.value)
    assert not path.exists()
    with file_lock(path, blocking=False):  # free again; kept without remove
        pass
    assert path.exists()


def test_file_lock_on_a_read_only_file(tmp_path):
    path = tmp_path / "key.png"
    path.write_bytes(b"k")
    path.chmod(0o400)
    with file_lock(path):
        assert path.read_bytes() == b"k"


def test_utc_timestamp_is_iso_seconds_in_utc():
    stamp = utc_timestamp()
    parsed = datetime.fromisoformat(stamp)
    assert stamp.endswith("+00:00") and parsed.microsecond == 0


def test_short_error_is_one_line_without_the_type():
    assert short_error(ValueError("bad\n  value\tthere")) == "bad value there"
    assert short_error(ValueError("a\nb"), sep="; ") == "a; b"
    assert short_error(KeyError()) == "KeyError"
    assert short_error(ValueError("x" * 200)) == "x" * 160 + "…"
    assert short_error(ValueError("x" * 200), limit=None) == "x" * 200


def test_quiet_holds_back_both_streams_and_gives_the_tail(capfd):
    with quiet() as captured:
        print("hidden out")
        print("hidden err", file=sys.stderr)
        os.write(1, b"from C\n")
        tail = captured.tail()
    print("shown")
    out, err = capfd.readouterr()
    assert "hidden" not in out + err and "from C" not in out and "shown" in out
    assert sorted(tail.split(" | ")) == ["from C", "hidden err", "hidden out"]  # Python buffers, C does not
    with quiet(enabled=False) as nothing:
        assert nothing is None


def test_printable_escapes_what_would_break_or_disguise_a_line():
    from keras_dkg.common import printable

    assert printable("scan 01/é.png") == "scan 01/é.png"  # ordinary names unchanged
    assert printable("a.png\ndkg-encrypt: ok") == "a.png\\ndkg-encrypt: ok"
    assert printable("b\x1b[2K\rc\td\x7f\x85") == "b\\x1b[2K\\rc\\td\\x7f\\x85"
    assert printable("evil\u202egnp.exe\u2028x") == "evil\\u202egnp.exe\\u2028x"
    assert "\n" not in printable("".join(map(chr, range(0x30))))

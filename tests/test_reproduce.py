"""`tools/reproduce_paper.py --tiny`: the whole paper reproduction on 32² images, 4 steps per training.

One module-scoped run (about two minutes on two cores) and a second run on the same
folder, which must reuse every stage. The checks are structural: a README section and
a results.json entry for every table key of paper_values.json (read here, so a table
that goes missing fails), the Markdown numbers equal the JSON numbers, resumability.
The tiny numbers themselves say nothing about DeepKeyGen.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_VALUES = ROOT.parent / "shared" / "paper" / "paper_values.json"
PACKAGED_VALUES = ROOT / "keras_dkg" / "reproduce" / "paper_values.json"
STAGES = ("data", "domains", "architecture", "train", "export", "keys", "encrypt", "hparams", "analysis")


def paper_values() -> dict:
    path = SHARED_VALUES if SHARED_VALUES.is_file() else PACKAGED_VALUES
    return json.loads(path.read_text(encoding="utf-8"))


def table_keys() -> list[str]:
    return [k for k in paper_values() if not k.startswith("_")]


def _run(out: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    started = time.time()
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "reproduce_paper.py"), "--tiny", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    return done, time.time() - started


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "tiny"
    first, first_seconds = _run(out)
    assert first.returncode == 0, first.stderr[-3000:]
    log_after_first = (out / "reproduce.log").read_text(encoding="utf-8")
    second, second_seconds = _run(out)
    assert second.returncode == 0, second.stderr[-3000:]
    second_log = (out / "reproduce.log").read_text(encoding="utf-8")[len(log_after_first):]
    return {"out": out, "first_seconds": first_seconds, "second_seconds": second_seconds, "second_log": second_log,
            "readme": (out / "README.md").read_text(encoding="utf-8"),
            "results": json.loads((out / "results.json").read_text(encoding="utf-8"))}


def test_packaged_paper_values_equal_the_shared_copy():
    if not SHARED_VALUES.is_file():
        pytest.skip("../shared/paper/paper_values.json is not present")
    assert json.loads(PACKAGED_VALUES.read_text()) == json.loads(SHARED_VALUES.read_text())
    assert PACKAGED_VALUES.read_bytes() == SHARED_VALUES.read_bytes()


def test_every_table_key_has_a_function():
    from keras_dkg.reproduce.tables import TABLES, check_coverage

    check_coverage(paper_values())
    assert set(table_keys()) <= set(TABLES)


def test_tiny_profile_is_hidden_from_help():
    from keras_dkg.reproduce.cli import build_parser

    text = build_parser().format_help()
    assert "--quick" in text and "--full" in text and "--tiny" not in text


def test_readme_has_a_section_for_every_table_key(report):
    for key in table_keys():
        assert re.search(rf"^## `{re.escape(key)}` — ", report["readme"], flags=re.M), f"no README section for {key}"
    for heading in ("## Summary", "## Findings", "## Stages"):
        assert heading in report["readme"]
    assert "**Profile**: `tiny`" in report["readme"]
    assert "hardened" in report["readme"]


def test_results_json_has_one_entry_per_table_key(report):
    results = report["results"]
    paper = paper_values()
    assert set(results["tables"]) == set(table_keys())
    for key, entry in results["tables"].items():
        assert entry["paper"] == paper[key], key
        assert entry["tables"], f"{key}: no table"
        assert any(r["values"] for t in entry["tables"] for r in t["rows"]), key
    assert results["meta"]["profile"]["name"] == "tiny"
    assert results["findings"]


def _sections(readme: str) -> dict[str, str]:
    parts = re.split(r"^## ", readme, flags=re.M)
    return {p.split("\n", 1)[0]: p for p in parts[1:]}


def _markdown_tables(text: str) -> list[dict]:
    """Each table: caption and rows (label, cells) as printed."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| item |"):
            caption = lines[i - 2].strip("*") if i >= 2 else ""
            columns = _cells(line)[1:]
            rows = []
            for body in lines[i + 2:]:
                if not body.startswith("|"):
                    break
                cells = _cells(body)
                rows.append((cells[0], dict(zip(columns, cells[1:], strict=True))))
            tables.append({"caption": caption, "rows": rows})
    return tables


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _same(cell: str, value) -> bool:
    if value is None:
        return cell == "—"
    if isinstance(value, bool):
        return cell == ("yes" if value else "no")
    if isinstance(value, int | float):
        return float(cell) == float(value)
    return cell == str(value)


def _check_entry(title: str, section: str, entry: dict) -> int:
    printed = _markdown_tables(section)
    assert len(printed) == len(entry["tables"]), title
    compared = 0
    for spec, shown in zip(entry["tables"], printed, strict=True):
        assert shown["caption"] == spec["caption"], title
        assert len(shown["rows"]) == len(spec["rows"]), (title, spec["caption"])
        for stored, (label, cells) in zip(spec["rows"], shown["rows"], strict=True):
            assert label == stored["label"], (title, label)
            for column, value in stored["values"].items():
                assert _same(cells[column], value), (title, label, column, cells[column], value)
                compared += isinstance(value, int | float)
    return compared


def test_markdown_numbers_match_results_json(report):
    sections = _sections(report["readme"])
    results = report["results"]
    compared = 0
    for key, entry in results["tables"].items():
        heading = next(h for h in sections if h.startswith(f"`{key}`"))
        compared += _check_entry(key, sections[heading], entry)
    for key, entry in results["extra"].items():
        heading = next(h for h in sections if h.startswith(f"`{key}`"))
        compared += _check_entry(key, sections[heading], entry)
    compared += _check_entry("summary", sections["Summary"], {"tables": [results["summary"]]})
    assert compared > 500  # every number of every table, not a sample


def test_headline_numbers_are_this_runs(report):
    results = report["results"]
    keys = results["tables"]["table_III_key_entropy"]
    rows = {r["label"]: r["values"] for r in keys["tables"][0]["rows"]}
    assert rows["key 1"]["paper"] == paper_values()["table_III_key_entropy"][0]
    assert rows["key 1"]["ours"] == round(keys["ours"]["entropies"][0], 4)
    attacks = {r["label"]: r["values"] for r in results["extra"]["attacks"]["tables"][0]["rows"]}
    assert attacks["known plaintext: share of P2 bytes recovered from C2 (same key)"]["xor"] == 1.0
    grid = results["tables"]["table_XVI_attack_networks"]["ours"]["grids"]["both_leaked"]
    assert all(grid["exact_share"][i][i] == 1.0 for i in range(len(grid["names"])))


def test_figures_exist(report):
    figures = [path for section in report["results"]["figures"].values() for _, path in section]
    assert len(figures) >= 20
    for path in figures:
        assert (report["out"] / path).is_file(), path
        assert f"]({path})" in report["readme"]


def test_second_run_reuses_every_stage(report):
    log = report["second_log"]
    for stage in STAGES:
        assert f"skip {stage}: done earlier" in log, stage
        assert f"start {stage}" not in log, stage
    for stage in STAGES:
        assert (report["out"] / "stages" / f"{stage}.json").is_file()
    assert report["second_seconds"] < max(60.0, report["first_seconds"] / 2), report["second_seconds"]
    assert report["results"]["meta"]["skipped"] == list(STAGES)


def test_folder_of_another_profile_is_refused(report):
    from keras_dkg.errors import OutputError
    from keras_dkg.reproduce.profiles import get_profile
    from keras_dkg.reproduce.runner import Context

    options = {"source": None, "seed_image": None, "xray": None, "ultrasound": None, "mri": None}
    context = Context(get_profile("quick"), report["out"], options)
    with pytest.raises(OutputError, match="another profile"):
        context.open()


def test_report_has_no_machine_paths_and_states_its_source(report):
    for text in (report["readme"], json.dumps(report["results"])):
        for prefix in (str(ROOT), str(report["out"]), "/tmp/", "/work/", "/root/", str(Path.home()) + "/"):
            assert prefix not in text, prefix
    source = report["results"]["meta"]["source"]
    stated = f"from commit `{source['commit']}`" if source["commit"] else "no git checkout"
    assert stated in report["readme"].splitlines()[2]


def test_headline_has_four_columns_and_the_table_iv_measurements(report):
    summary = report["results"]["summary"]
    assert summary["columns"][:4] == ["paper", "ours", "recommended", "hardened"]
    rows = {r["label"]: r["values"] for r in summary["rows"]}
    assert rows["key entropy, mean (Table III)"]["recommended"] is not None
    assert rows["mri: cipher entropy, mean (Tables V–VII)"]["hardened"] is not None
    iv = report["results"]["tables"]["table_IV_key_sensitivity"]["ours"]
    assert iv["checkpoint_summary"]["pairs"] >= 2 and iv["checkpoint_summary"]["gaps"] == [2]  # tiny: steps 2 and 4
    assert 0 < iv["locality"]["bound_npcr"] <= 100 and iv["locality"]["reach_span_256"] > 0
    topics = {f["topic"] for f in report["results"]["findings"]}
    assert {"locality of a one-pixel change", "what Table IV measured", "uniformity weight (trade-off)",
            "per-file keys (nonces v1 and v2)"} <= topics
    assert "## At the paper's scale" in report["readme"]

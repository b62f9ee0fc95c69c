"""Paper-scale rows (256², 20,000 steps) for the report, from `tools/gpu_paper_scale.sh`'s diagnoses.

    python -m keras_dkg.reproduce.paper_scale DIR     # DIR holds <recipe>-seed<N>.json diagnoses

writes DIR/summary.json (one row per run, keras_dkg.diagnose.summary.key_row plus the run's
recipe, seed, steps, backend, device and steps/s). The reproduction report shows
`reports/paper-scale/summary.json` (PAPER_SCALE) as its "At the paper's scale" section when
it exists, and says that no such rows exist yet when it does not.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from keras_dkg.diagnose.summary import key_row
from keras_dkg.reproduce.provenance import ROOT, source_commit

PAPER_SCALE = ROOT / "reports" / "paper-scale" / "summary.json"
NAME = re.compile(r"^(?P<recipe>[\w.+-]+)-seed(?P<seed>\d+)\.json$")
COLUMNS = [("entropy", "{:.4f}"), ("chi2_p", "{:.2g}"), ("npcr", "{:.2f}"), ("uaci", "{:.2f}"),
           ("nonce_equal_pct", "{:.2f}"), ("lag4", "{:.3f}"), ("peak_times_median", "{:.0f}"),
           ("nist_strict", "{:.0f}"), ("steps_per_second", "{:.1f}")]
HEADERS = {"entropy": "entropy (ideal 7.9991)", "chi2_p": "χ² p", "npcr": "NPCR %", "uaci": "UACI %",
           "nonce_equal_pct": "v1 nonce keys equal %", "lag4": "lag-4 \\|r\\|", "peak_times_median": "spectral peak×median",
           "nist_strict": "NIST passed (strict)", "steps_per_second": "steps/s"}


def summarize(folder: str | Path) -> dict:
    """Rows of every `<recipe>-seed<N>.json` diagnosis in `folder`, and where and how they were made."""
    rows = []
    for path in sorted(Path(folder).glob("*-seed*.json")):
        match = NAME.match(path.name)
        if not match:
            continue
        report = json.loads(path.read_text(encoding="utf-8"))
        options = report["options"]
        run_json = Path(report["run"]) / "run.json"
        record = json.loads(run_json.read_text(encoding="utf-8")) if run_json.is_file() else {}
        summary = record.get("summary", {})
        rows.append({"recipe": match["recipe"], "seed": int(match["seed"]), "image_size": report["image_size"],
                     "steps": report.get("steps_done"), "backend": options.get("backend"),
                     "upsample": options.get("upsample", "transpose"),
                     "device": summary.get("device") or summary.get("strategy"),
                     "steps_per_second": summary.get("steps_per_second"), **key_row(report)})
    return {"source": source_commit(), "rows": rows}


def markdown(summary: dict) -> list[str]:
    """The rows as a Markdown table (the report's "At the paper's scale" section)."""
    head = ["recipe", "seed", "size", "steps", "backend", *(HEADERS[c] for c, _ in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in summary["rows"]:
        cells = [r["recipe"], str(r["seed"]), f"{r['image_size']}²", str(r["steps"]), str(r["backend"])]
        cells += ["—" if r.get(c) is None else fmt.format(r[c]) for c, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    folder = Path((argv if argv is not None else sys.argv[1:])[0])
    summary = summarize(folder)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print("\n".join(markdown(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

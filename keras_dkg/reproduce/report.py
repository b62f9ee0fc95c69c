"""DIR/README.md and DIR/results.json from the table entries, the findings and the figures.

The Markdown prints the entries' values as stored (see tablekit), so every number in
README.md is the number in results.json. One section per table key of paper_values.json.
"""

from __future__ import annotations

import json
import platform
import re
import time
from importlib import metadata
from pathlib import Path

from keras_dkg.reproduce.datasets import MODALITIES
from keras_dkg.reproduce.figures import make_figures
from keras_dkg.reproduce.findings import findings
from keras_dkg.reproduce.provenance import ROOT
from keras_dkg.reproduce.runner import Context, read_json, write_json
from keras_dkg.reproduce.tablekit import Artifacts, mean, num, row, table
from keras_dkg.reproduce.tables import EXTRA, table_keys
from keras_dkg.runtime.guards.atomic import write_bytes_atomic

PACKAGES = ("keras-dkg", "tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "onnxruntime-gpu",
            "numpy", "scipy", "scikit-image", "opencv-python-headless", "pydicom", "nibabel", "matplotlib")
TOP_STAGES = ("data", "domains", "architecture", "train", "export", "keys", "encrypt", "hparams", "analysis")
KIND_TITLES = {"agrees": "Where we agree with the paper", "differs": "Where we differ from the paper",
               "beyond the paper": "What the paper's metrics do not measure"}


def cell(value) -> str:
    """How a stored value appears in a Markdown table (tests parse it back)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("|", "\\|")


def markdown_table(spec: dict) -> list[str]:
    lines = [f"*{spec['caption']}*", "", "| item | " + " | ".join(spec["columns"]) + " |",
             "|---|" + "---|" * len(spec["columns"])]
    for r in spec["rows"]:
        lines.append(f"| {cell(r['label'])} | " + " | ".join(cell(r["values"][c]) for c in spec["columns"]) + " |")
    return lines + [""]


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


HEADLINE_VARIANT = "recommended"


def summary_table(entries: dict, paper: dict) -> dict:
    """The headline numbers: the paper, our paper recipe, our recommended recipe and, where a
    row is about ciphertexts, the hardened mode (also in results.json["summary"])."""
    rows = []
    iii = entries["table_III_key_entropy"]["ours"]
    rec = HEADLINE_VARIANT if HEADLINE_VARIANT in iii.get("recipes", {}) else None

    def add(label, p, o, digits=4, recommended=None, hardened=None):
        p, o = num(p, digits), num(o, digits)
        rows.append(row(label, paper=p, ours=o, recommended=num(recommended, digits), hardened=num(hardened, digits),
                        difference=num(o - p, digits) if isinstance(o, float) and isinstance(p, float) else None))

    add("key entropy, mean (Table III)", mean(paper["table_III_key_entropy"]), iii["mean"],
        recommended=rec and iii["recipes"][rec]["mean"])
    iv = entries["table_IV_key_sensitivity"]["ours"]
    for metric in ("npcr", "uaci"):
        add(f"key {metric.upper()} %, one seed pixel changed, mean (Table IV)",
            mean(paper["table_IV_key_sensitivity"][f"{metric}_percent"]), mean(r[metric] for r in iv["reports"]), 2,
            recommended=rec and mean(x[metric] for x in iv["recipes"][rec]))
    checkpoints = iv.get("checkpoint_summary", {})
    if checkpoints.get("pairs"):
        for metric in ("npcr", "uaci"):
            add(f"key {metric.upper()} %, one seed, weights {'/'.join(map(str, checkpoints['gaps']))} steps apart "
                "(Table IV's numbers?)", mean(paper["table_IV_key_sensitivity"][f"{metric}_percent"]),
                checkpoints[metric], 2)
    for m in MODALITIES:
        ours = entries["table_V_VII_entropy"]["ours"][m]
        add(f"{m}: cipher entropy, mean (Tables V–VII)", mean(paper["table_V_VII_entropy"][m]["cipher"]),
            mean(ours["cipher_xor"]), recommended=rec and mean(ours.get(f"cipher_xor_{rec}") or [None]),
            hardened=mean(ours.get("cipher_hardened") or [None]))
    for m in MODALITIES:
        ours = entries["table_VIII_X_similarity"]["ours"][m]
        add(f"{m}: SSIM plain/cipher, mean (Tables VIII–X)", mean(paper["table_VIII_X_similarity"][m]["ssim"]),
            mean(ours["ssim"]), recommended=rec and mean(ours.get(f"ssim_xor_{rec}") or [None]),
            hardened=mean(ours.get("ssim_hardened") or [None]))
    xvii = entries["table_XVII_key_entropy_by_method"]["ours"]
    for m in ("chaotic", "rc4", "deepkeygen"):
        add(f"{m}: key entropy (Table XVII)", paper["table_XVII_key_entropy_by_method"][m], xvii["entropy"][m],
            recommended=rec and xvii["recipes"][rec]["entropy"] if m == "deepkeygen" else None)
    vc = entries["section_V_C_transformation_domain"]["ours"]
    for k in ("low_security_domain_entropy", "high_security_domain_entropy", "keys_from_low", "keys_from_high"):
        add(f"Sec. V-C {k.replace('_', ' ')}", paper["section_V_C_transformation_domain"][k], vc.get(k))
    grid = entries["table_XVI_attack_networks"]["ours"]
    rows.append(row("imitation attacks: largest off-diagonal exact share (Table XVI)", paper="only the diagonal decrypts",
                    ours=num(grid["max_off_diagonal_exact_share"]), recommended=None, hardened=None, difference=None))
    attacks = entries["attacks"]["ours"]
    hardened = attacks.get("hardened")
    rows.append(row("known plaintext: share of another ciphertext's bytes recovered (not in the paper)",
                    paper="resists (Sec. IV-C)", ours=num(attacks["xor"]["kpa_other_cipher"]["exact_share"]),
                    recommended=None, difference=None,
                    hardened=num(hardened["kpa_other_cipher"]["exact_share"]) if hardened else None))
    v2 = iii.get("nonce_pairs_v2") or []
    if v2:
        rows.append(row("per-file keys (nonce scheme v2): largest excess of equal bytes over chance, standard errors",
                        paper=None, ours=num(max(p["excess (standard errors)"] for p in v2), 1), recommended=None,
                        hardened=None, difference=None))
    caption = ("headline numbers (details in each section): 'ours' is network A trained with the paper's recipe"
               + (f", '{rec}' the same training with --recipe {rec}" if rec else "")
               + ", 'hardened' network A's keys under --cipher hardened (cipher rows only); the XOR rows use the "
               "keys themselves")
    return table(caption, ["paper", "ours", "recommended", "hardened", "difference"], rows)


def header(ctx: Context, meta: dict) -> list[str]:
    profile = ctx.profile
    manifest = Artifacts(ctx).manifest
    source = meta["source"]
    commit = (f"commit `{source['commit']}`" + (" with uncommitted changes" if source["dirty"] else "")
              if source["commit"] else "no git checkout (commit unknown)")
    reused = sorted({c for c in meta["stage_commits"].values() if c} - {(source["commit"] or "")[:12]})
    lines = ["# DeepKeyGen (Ding et al., IEEE TNNLS 2021) — reproduction report", "",
             f"Generated by `python tools/reproduce_paper.py --{profile.name} --out {meta['out']}` on "
             f"{meta['generated']} from {commit}. Every number below comes from this run; the paper's values are "
             "beside ours.", "",
             f"- **Source**: {commit}" + (f"; stages reused from earlier invocations ran at {', '.join(reused)} (the "
                                          "'Stages' table names each)" if reused else "") + ".",
             f"- **Profile**: `{profile.name}` — {profile.description}."]
    for reduction in profile.reductions:
        lines.append(f"  - reduced: {reduction}")
    lines += [f"- **Training source**: {manifest['source_label']} ({manifest['source_count']} images). "
              f"**Seed**: {manifest['seed_label']}.",
              "- **Plaintexts** (uint8 RGB, " + f"{profile.image_size}×{profile.image_size}):"]
    for m in MODALITIES:
        info = manifest["modalities"][m]
        lines.append(f"  - `{m}` ({len(info['images'])} images; paper: {info['paper_dataset']}): {info['label']}")
    hw = meta["hardware"]
    lines += [f"- **Hardware**: {hw['platform']}, {hw['processor']}, {hw['cpus']} CPUs; training strategy "
              f"{hw.get('strategy')} with {hw.get('replicas')} replica(s). Paper: GTX 2080Ti.",
              "- **Versions**: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
              f"- **Wall time**: this invocation {meta['wall_seconds_this_invocation']:.0f} s; all stages of this folder "
              f"{meta['stage_seconds_total']:.0f} s (stages reused from earlier invocations: "
              f"{', '.join(meta['skipped']) or 'none'}).",
              f"- **Paper values**: {meta['paper_values_source']}.",
              "- **Cipher modes**: xor" + (", hardened" if meta["hardened"] else
                                            " (hardened mode not available in this build)") + ".", ""]
    return lines


def write_report(ctx: Context, paper_source: str) -> dict:
    art = Artifacts(ctx)
    entries = read_json(ctx.path("analysis", "tables.json"))
    hardened = bool(ctx.result("encrypt").get("hardened_available"))
    train = ctx.result("train/otp_0")
    seconds = ctx.stage_seconds()
    found = findings(entries, ctx.paper, ctx.profile, hardened)
    figures = make_figures(art, entries)
    meta = {
        "profile": ctx.profile.to_dict(), "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "out": display_out(ctx.out), "source": ctx.source, "stage_commits": ctx.stage_commits(),
        "data": {k: v for k, v in art.manifest.items() if k != "grid"} | {"grid": art.manifest["grid"]},
        "hardware": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                     "cpus": train["machine"].get("cpus"), "strategy": train["summary"].get("strategy"),
                     "replicas": train["summary"].get("replicas")},
        "versions": versions(), "paper_values_source": paper_source, "hardened": hardened,
        "wall_seconds_this_invocation": time.time() - ctx.started,
        "stage_seconds": seconds, "stage_seconds_total": sum(seconds.get(s, 0.0) for s in TOP_STAGES),
        "skipped": list(ctx.skipped),
    }
    summary = summary_table(entries, ctx.paper)
    results = {"meta": meta, "summary": summary, "findings": found, "figures": figures,
               "tables": {k: {"title": entries[k]["title"], "paper": ctx.paper[k], **entries[k]} for k in table_keys(ctx.paper)},
               "extra": {k: entries[k] for k in EXTRA}}
    lines = header(ctx, meta) + ["## Summary", ""] + markdown_table(summary) + ["## Findings", ""]
    for kind, title in KIND_TITLES.items():
        chosen = [f for f in found if f["kind"] == kind]
        if chosen:
            lines += [f"### {title}", ""] + [f"- **{f['topic']}**: {f['text']}" for f in chosen] + [""]
    lines += paper_scale_section(results)
    for key in table_keys(ctx.paper):
        lines += section(key, results["tables"][key], figures.get(key, []))
    for key in EXTRA:
        lines += section(key, entries[key], [])
    commits = meta["stage_commits"]
    lines += ["## Stages", "", "Wall seconds of each stage and unit when it ran (reused stages keep their first "
              "time), and the commit it ran at.", "", "| stage | seconds | commit |", "|---|---|---|"]
    for stage in TOP_STAGES:
        lines.append(f"| **{stage}** | {seconds.get(stage, 0.0):.1f} | {commits.get(stage) or '—'} |")
        lines += [f"| {name} | {value:.1f} | {commits.get(name) or '—'} |" for name, value in seconds.items()
                  if name.startswith(stage + "/")]
    lines.append("")
    results = json.loads(portable(json.dumps(results), ctx.out))
    write_json(ctx.path("results.json"), results)
    write_bytes_atomic(ctx.path("README.md"), portable("\n".join(lines), ctx.out).encode("utf-8"), overwrite=True)
    return results


#: an absolute path of two or more parts (not "1/256", "NPCR/UACI" or a URL's "//")
ABSOLUTE = re.compile(r"(?<![\w.:/])/[A-Za-z_][^\s'\"`|()\[\],;*/]*(?:/[^\s'\"`|()\[\],;*]+)+")


def display_out(out: Path) -> str:
    """The --out folder as the report shows it: relative to the checkout when inside it, else its name."""
    out = Path(out).resolve()
    try:
        return str(out.relative_to(ROOT))
    except ValueError:
        return f"<folder>/{out.name}"


def portable(text: str, out: Path) -> str:
    """`text` without this machine's paths: inside the report folder relative to it, inside the
    checkout relative to its root, inside an installed package from `site-packages/`, else the
    file name under `<elsewhere>/`. The committed report must read the same on every machine."""
    out, root = Path(out).resolve(), ROOT

    def relative(match: re.Match) -> str:
        text = match.group(0)
        tail = text[len(text.rstrip(".")):]  # a sentence's full stop is not part of the path
        path = Path(text[:len(text) - len(tail)])
        if not Path("/", path.parts[1]).exists():  # not a path of this machine
            return text
        if "site-packages/" in str(path):
            return "site-packages/" + str(path).split("site-packages/", 1)[1] + tail
        for base in (out, root):
            try:
                return (str(path.relative_to(base)) or ".") + tail
            except ValueError:
                continue
        return f"<elsewhere>/{path.name}{tail}"

    return ABSOLUTE.sub(relative, text)


def paper_scale_section(results: dict) -> list[str]:
    """The committed paper-scale rows (reports/paper-scale/summary.json, tools/gpu_paper_scale.sh), or why there are none."""
    from keras_dkg.reproduce.paper_scale import PAPER_SCALE, markdown

    lines = ["## At the paper's scale (256², 20,000 steps)", ""]
    if not PAPER_SCALE.is_file():
        results["paper_scale"] = None
        return lines + ["No paper-scale rows yet: `bash tools/gpu_paper_scale.sh` on a GPU (both recipes × training "
                        "seeds 0 and 1 through `fit --backend jax`, about 10 minutes) writes "
                        "`reports/paper-scale/summary.json`, which this section then shows; "
                        "`python tools/reproduce_paper.py --profile paper` runs every table at that scale.", ""]
    summary = json.loads(PAPER_SCALE.read_text(encoding="utf-8"))
    results["paper_scale"] = summary
    commit = (summary.get("source") or {}).get("commit")
    return lines + [f"From `reports/paper-scale/summary.json` (made by tools/gpu_paper_scale.sh at commit "
                    f"`{(commit or 'unknown')[:12]}`, not by this run); keys of the held-back CT seed, "
                    "keras_dkg.diagnose's measures.", "", *markdown(summary), ""]


def section(key: str, entry: dict, figures: list) -> list[str]:
    lines = [f"## `{key}` — {entry['title']}", ""]
    for spec in entry["tables"]:
        lines += markdown_table(spec)
    for note in entry.get("notes", []):
        lines.append(f"- {note}")
    if entry.get("notes"):
        lines.append("")
    for caption, path in figures:
        lines += [f"![{caption}]({path})", ""]
    return lines

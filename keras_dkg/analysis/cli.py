"""``dkg-analyze``: security metrics of keys and ciphertexts, NIST tests, classical baselines.

Subcommands (names and JSON fields are relied on by other tools)::

    dkg-analyze keys DIR|FILES... [--pairs N] [--json] [--plots DIR]
    dkg-analyze cipher PLAIN CIPHER [--json] [--plots DIR]
    dkg-analyze nist FILE [--json] [--tests a,b] [--sts]
    dkg-analyze baselines [--shape 256x256x3] [--seed N] [--nist [--sts]] [--json]
    dkg-analyze modes [--key KEY.png] [--plain IMG] [--plain2 IMG] [--size 256] [--seed N] [--json]

User mistakes (``DkgError``) print one line ``dkg-analyze: error: ...`` on stderr and
exit with ``exc.exit_code``. matplotlib is imported only with ``--plots``; the NIST
package only by ``nist`` and ``baselines --nist``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_dkg.analysis import baselines as baselines_module
from keras_dkg.analysis import differential, metrics
from keras_dkg.common import progress_bar, to_jsonable
from keras_dkg.errors import InputError, OutputError, run_cli
from keras_dkg.options import add_random_seed

PROG = "dkg-analyze"
NIST_ALPHA = 0.01


# --------------------------------------------------------------------------- helpers


def _print_json(payload) -> None:
    print(json.dumps(to_jsonable(payload), indent=2, allow_nan=False))


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, float) and value != 0.0 and abs(value) < 10.0 ** (-digits):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else _fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _progress(iterable, total: int, desc: str):
    # enabled=None: no bar when stderr is not a terminal (pipes, CI, tests)
    return progress_bar(total=total, iterable=iterable, desc=desc, enabled=None, leave=False)


def _read(path) -> np.ndarray:
    from keras_dkg.runtime.formats.images import read_image

    return read_image(path)


def _key_paths(items: Sequence[str]) -> list[Path]:
    from keras_dkg.runtime.formats.sources import list_images

    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths.extend(list_images(path))
        elif path.exists():
            paths.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    return paths


def _plots_dir(path: str | None) -> Path | None:
    if path is None:
        return None
    from keras_dkg.runtime.guards.outputs import OutputGuard

    folder = OutputGuard().check_folder(path, "plots folder")  # never a file, never inside a key store
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create plots folder ({exc.strerror or exc})") from exc
    if not folder.is_dir():
        raise OutputError(f"{folder}: not a folder")
    return folder


def _load_plots():
    try:
        from keras_dkg.analysis import plots
    except ImportError as exc:
        raise InputError(f"--plots needs matplotlib: pip install 'keras-dkg[analysis]' ({exc})") from exc
    return plots


def describe_key(key: np.ndarray, pairs: int, seed: int | None, all_pairs: bool) -> dict:
    """Entropy (whole + per channel), chi-square uniformity and 3 adjacent correlations."""
    chi = metrics.chi_square_uniformity(key)
    corr = metrics.correlations(key, pairs=pairs, seed=seed, all_pairs=all_pairs)
    return {
        "shape": list(key.shape),
        "dtype": str(key.dtype),
        "entropy": metrics.entropy(key),
        "entropy_per_channel": metrics.entropy_per_channel(key),
        "chi_square": chi.statistic,
        "chi_square_df": chi.df,
        "chi_square_p": chi.p_value,
        "correlation": {d: c.r for d, c in corr.items()},
        "n_pairs": {d: c.n_pairs for d, c in corr.items()},
        "_corr": corr,
    }


def _mean_row(rows: list[dict]) -> dict:
    def mean(values):
        values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return float(np.mean(values)) if values else math.nan

    out = {
        "entropy": mean([r["entropy"] for r in rows]),
        "chi_square": mean([r["chi_square"] for r in rows]),
        "chi_square_p": mean([r["chi_square_p"] for r in rows]),
        "correlation": {d: mean([r["correlation"][d] for r in rows]) for d in metrics.DIRECTIONS},
    }
    channels = {len(r["entropy_per_channel"]) for r in rows}
    if len(channels) == 1:
        out["entropy_per_channel"] = [mean([r["entropy_per_channel"][c] for r in rows]) for c in range(channels.pop())]
    return out


def _corr_cells(correlation: dict) -> list:
    return [correlation[d] for d in metrics.DIRECTIONS]


# --------------------------------------------------------------------------- keys


def cmd_keys(args) -> int:
    paths = _key_paths(args.paths)
    plots_dir = _plots_dir(args.plots)
    rows, images = [], {}
    for index, path in enumerate(_progress(paths, len(paths), "keys")):
        key = _read(path)
        if key.dtype != np.uint8:
            raise InputError(f"{path}: keys are uint8 images, this one is {key.dtype}")
        row = describe_key(key, args.pairs, args.seed, args.all_pairs)
        row["file"] = str(path)
        rows.append(row)
        if plots_dir is not None:
            plots = _load_plots()
            stem = f"{index:03d}_{path.stem}"
            plots.histogram_plot(key, plots_dir / f"{stem}_histogram.png", title=path.name, overwrite=args.overwrite)
            plots.correlation_scatter(row["_corr"], plots_dir / f"{stem}_correlation.png", title=path.name,
                                      overwrite=args.overwrite)
            images[path.name] = key
    if plots_dir is not None and images:
        _load_plots().key_tiles(images, plots_dir / "keys.png", overwrite=args.overwrite)
    mean = _mean_row(rows)
    sampling = {"pairs": None if args.all_pairs else args.pairs, "all_pairs": args.all_pairs,
                "seed": None if args.all_pairs else args.seed}
    if args.json:
        keys = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        _print_json({"sampling": sampling, "keys": keys, "mean": mean})
        return 0
    headers = ["key", "entropy", "per channel", "chi2", "chi2 p", "r horiz", "r vert", "r diag"]
    table = [
        [Path(r["file"]).name, r["entropy"], " ".join(_fmt(v) for v in r["entropy_per_channel"]), r["chi_square"],
         r["chi_square_p"], *_corr_cells(r["correlation"])]
        for r in rows
    ]
    table.append(["mean", mean["entropy"], " ".join(_fmt(v) for v in mean.get("entropy_per_channel", [])),
                  mean["chi_square"], mean["chi_square_p"], *_corr_cells(mean["correlation"])])
    print(_table(headers, table))
    pairs_text = "all pairs" if args.all_pairs else f"{args.pairs} random pairs per direction (seed {args.seed})"
    print(f"\n{len(rows)} key(s); entropy base 2 (max 8); chi-square df 255 vs uniform; correlations: {pairs_text}")
    return 0


# --------------------------------------------------------------------------- cipher


def cmd_cipher(args) -> int:
    plain, cipher = _read(args.plain), _read(args.cipher)
    if plain.shape != cipher.shape or plain.dtype != cipher.dtype:
        raise InputError(
            f"{args.plain} ({plain.shape} {plain.dtype}) and {args.cipher} ({cipher.shape} {cipher.dtype}) "
            "must have the same shape and dtype"
        )
    plots_dir = _plots_dir(args.plots)
    corr_plain = metrics.correlations(plain, pairs=args.pairs, seed=args.seed, all_pairs=args.all_pairs)
    corr_cipher = metrics.correlations(cipher, pairs=args.pairs, seed=args.seed, all_pairs=args.all_pairs)
    plain_vs_cipher = differential.npcr_uaci_report(plain, cipher, "plain vs cipher", alpha=args.alpha)
    chi_plain = metrics.chi_square_uniformity(plain)
    chi_cipher = metrics.chi_square_uniformity(cipher)
    result = {
        "plain": str(args.plain),
        "cipher": str(args.cipher),
        "shape": list(plain.shape),
        "dtype": str(plain.dtype),
        "entropy": {"plain": metrics.entropy(plain), "cipher": metrics.entropy(cipher)},
        "entropy_per_channel": {"plain": metrics.entropy_per_channel(plain),
                                "cipher": metrics.entropy_per_channel(cipher)},
        "chi_square_p": {"plain": chi_plain.p_value, "cipher": chi_cipher.p_value},
        "mse": metrics.mse(plain, cipher),
        "ssim": metrics.ssim(plain, cipher),
        "psnr": metrics.psnr(plain, cipher),
        "correlation": {
            "plain": {d: c.r for d, c in corr_plain.items()},
            "cipher": {d: c.r for d, c in corr_cipher.items()},
        },
        "n_pairs": {d: c.n_pairs for d, c in corr_plain.items()},
        "sampling": {"pairs": None if args.all_pairs else args.pairs, "all_pairs": args.all_pairs,
                     "seed": None if args.all_pairs else args.seed},
        "npcr_uaci": plain_vs_cipher,
        "ssim_settings": metrics.SSIM_SETTINGS,
    }
    if plots_dir is not None:
        plots = _load_plots()
        for label, image, corr in (("plain", plain, corr_plain), ("cipher", cipher, corr_cipher)):
            if image.dtype.itemsize == 1:
                plots.histogram_plot(image, plots_dir / f"{label}_histogram.png", title=label, overwrite=args.overwrite)
            plots.correlation_scatter(corr, plots_dir / f"{label}_correlation.png", title=label,
                                      overwrite=args.overwrite)
    if args.json:
        _print_json(result)
        return 0
    rows = [
        ["entropy", result["entropy"]["plain"], result["entropy"]["cipher"]],
        ["chi-square p (uniform)", chi_plain.p_value, chi_cipher.p_value],
        *[[f"correlation {d}", result["correlation"]["plain"][d], result["correlation"]["cipher"][d]]
          for d in metrics.DIRECTIONS],
    ]
    print(_table(["metric", "plain", "cipher"], rows))
    print()
    print(_table(["plain vs cipher", "value"], [
        ["MSE", result["mse"]],
        ["SSIM", result["ssim"]],
        ["PSNR (dB)", result["psnr"]],
        ["NPCR (%)", plain_vs_cipher["npcr"]],
        ["UACI (%)", plain_vs_cipher["uaci"]],
    ]))
    critical = plain_vs_cipher
    print(f"\nWu et al. (alpha={args.alpha}, M={critical['samples']}): NPCR* = {critical['npcr_critical']:.4f} %, "
          f"UACI in [{critical['uaci_interval'][0]:.4f}, {critical['uaci_interval'][1]:.4f}] %; "
          f"correlations from {result['n_pairs']['horizontal']} pairs per direction")
    return 0


# --------------------------------------------------------------------------- nist


STS_HELP = ("use the reference sts-2.1.2 constants (its pi tables for the overlapping template and linear "
            "complexity tests) instead of the spec's corrected ones, to compare with papers that ran sts")


def _import_nist():
    """keras_dkg.analysis.nist, imported when used: it needs scipy (run_cli names the extra when missing)."""
    from keras_dkg.analysis import nist

    return nist


def _run_nist(bits, tests: list[str] | None, sts: bool = False) -> list[dict]:
    """The tests (all by default) as dicts; `sts`: the reference sts-2.1.2 constants (nist.STS_OPTIONS)."""
    nist = _import_nist()
    return [r.to_dict() for r in nist.run_all(bits, tests=tests, options=nist.STS_OPTIONS if sts else None)]


def _parse_tests(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise InputError("--tests: give at least one test name, e.g. --tests frequency,runs")
    return names


def cmd_nist(args) -> int:
    nist = _import_nist()
    tests = _parse_tests(args.tests)
    bits = nist.read_bits(args.file)
    results = _run_nist(bits, tests, args.sts)
    if args.json:
        _print_json({"file": str(args.file), "bits": int(len(bits)), "constants": "sts-2.1.2" if args.sts else "spec",
                     "tests": results})
        return 0
    rows = []
    for r in results:
        p_values = r["p_values"]
        shown = ", ".join(_fmt(p) for p in p_values[:3]) + (f", ... ({len(p_values)})" if len(p_values) > 3 else "")
        passed = "n/a" if r["passed"] is None else ("pass" if r["passed"] else "FAIL")
        rows.append([r["name"], shown or "-", passed, r["note"] or ""])
    print(_table(["test", "p-values", "result", "note"], rows))
    counted = [r for r in results if r["passed"] is not None]
    print(f"\n{args.file}: {len(bits)} bits; {sum(r['passed'] for r in counted)}/{len(counted)} applicable tests "
          "passed (p >= 0.01)")
    return 0


# --------------------------------------------------------------------------- baselines


def cmd_baselines(args) -> int:
    shape = baselines_module.parse_shape(args.shape)
    names = list(baselines_module.METHODS) if args.methods is None else _parse_tests(args.methods)
    unknown = [n for n in names if n not in baselines_module.METHODS]
    if unknown:
        raise InputError(f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(baselines_module.METHODS)}")
    if args.repeat < 1:
        raise InputError(f"--repeat must be >= 1, got {args.repeat}")
    if args.nist:
        _import_nist()  # before any work: the suite needs scipy
    plots_dir = _plots_dir(args.plots)
    rows, keys = [], {}
    for name in _progress(names, len(names), "baselines"):
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            key = baselines_module.generate(name, shape, args.seed)
            times.append(time.perf_counter() - start)
        row = describe_key(key, args.pairs, args.seed if args.seed is not None else 0, False)
        row.pop("_corr")
        row.update(method=name, label=baselines_module.METHODS[name].label,
                   description=baselines_module.METHODS[name].description, gen_ms=1000.0 * min(times))
        if args.nist:
            results = _run_nist(np.unpackbits(key.reshape(-1)), None, args.sts)
            counted = [r for r in results if r["passed"] is not None]
            row["nist_passed"] = sum(bool(r["passed"]) for r in counted)
            row["nist_applicable"] = len(counted)
            p_values = [p for r in results for p in r["p_values"]]
            row["nist_p_share"] = float(np.mean([p >= NIST_ALPHA for p in p_values])) if p_values else None
            row["nist"] = results
        rows.append(row)
        keys[name] = key
    if plots_dir is not None:
        plots = _load_plots()
        plots.key_tiles(keys, plots_dir / "baseline_keys.png", columns=3, overwrite=args.overwrite)
        for name, key in keys.items():
            plots.histogram_plot(key, plots_dir / f"{name}_histogram.png", title=name, overwrite=args.overwrite)
    if args.json:
        _print_json({"shape": list(shape), "seed": args.seed, "pairs": args.pairs, "repeat": args.repeat,
                     "methods": rows})
        return 0
    headers = ["method", "entropy", "chi2 p", "r horiz", "r vert", "r diag", "gen ms"]
    if args.nist:
        headers += ["NIST passed", "p>=0.01"]
    table = []
    for r in rows:
        line = [r["method"], r["entropy"], r["chi_square_p"], *_corr_cells(r["correlation"]), f"{r['gen_ms']:.1f}"]
        if args.nist:
            line += [f"{r['nist_passed']}/{r['nist_applicable']}", r["nist_p_share"]]
        table.append(line)
    print(_table(headers, table))
    print(f"\nshape {'x'.join(map(str, shape))}, seed {args.seed}, {args.pairs} pairs per direction, "
          f"gen ms = best of {args.repeat}")
    if args.nist:
        print("NIST passed = tests whose every p-value is >= 0.01 / applicable tests (a random key fails the\n"
              "148-template test ~77 % of the time); p>=0.01 = share of all p-values >= 0.01 (~0.99 if random)")
    for r in rows:
        print(f"  {r['method']}: {r['description']}")
    return 0


# --------------------------------------------------------------------------- modes


def cmd_modes(args) -> int:
    from keras_dkg.analysis import modes

    key, plain1, plain2, labels = modes.load_inputs(args.key, args.plain, args.plain2, args.size, args.seed)
    seed = None if args.fresh else args.seed
    result = modes.compare_modes(key, plain1, plain2, seed=seed, alpha=args.alpha, nist=not args.no_nist)
    result["inputs"] = labels
    if args.json:
        _print_json(result)
        return 0
    headers, rows = modes.table_rows(result)
    print(_table(headers, rows))
    plain = result["plaintext"]
    print(f"\nkey: {labels['key']} ({'x'.join(map(str, key.shape))}); P1: {labels['plain1']}; P2: {labels['plain2']}; "
          f"{plain['bytes']} bytes each ({8 * plain['bytes']} key-stream bits)")
    print("key stream = raw(C1) xor raw(P1); NIST: strict = every p-value >= alpha, proportion = SP 800-22 4.2.1 "
          f"rule on the test's own p-values (alpha {args.alpha}); "
          + ("hardened salt/nonce seeded (reproducible, analysis only)" if seed is not None
             else "hardened salt/nonce from os.urandom"))
    return 0


# --------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from exc
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from exc
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value}")
    return value


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=_positive_int, default=metrics.DEFAULT_PAIRS,
                        help="random adjacent pixel pairs per direction for correlations (the paper used 256)")
    parser.add_argument("--all-pairs", action="store_true",
                        help="use every adjacent pair instead of a random sample (exact)")
    add_random_seed(parser, "seed of the pair sampling", type=_seed)


def _add_output(parser: argparse.ArgumentParser, plots: bool = True) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    if plots:
        parser.add_argument("--plots", metavar="DIR", default=None,
                            help="also write PNG figures into DIR (created if missing)")
        parser.add_argument("--overwrite", action="store_true", help="replace existing figures in --plots DIR")


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog=PROG, formatter_class=formatter, description=(
        "Security metrics of DeepKeyGen keys and XOR ciphertexts (paper Section IV): entropy, "
        "histogram chi-square, adjacent-pixel correlation, MSE/SSIM, NPCR/UACI, NIST SP 800-22, "
        "and classical key-generator baselines."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keys = sub.add_parser("keys", formatter_class=formatter, help="statistics of key images",
                          description="Per key: entropy (whole and per channel), chi-square uniformity, "
                                      "adjacent correlations (3 directions); plus a mean row.")
    keys.add_argument("paths", nargs="+", metavar="DIR|FILE", help="key images, or folders of them")
    _add_sampling(keys)
    _add_output(keys)
    keys.set_defaults(handler=cmd_keys)

    cipher = sub.add_parser("cipher", formatter_class=formatter, help="compare a plaintext with its ciphertext",
                            description="Entropy, chi-square, correlations of plain and cipher; MSE, SSIM, PSNR "
                                        "and NPCR/UACI of plain vs cipher.")
    cipher.add_argument("plain", help="plaintext image")
    cipher.add_argument("cipher", help="ciphertext image (same shape and dtype)")
    _add_sampling(cipher)
    cipher.add_argument("--alpha", type=_alpha, default=0.05, help="significance level of the Wu et al. NPCR/UACI test")
    _add_output(cipher)
    cipher.set_defaults(handler=cmd_cipher)

    nist = sub.add_parser("nist", formatter_class=formatter, help="NIST SP 800-22 tests on a bit stream",
                          description="FILE is raw bytes, a key image (PNG) or an ASCII file of '0'/'1'.")
    nist.add_argument("file", help="bit source")
    nist.add_argument("--tests", default=None, metavar="A,B", help="comma-separated test names (default: all)")
    nist.add_argument("--sts", action="store_true", help=STS_HELP)
    _add_output(nist, plots=False)
    nist.set_defaults(handler=cmd_nist)

    base = sub.add_parser("baselines", formatter_class=formatter, help="classical key generators for comparison",
                          description="Keys from " + ", ".join(baselines_module.METHODS) + ": entropy, "
                                      "chi-square p, correlations and generation time (paper Tables XVII-XIX).")
    base.add_argument("--shape", default="256x256x3", help="key shape HxWxC")
    add_random_seed(base, "generator seed (same for every method)", type=_seed)
    base.add_argument("--methods", default=None, metavar="A,B",
                      help="comma-separated subset (default: all of " + ",".join(baselines_module.METHODS) + ")")
    base.add_argument("--pairs", type=_positive_int, default=metrics.DEFAULT_PAIRS,
                      help="random adjacent pairs per direction for correlations")
    base.add_argument("--repeat", type=int, default=1, help="generate each key this many times; report the fastest")
    base.add_argument("--nist", action="store_true", help="also run the NIST SP 800-22 tests on each key")
    base.add_argument("--sts", action="store_true", help=STS_HELP)
    _add_output(base)
    base.set_defaults(handler=cmd_baselines)

    modes = sub.add_parser("modes", formatter_class=formatter, help="XOR vs hardened cipher mode, side by side",
                           description="Encrypt two plaintexts with one key in the paper's XOR mode and in the "
                                       "hardened mode (HKDF + ChaCha20-Poly1305); compare the key streams (NIST, "
                                       "entropy, chi-square), the ciphertexts (NPCR/UACI) and the known-plaintext "
                                       "and key-reuse attacks.")
    modes.add_argument("--key", default=None, help="key image (default: a baseline chaotic key of --size)")
    modes.add_argument("--plain", default=None,
                       help="plaintext P1, windowed to uint8 RGB at the key's size (default: the embedded CT slice)")
    modes.add_argument("--plain2", default=None, help="second plaintext P2 (default: P1 rotated 180 degrees)")
    modes.add_argument("--size", type=int, default=256, help="key size NxN when no --key is given")
    add_random_seed(modes, "seed of the baseline key and of the hardened salts/nonces (reproducible runs)", type=_seed)
    modes.add_argument("--fresh", action="store_true", help="hardened salts/nonces from os.urandom instead")
    modes.add_argument("--alpha", type=_alpha, default=NIST_ALPHA, help="NIST significance level")
    modes.add_argument("--no-nist", action="store_true", help="skip the NIST tests")
    _add_output(modes, plots=False)
    modes.set_defaults(handler=cmd_modes)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dkg-analyze``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_cli(PROG, lambda: args.handler(args), interrupted="interrupted")


if __name__ == "__main__":
    sys.exit(main())

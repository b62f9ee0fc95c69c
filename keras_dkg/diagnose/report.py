"""Put the measurements of one run together (`diagnose`) and print them as text (`format_text`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_dkg.diagnose import keys as keygen
from keras_dkg.diagnose import run_folder, statistics
from keras_dkg.errors import InputError
from keras_dkg.runtime.formats.images import read_image
from keras_dkg.runtime.keys.preprocess import preprocess_uint8

CURVE_ROWS = 10
PAPER_SIZE = 256  # the paper's key size, for the locality bound


def diagnose(run_dir: str | Path, seed_image: str | None = None, nonces: int = 8, pixel_pairs: int = 4,
             seed: int = 0, nist: bool = False) -> tuple[dict, dict]:
    """(report, arrays): the JSON-able measurements, and the images and spectra the plots need.

    `nist` adds the SP 800-22 block (diagnose.nist_block; minutes per key at 256²).
    """
    if nonces < 2 or pixel_pairs < 1:
        raise InputError(f"--nonces must be at least 2 and --pixel-pairs at least 1, got {nonces} and {pixel_pairs}")
    run_dir = Path(run_dir)
    record = run_folder.read_run(run_dir)
    options = record["options"]
    size = int(options.get("image_size") or record.get("image_size"))
    seed_path = run_folder.seed_image_path(options, seed_image)
    seed_uint8 = preprocess_uint8(read_image(seed_path), size)

    generator = keygen.load_generator(run_dir, options)
    seeds = keygen.nonce_seeds(seed_uint8, nonces)
    rng = np.random.default_rng(seed)
    twins, positions = zip(*(keygen.one_pixel_twin(s, rng) for s in seeds[:pixel_pairs]), strict=True)
    made = keygen.generate(generator, seeds + list(twins))
    keys, twin_keys = made[:nonces], made[nonces:]
    pixel_pairs_keys = list(zip(keys[:pixel_pairs], twin_keys, strict=True))
    reference = statistics.uniform_reference(keys.shape, seed)
    domain = run_folder.domain_images(run_folder.domain_folder(run_dir, options), size,
                                      gray=bool(options.get("domain_gray")))

    def describe(images):
        if images is None:
            return None
        return {"bytes": statistics.byte_profile(images), "autocorrelation": statistics.autocorrelation(images),
                "spectrum": statistics.spectral_peaks(images)}

    samples = run_folder.sample_keys(run_dir)
    report = {
        "run": str(run_dir), "image_size": size, "seed_image": str(seed_path), "nonces": nonces,
        "options": options, "steps_done": record.get("summary", {}).get("steps_done"),
        "keys": describe(keys), "domain": describe(domain), "uniform_reference": describe(reference),
        "one_pixel": statistics.one_pixel_sensitivity(pixel_pairs_keys),
        "locality": keygen.locality_of_pairs(generator, size, pixel_pairs_keys, list(positions), PAPER_SIZE),
        "nonce_keys": statistics.nonce_relatedness(keys),
        "training": run_folder.training_curves(run_dir),
        "sample_entropy": run_folder.entropy_over_steps(samples),
    }
    if nist:
        from keras_dkg.diagnose.nist_block import nist_block

        report["nist"] = nist_block(keys)
    arrays = {"keys": keys, "domain": domain, "reference": reference, "samples": samples,
              "key_spectrum": statistics.power_spectrum(keys),
              "domain_spectrum": None if domain is None else statistics.power_spectrum(domain)}
    return report, arrays


def _pick(count: int, rows: int) -> list[int]:
    return sorted(set(np.linspace(0, count - 1, min(rows, count)).round().astype(int).tolist())) if count else []


def format_text(report: dict) -> str:
    """The report as a few plain tables."""
    columns = [("keys", report["keys"]), ("domain", report["domain"]), ("uniform", report["uniform_reference"])]
    columns = [(name, part) for name, part in columns if part is not None]
    lines = [f"run {report['run']}: {report['steps_done']} steps at {report['image_size']}²; "
             f"{report['nonces']} keys from {report['seed_image']} (nonces 1..{report['nonces']})", "",
             "bytes".ljust(28) + "".join(name.rjust(15) for name, _ in columns)]

    def row(label, get, fmt="{:.4f}"):
        lines.append(label.ljust(28) + "".join(fmt.format(get(part)).rjust(15) for _, part in columns))

    row("entropy per image", lambda p: p["bytes"]["entropy_per_image"])
    row("entropy pooled", lambda p: p["bytes"]["entropy_pooled"])
    row("chi-square p pooled", lambda p: p["bytes"]["chi2_p_pooled"], "{:.3g}")
    row("share of bytes at 0", lambda p: p["bytes"]["zero_share"])
    row("share of bytes at 255", lambda p: p["bytes"]["full_share"])
    for c in range(3):
        row(f"channel {c}: entropy / p", lambda p, c=c: f"{p['bytes']['channels'][c]['entropy']:.3f}/"
            f"{p['bytes']['channels'][c]['chi2_p']:.2g}", "{}")
    lines += ["", "autocorrelation (lag)".ljust(28) + "".join(name.rjust(15) for name, _ in columns)]
    for index, lag in enumerate(report["keys"]["autocorrelation"]["lags"]):
        row(f"lag {lag} horizontal / vertical", lambda p, i=index: f"{p['autocorrelation']['horizontal'][i]:+.3f}/"
            f"{p['autocorrelation']['vertical'][i]:+.3f}", "{}")
    lines += ["", "spectrum".ljust(28) + "".join(name.rjust(15) for name, _ in columns)]
    row("flatness (1 = white)", lambda p: p["spectrum"]["flatness"])
    row("top peak × median", lambda p: p["spectrum"]["peaks"][0]["times_median"], "{:.1f}")
    peaks = ", ".join(f"(fy {p['fy']:+.3f}, fx {p['fx']:+.3f}) ×{p['times_median']:.0f}"
                      for p in report["keys"]["spectrum"]["peaks"])
    lines.append(f"key peaks, cycles/pixel: {peaks}")
    one, nonce = report["one_pixel"], report["nonce_keys"]
    lines += ["", f"one seed pixel changed: NPCR {one['npcr']:.2f} % (min {one['npcr_min']:.2f}), "
              f"UACI {one['uaci']:.2f} % over {one['pairs']} pairs (ideal 99.61 / 33.46)",
              f"keys of nonces i, i+1: {100 * nonce['equal_share']:.2f} % equal bytes; chance from their histograms "
              f"{100 * nonce['chance']:.2f} %, uniform {100 * nonce['uniform_chance']:.2f} %; "
              f"excess {nonce['excess_se']:.1f} standard errors"]
    local = report["locality"]
    inside = "-" if local["npcr_inside"] is None else f"{local['npcr_inside']:.2f} %"
    outside = "-" if local["npcr_outside"] is None else f"{local['npcr_outside']:.3f} %"
    lines += [f"locality: G's convolutions reach {100 * local['reach_share']:.1f} % of the key from the changed "
              f"pixels (a centred pixel {100 * local['centred_reach_share']:.1f} %; at 256² "
              f"{local['reach_span_256']}² px = {100 * local['centred_reach_share_256']:.1f} %): NPCR at most "
              f"{local['bound_npcr']:.1f} % without instance norm's image-wide statistics",
              f"  bytes changed inside the reach {inside}, beyond it {outside} "
              f"({100 * local['changed_outside_share']:.1f} % of all changed bytes)",
              "  changed bytes by distance from the pixel: " + ", ".join(
                  f"{r['from']}-{'' if r['to'] is None else r['to']}: {r['changed_percent']:.1f} %"
                  for r in local["rings"])]
    if "nist" in report:
        block = report["nist"]
        strict, proportion = block["strict"], block["by_proportion"]
        lines += ["", f"NIST SP 800-22 ({block['bits']} bits per key): first key passes {strict['passed']} of "
                  f"{strict['applicable']} applicable tests (failed: {', '.join(strict['failed']) or 'none'}); by "
                  f"proportion over {block['keys']} keys {proportion['passed']} of {proportion['applicable']} "
                  f"(failed: {', '.join(proportion['failed']) or 'none'})"]
    curves = report["training"]
    if curves["steps"]:
        names = [n for n in ("d_loss", "g_loss", "d_acc_real", "d_acc_fake", "r1", "noise_sigma") if n in curves]
        lines += ["", f"training ({curves['source']})", "step".rjust(8) + "".join(n.rjust(12) for n in names)]
        for i in _pick(len(curves["steps"]), CURVE_ROWS):
            lines.append(f"{curves['steps'][i]:8d}" + "".join(
                ("-" if curves[n][i] is None else f"{curves[n][i]:.4f}").rjust(12) for n in names))
    else:
        lines += ["", "training: no metrics log and no readable TensorBoard scalars"]
    samples = report["sample_entropy"]
    if samples:
        best = max(samples, key=lambda s: s["entropy"])
        lines += ["", f"sample key (held-back seed) over training; best entropy {best['entropy']:.4f} at step "
                  f"{best['step']}", "step".rjust(8) + "entropy".rjust(12) + "saturated".rjust(12)]
        for i in _pick(len(samples), CURVE_ROWS):
            lines.append(f"{samples[i]['step']:8d}{samples[i]['entropy']:12.4f}{samples[i]['saturated_share']:12.4f}")
    return "\n".join(lines)

"""The report's PNG figures (keras_dkg.analysis.plots), keyed by the section they belong to.

Fig. 5 (keys of independent runs), Fig. 6 (key histogram), Fig. 7 (plain/cipher
histograms), correlation scatters, Figs. 8–10 (decryption grids and decrypted images),
Fig. 11 (ciphertext histograms per generator), Fig. 12 (plain / key / cipher /
decrypted) and Fig. 13 (low vs high domain).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from keras_dkg.analysis import differential, metrics, plots
from keras_dkg.reproduce.datasets import MODALITIES
from keras_dkg.reproduce.tablekit import Artifacts
from keras_dkg.runtime.ciphers.metadata import CipherMetadata
from keras_dkg.runtime.ciphers.registry import decrypt_array, encrypt_array


def _rel(art: Artifacts, path) -> str:
    return str(path.relative_to(art.ctx.out))


FIGURES_INDEX = "figures.json"


def make_figures(art: Artifacts, entries: dict) -> dict[str, list[tuple[str, str]]]:
    """The figures, or those of the last report when the analysis it drew is unchanged (a rerun
    that reused every stage: drawing 20+ PNGs again would only cost time)."""
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True, default=str).encode("utf-8")).hexdigest()
    index = art.ctx.path("figures", FIGURES_INDEX)
    try:
        saved = json.loads(index.read_text(encoding="utf-8"))
        if saved["digest"] == digest and all((art.ctx.out / path).is_file()
                                             for section in saved["figures"].values() for _, path in section):
            return {section: [tuple(pair) for pair in pairs] for section, pairs in saved["figures"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    figures = _draw(art, entries)
    index.write_text(json.dumps({"digest": digest, "figures": figures}), encoding="utf-8")
    return figures


def _draw(art: Artifacts, entries: dict) -> dict[str, list[tuple[str, str]]]:
    folder = art.ctx.path("figures")
    folder.mkdir(parents=True, exist_ok=True)
    profile = art.ctx.profile
    figs: dict[str, list[tuple[str, str]]] = {}

    def add(section: str, caption: str, path) -> None:
        figs.setdefault(section, []).append((caption, _rel(art, path)))

    runs = {f"run {i} (seed {i})": art.key(f"otp_{i}", "seed") for i in range(profile.otp_runs)}
    add("table_III_key_entropy", "Fig. 5: keys of the independent trainings (same seed image)",
        plots.key_tiles(runs, folder / "fig5_keys_independent_runs.png", overwrite=True))
    key = art.key("otp_0", "table-1")
    add("table_III_key_entropy", "Fig. 6: histogram of key table-1",
        plots.histogram_plot(key, folder / "fig6_key_histogram.png", title="key table-1 (network A)", overwrite=True))

    for modality in MODALITIES:
        plain, cipher = art.plaintexts(modality)[0], art.ciphers("xor", modality)[0]
        for kind, image in (("plain", plain), ("cipher", cipher)):
            add("table_V_VII_entropy", f"Fig. 7: {modality} image 1, {kind} histogram",
                plots.histogram_plot(image, folder / f"fig7_{modality}_{kind}_histogram.png",
                                     title=f"{modality} 1 {kind}", overwrite=True))
            add("table_XI_XIII_correlation", f"{modality} image 1, {kind}: adjacent pairs (N = {profile.correlation_pairs})",
                plots.correlation_scatter(metrics.correlations(image, pairs=profile.correlation_pairs, seed=0),
                                          folder / f"corr_{modality}_{kind}.png", title=f"{modality} 1 {kind}",
                                          overwrite=True))
        tiles = {}
        for i, (p, c) in enumerate(zip(art.plaintexts(modality)[:4], art.ciphers("xor", modality)[:4], strict=True), 1):
            k = art.key("otp_0", f"enc-{modality}-{i}")
            meta = CipherMetadata.from_json(art.ctx.path("ciphers", "xor", modality, f"{i:02d}.json").read_text())
            tiles.update({f"{i} plain": p, f"{i} key": k, f"{i} cipher": c, f"{i} decrypted": decrypt_array(c, k, meta)})
        add("table_VIII_X_similarity", f"Fig. 12: {modality}: plaintext, key, ciphertext, decryption",
            plots.key_tiles(tiles, folder / f"fig12_{modality}.png", columns=4, overwrite=True))

    grids = entries["table_XVI_attack_networks"]["ours"]["grids"]
    for name, fig in (("domain_leak", "Fig. 8"), ("structure_leak", "Fig. 9"), ("both_leaked", "Fig. 10")):
        grid = grids[name]
        add("table_XVI_attack_networks", f"{fig}: {name.replace('_', ' ')} — share of bytes decrypted exactly",
            plots.grid_heatmap(np.array(grid["exact_share"], dtype=float), grid["names"], folder / f"grid_{name}.png",
                               title=f"{fig}: {name.replace('_', ' ')}", overwrite=True))
    plain = art.plaintexts("mri")[0]
    keys = {f"run {i}": art.key(f"otp_{i}", "seed") for i in range(profile.otp_runs)}
    decrypted = {}
    for enc, k_enc in keys.items():  # wrong keys: the attacker's raw XOR (decrypt_array refuses them)
        cipher, meta = encrypt_array(plain, k_enc)
        for dec, k_dec in keys.items():
            decrypted[f"enc {enc} / dec {dec}"] = (decrypt_array(cipher, k_dec, meta) if enc == dec
                                                  else differential.raw_xor(cipher, k_dec))
    add("table_XVI_attack_networks", "Fig. 10: mri image 1 encrypted with row key, decrypted with column key",
        plots.key_tiles(decrypted, folder / "fig10_mutual_decryption.png", columns=len(keys), overwrite=True))

    from keras_dkg.reproduce.tables_methods import method_keys

    xray = art.plaintexts("xray")[0]
    for method, k in method_keys(art).items():
        add("table_XX_cipher_entropy_by_method", f"Fig. 11: ciphertext histogram, {method}",
            plots.histogram_plot(encrypt_array(xray, k)[0], folder / f"fig11_{method}.png",
                                 title=f"xray 1 ⊕ {method} key", overwrite=True))

    if "low" in profile.leak_domains:
        mri = art.plaintexts("mri")[0]
        tiles = {"(a) low-security domain": art.domain_images("low")[0],
                 "(b) high-security domain": art.domain_images("high")[0],
                 "(c) cipher, key from (a)": art.ciphers("xor_low", "mri")[0],
                 "(d) cipher, key from (b)": art.ciphers("xor", "mri")[0], "plaintext": mri}
        add("section_V_C_transformation_domain", "Fig. 13: low- vs high-security domain and the ciphertexts they give",
            plots.key_tiles(tiles, folder / "fig13_domains.png", columns=5, overwrite=True))
    return figs

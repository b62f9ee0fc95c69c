"""Figures of a diagnosis (matplotlib, Agg; imported only for --plots), one PNG each, atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_dkg.analysis.plots import key_tiles
from keras_dkg.runtime.guards.atomic import atomic_output

FILES = ("histograms.png", "autocorrelation.png", "spectrum.png", "locality.png", "training.png",
         "sample_entropy.png", "keys.png")


def _save(figure: Figure, path: Path, overwrite: bool) -> Path:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    with atomic_output(path, overwrite=overwrite) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    return path


def histograms(keys: np.ndarray, domain: np.ndarray | None, path: Path, overwrite: bool) -> Path:
    figure = Figure(figsize=(12, 3.4))
    for c in range(3):
        axes = figure.add_subplot(1, 3, c + 1)
        for label, images in (("keys", keys), ("domain", domain)):
            if images is not None:
                counts = np.bincount(images[..., c].reshape(-1), minlength=256) / images[..., c].size
                axes.plot(np.arange(256), counts, label=label, drawstyle="steps-mid", linewidth=0.8)
        axes.axhline(1 / 256, color="gray", linestyle=":", label="uniform")
        axes.set_yscale("log")
        axes.set_title(f"channel {c}")
        axes.set_xlabel("byte value")
        axes.legend(fontsize="small")
    return _save(figure, path, overwrite)


def autocorrelation(report: dict, path: Path, overwrite: bool) -> Path:
    figure = Figure(figsize=(6, 3.6))
    axes = figure.add_subplot(1, 1, 1)
    for name, style in (("keys", "-"), ("domain", "--"), ("uniform_reference", ":")):
        part = report.get(name)
        if part is not None:
            for direction in ("horizontal", "vertical"):
                axes.plot(part["autocorrelation"]["lags"], part["autocorrelation"][direction], style, marker="o",
                          label=f"{name} {direction}")
    axes.axhline(0, color="gray", linewidth=0.5)
    axes.set_xlabel("lag (pixels)")
    axes.set_ylabel("correlation")
    axes.legend(fontsize="x-small")
    return _save(figure, path, overwrite)


def spectrum(key_power: np.ndarray, domain_power: np.ndarray | None, path: Path, overwrite: bool) -> Path:
    panels = [("keys", key_power)] + ([("domain", domain_power)] if domain_power is not None else [])
    figure = Figure(figsize=(4.5 * len(panels), 4))
    for index, (label, power) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), index)
        power = power.copy()
        power[power.shape[0] // 2, power.shape[1] // 2] = np.median(power)  # DC is 0 after centring
        shown = np.log10(power / np.median(power))
        image = axes.imshow(shown, extent=(-0.5, 0.5, 0.5, -0.5), cmap="magma")
        axes.set_title(f"{label}: log10 power / median")
        axes.set_xlabel("fx (cycles/pixel)")
        axes.set_ylabel("fy")
        figure.colorbar(image, ax=axes, fraction=0.046)
    return _save(figure, path, overwrite)


def locality(local: dict, path: Path, overwrite: bool) -> Path:
    """Share of key bytes a one-pixel seed change moves, by distance from the pixel."""
    figure = Figure(figsize=(6, 3.6))
    axes = figure.add_subplot(1, 1, 1)
    rings = local["rings"]
    labels = [f"{r['from']}-{'' if r['to'] is None else r['to']}" for r in rings]
    axes.bar(labels, [r["changed_percent"] for r in rings], color="tab:blue")
    axes.axhline(100 * 255 / 256, color="gray", linestyle=":", label="independent keys (99.61 %)")
    axes.set_ylim(0, 100)
    axes.set_xlabel("distance from the changed seed pixel (pixels, Chebyshev)")
    axes.set_ylabel("key bytes changed (%)")
    axes.set_title(f"G's convolutions reach {local['bound_npcr']:.0f} % of the key here")
    axes.legend(fontsize="small")
    return _save(figure, path, overwrite)


def training(curves: dict, path: Path, overwrite: bool) -> Path:
    figure = Figure(figsize=(10, 3.6))
    losses, accuracy = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for name in ("d_loss", "g_loss", "r1"):
        if name in curves:
            losses.plot(curves["steps"], curves[name], label=name, linewidth=0.8)
    for name in ("d_acc_real", "d_acc_fake"):
        if name in curves:
            accuracy.plot(curves["steps"], curves[name], label=name, linewidth=0.8)
    accuracy.axhline(0.5, color="gray", linestyle=":")
    for axes, title in ((losses, "losses"), (accuracy, "D's accuracy (share of patches)")):
        axes.set_xlabel("step")
        axes.set_title(title)
        axes.legend(fontsize="small")
    return _save(figure, path, overwrite)


def sample_entropy(samples: list[dict], path: Path, overwrite: bool) -> Path:
    figure = Figure(figsize=(6, 3.4))
    axes = figure.add_subplot(1, 1, 1)
    axes.plot([s["step"] for s in samples], [s["entropy"] for s in samples], marker="o")
    axes.set_xlabel("step")
    axes.set_ylabel("entropy (bits per byte)")
    axes.set_title("held-back seed's key")
    return _save(figure, path, overwrite)


def write_all(report: dict, arrays: dict, folder: Path, overwrite: bool) -> list[Path]:
    """Every figure of `FILES` into `folder` (the training ones only when the run logged them)."""
    written = [histograms(arrays["keys"], arrays["domain"], folder / "histograms.png", overwrite),
               autocorrelation(report, folder / "autocorrelation.png", overwrite),
               spectrum(arrays["key_spectrum"], arrays["domain_spectrum"], folder / "spectrum.png", overwrite),
               locality(report["locality"], folder / "locality.png", overwrite)]
    if report["training"]["steps"]:
        written.append(training(report["training"], folder / "training.png", overwrite))
    if report["sample_entropy"]:
        written.append(sample_entropy(report["sample_entropy"], folder / "sample_entropy.png", overwrite))
    tiles = {f"nonce {i + 1}": key for i, key in enumerate(arrays["keys"][:4])}
    written.append(key_tiles(tiles, folder / "keys.png", overwrite=overwrite))
    return written

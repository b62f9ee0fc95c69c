"""Figures for the analysis (matplotlib, Agg; imported by the CLI only for ``--plots``).

Uses ``matplotlib.figure.Figure`` directly (no pyplot global state, no GUI backend).
Every function writes one PNG atomically and returns its path; an existing file is
refused unless ``overwrite=True``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_dkg.analysis.metrics import AdjacentCorrelation, histogram
from keras_dkg.runtime.guards.atomic import atomic_output


def _save(figure: Figure, path, overwrite: bool) -> Path:
    FigureCanvasAgg(figure)
    target = Path(path)
    with atomic_output(target, overwrite=overwrite) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    return target


def histogram_plot(image, path, title: str = "", overwrite: bool = False) -> Path:
    """Bar chart of the 256-level histogram (relative frequency) with the uniform line."""
    counts = histogram(image)
    frequency = counts / counts.sum()
    figure = Figure(figsize=(6, 3.2))
    axes = figure.add_subplot()
    axes.bar(np.arange(counts.size), frequency, width=1.0, color="#4878a8")
    axes.axhline(1.0 / counts.size, color="#c03030", linewidth=0.8, label="uniform")
    axes.set_xlim(-0.5, counts.size - 0.5)
    axes.set_xlabel("value")
    axes.set_ylabel("frequency")
    axes.set_title(title or "histogram")
    axes.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    return _save(figure, path, overwrite)


def correlation_scatter(
    correlations: Mapping[str, AdjacentCorrelation], path, title: str = "", overwrite: bool = False
) -> Path:
    """Scatter of adjacent pairs (x, y), one panel per direction, r in each panel title."""
    figure = Figure(figsize=(4 * len(correlations), 4))
    for k, (direction, result) in enumerate(correlations.items(), start=1):
        axes = figure.add_subplot(1, len(correlations), k)
        axes.scatter(result.x, result.y, s=1, alpha=0.4, color="#4878a8", rasterized=True)
        r = "nan" if math.isnan(result.r) else f"{result.r:.4f}"
        axes.set_title(f"{direction}: r = {r} (N = {result.n_pairs})", fontsize="small")
        axes.set_xlabel("pixel value")
        axes.set_ylabel("adjacent pixel value")
        if result.x.size:
            low = float(min(result.x.min(), result.y.min()))
            high = float(max(result.x.max(), result.y.max()))
            pad = max(1.0, 0.02 * (high - low))
            axes.set_xlim(low - pad, high + pad)
            axes.set_ylim(low - pad, high + pad)
        axes.set_aspect("equal")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path, overwrite)


def key_tiles(images: Mapping[str, np.ndarray] | Sequence[np.ndarray], path, columns: int = 4,
              overwrite: bool = False) -> Path:
    """Key images side by side (names as titles)."""
    items = list(images.items()) if isinstance(images, Mapping) else [(str(i), im) for i, im in enumerate(images)]
    columns = max(1, min(columns, len(items)))
    rows = math.ceil(len(items) / columns)
    figure = Figure(figsize=(3 * columns, 3.2 * rows))
    for k, (name, image) in enumerate(items, start=1):
        axes = figure.add_subplot(rows, columns, k)
        array = np.asarray(image)
        axes.imshow(array, cmap="gray" if array.ndim == 2 else None, interpolation="nearest")
        axes.set_title(name, fontsize="small")
        axes.axis("off")
    figure.tight_layout()
    return _save(figure, path, overwrite)


def grid_heatmap(matrix, names: Sequence[str], path, title: str = "", fmt: str = "{:.4f}",
                 xlabel: str = "decryption key", ylabel: str = "encryption key", overwrite: bool = False) -> Path:
    """Annotated heatmap of an n×n matrix (e.g. the decryption grid's exact-byte share)."""
    values = np.asarray(matrix, dtype=np.float64)
    figure = Figure(figsize=(1.2 * len(names) + 2.5, 1.0 * len(names) + 1.8))
    axes = figure.add_subplot()
    shown = np.where(np.isfinite(values), values, np.nan)
    image = axes.imshow(shown, cmap="viridis")
    figure.colorbar(image, ax=axes)
    axes.set_xticks(range(len(names)), labels=list(names), rotation=45, ha="right")
    axes.set_yticks(range(len(names)), labels=list(names))
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            text = "inf" if np.isinf(values[i, j]) else fmt.format(values[i, j])
            axes.text(j, i, text, ha="center", va="center", color="w", fontsize="small")
    axes.set_title(title or "decryption grid")
    figure.tight_layout()
    return _save(figure, path, overwrite)

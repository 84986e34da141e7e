"""Confusion-matrix figure: counts and row-normalised fractions side by side (matplotlib, PNG)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.classify.metrics import normalise_rows


def save_confusion_png(counts: np.ndarray, classes: list[str], title: str, path: str | Path) -> Path:
    """Write ``path``: left the counts, right each actual class's fractions (rows: actual, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norm = normalise_rows(counts)
    k = len(classes)
    side = 1.2 + 0.9 * k
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1.2, side + 1.0))
    fig.subplots_adjust(left=0.16, right=0.98, bottom=0.26, top=0.84, wspace=0.55)  # fixed: a layout engine doubles the draw time
    for ax, values, name, fmt in ((axes[0], counts, "counts", "{:d}"), (axes[1], norm, "fraction of actual", "{:.2f}")):
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")  # colour = fraction in both panels
        ax.set_title(name, fontsize=10)
        ax.set_xticks(range(k), classes, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        for i in range(k):
            for j in range(k):
                ax.text(j, i, fmt.format(values[i, j].item()), ha="center", va="center", fontsize=9,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

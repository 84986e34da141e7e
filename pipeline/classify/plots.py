"""Figures: confusion matrix (counts and row-normalised fractions) and learning curves (matplotlib, PNG)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.classify.metrics import normalise_rows


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (imported late: only the stages that draw pay for it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path, dpi: int) -> Path:
    """Write ``fig`` to ``path`` (parents made) and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def save_confusion_png(counts: np.ndarray, classes: list[str], title: str, path: str | Path) -> Path:
    """Write ``path``: left the counts, right each actual class's fractions (rows: actual, columns: predicted)."""
    plt = _pyplot()

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
    return _save(plt, fig, path, dpi=100)


def save_learning_curves_png(histories: dict[int, list[dict]], monitor: str, title: str, path: str | Path) -> Path:
    """Write ``path``: left train and validation loss per epoch, right the validation scores; one line per seed,
    a dot on each seed's selected epoch (the one whose weights were kept)."""
    plt = _pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.84, wspace=0.25)
    for i, (seed, history) in enumerate(sorted(histories.items())):
        colour = f"C{i % 10}"
        epochs = [h["epoch"] for h in history]
        selected = next((h for h in history if h.get("selected")), None)
        axes[0].plot(epochs, [h["train_loss"] for h in history], color=colour, ls=":", lw=1)
        axes[0].plot(epochs, [h["val_loss"] for h in history], color=colour, lw=1, label=f"seed {seed}")
        axes[1].plot(epochs, [h["val_macro_f1"] for h in history], color=colour, lw=1)
        axes[1].plot(epochs, [h["val_balanced_accuracy"] for h in history], color=colour, ls="--", lw=1)
        if selected:
            axes[0].plot(selected["epoch"], selected["val_loss"], "o", color=colour)
            axes[1].plot(selected["epoch"], selected["val_macro_f1"], "o", color=colour)
    axes[0].set_title("loss (solid: validation, dotted: train)", fontsize=9)
    axes[1].set_title(f"validation macro-F1 (solid), balanced accuracy (dashed); selected on {monitor}", fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path, dpi=80)


def save_arms_png(arms: dict[str, dict], metrics: tuple[str, ...], title: str, path: str | Path) -> Path:
    """Write ``path``: one panel per metric, a horizontal bar per arm (mean) with its interval as an error bar.

    ``arms`` is ``{arm: {metric: {"mean", "low", "high"}}}`` (the details JSON's ``arms`` block).
    """
    plt = _pyplot()

    names = list(arms)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics) + 1.6, 0.42 * len(names) + 1.4),
                             sharey=True)
    axes = np.atleast_1d(axes)
    fig.subplots_adjust(left=0.16, right=0.98, bottom=0.14, top=0.84, wspace=0.08)
    y = np.arange(len(names))
    for ax, metric in zip(axes, metrics):
        mean = np.array([arms[a][metric]["mean"] for a in names], dtype=float)
        low = np.array([arms[a][metric]["low"] for a in names], dtype=float)
        high = np.array([arms[a][metric]["high"] for a in names], dtype=float)
        ax.barh(y, mean, color=["C1" if a == "real_only" else "C0" for a in names], alpha=0.8)
        ax.errorbar(mean, y, xerr=[mean - low, high - mean], fmt="none", ecolor="black", capsize=3, lw=1)
        for yi, m in zip(y, mean):
            ax.text(0.01, yi, f"{m:.3f}", va="center", fontsize=8, color="white")
        ax.set_xlim(0, 1.02)
        ax.set_title(metric.replace("_", " "), fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path, dpi=100)

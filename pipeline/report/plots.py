"""Matplotlib figures for the report, returned as PNG bytes (no pyplot state, no timestamp in the file)."""
from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})  # fixed margins: one draw, fast
    return buf.getvalue()


def _series(history: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r.get("epoch"), r.get(key)) for r in history if r.get("epoch") is not None and r.get(key) is not None]
    if not pts:
        return np.zeros(0), np.zeros(0)
    x, y = zip(*pts)
    return np.asarray(x, float), np.asarray(y, float)


def training_curves(history: list[dict], best_epoch: float | None = None) -> bytes:
    """Three panels: losses, discriminator outputs, and the quality score of the collapse watch."""
    fig = Figure(figsize=(11, 3.2))
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.16, top=0.9, wspace=0.22)
    panels = [
        (axes[0], [("loss_D", "discriminator loss"), ("loss_G", "generator loss")], "loss"),
        (axes[1], [("D_x", "D(real)"), ("D_G_z", "D(synthetic)"), ("aux_acc", "class accuracy (AC-GAN)")],
         "discriminator output"),
        (axes[2], [("quality_fd", "Frechet distance (lower = closer to real)")], "quality (validation)"),
    ]
    for ax, keys, label in panels:
        drawn = False
        for key, name in keys:
            x, y = _series(history, key)
            if len(x):
                ax.plot(x, y, marker="o" if len(x) < 15 else None, markersize=3, label=name)
                drawn = True
        if best_epoch is not None and keys[0][0] == "quality_fd" and drawn:
            ax.axvline(best_epoch, color="tab:green", linestyle="--", linewidth=1, label=f"best epoch {best_epoch:g}")
        if drawn:
            ax.legend(fontsize=7, loc="best")
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    return _png(fig)


def confusion_pair(matrices: list[tuple[str, np.ndarray]], classes: list[str]) -> bytes:
    """Confusion matrices side by side: counts, and in brackets the share of the actual class (row)."""
    fig = Figure(figsize=(4.6 * len(matrices), 4.4))
    axes = np.atleast_1d(fig.subplots(1, len(matrices)))
    fig.subplots_adjust(left=0.14, right=0.98, bottom=0.24, top=0.93, wspace=0.45)
    for ax, (name, m) in zip(axes, matrices):
        rows = m.sum(axis=1, keepdims=True)
        share = np.divide(m, rows, out=np.zeros_like(m, dtype=float), where=rows > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{m[i, j]:g}\n({share[i, j]:.0%})", ha="center", va="center", fontsize=9,
                        color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title(name, fontsize=11)
    return _png(fig)

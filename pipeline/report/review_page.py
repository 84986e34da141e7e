"""The blinded real-or-synthetic review page and its answer key.

Items are a seeded, balanced draw: per class as many real held-out (test split) images as synthetic
(kept) ones, classes as even as the images allow, then shuffled and numbered item_001, item_002, ...
in display order. Every image, real or synthetic, goes through the same display path (same windowing,
same size, nearest-neighbour only) and the same PNG encoder with compression off, so the page's bytes
carry no trace of an image's origin: no names, no metadata, equal data-URI lengths. The truth lives
only in ``review_key.json``, which the page never references. The page is ``templates/review.html.j2`` with
``review.css`` and ``review.js`` inlined (the script saves the answers in the browser and exports them as CSV).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from pipeline.data.cache import SplitArrays
from pipeline.errors import DataError
from pipeline.report.config import ReportConfig
from pipeline.report.html import render
from pipeline.report.images import data_uri, png_bytes, read_uint8, resize_to, window
from pipeline.report.inputs import Evaluation, GanInputs, ReportInputs, SyntheticImage

log = logging.getLogger(__name__)


@dataclass
class ReviewItem:
    item_id: str
    truth: str  # "real" or "synthetic"
    cls: str
    source_id: str  # test image id or synthetic file name
    gan: str | None
    image: np.ndarray  # uint8 (C, H, W)


def review_gans(gans: list[GanInputs], evaluation: Evaluation | object, choice: str) -> list[GanInputs]:
    """The GANs whose kept images go on the page: one by name, the best arm's, or all."""
    usable = [g for g in gans if g.kept]
    if choice == "all":
        return usable
    if choice != "best":
        chosen = [g for g in usable if g.name == choice]
        if not chosen:
            raise DataError(f"params.yaml: report.review_gan: {choice!r} has no kept synthetic images; use one of "
                            f"{', '.join(g.name for g in usable) or '(none yet: run generate)'}, 'best' or 'all'")
        return chosen
    if isinstance(evaluation, Evaluation):
        best = evaluation.arm(evaluation.best)
        if best and best.gan:
            names = [best.gan]
        else:  # an arm named after its GAN, e.g. "acgan_x2"
            names = [g.name for g in usable if evaluation.best and g.name in evaluation.best]
        chosen = [g for g in usable if g.name in names]
        if chosen:
            return chosen[:1]
    return usable  # no evaluation yet: every GAN's images


def _allocate(capacity: list[int], pairs: int) -> list[int]:
    """Spread ``pairs`` over classes round-robin, never above a class's capacity."""
    alloc = [0] * len(capacity)
    while pairs > 0 and any(a < c for a, c in zip(alloc, capacity)):
        for i, cap in enumerate(capacity):
            if pairs and alloc[i] < cap:
                alloc[i] += 1
                pairs -= 1
    return alloc


def select_items(test: SplitArrays, synthetic: list[tuple[SyntheticImage, str]], classes: list[str],
                 channels: int, n_items: int, seed: int) -> list[ReviewItem]:
    """A balanced, shuffled list of real and synthetic items (see the module docstring)."""
    rng = np.random.default_rng(seed)
    resolution = test.images.shape[-1] if len(test) else None
    syn_by_class = {c: sorted((s for s in synthetic if s[0].cls == c and s[0].path.is_file()),
                              key=lambda s: (s[1], s[0].image_id)) for c in classes}
    real_by_class = {c: np.flatnonzero(test.labels == i) for i, c in enumerate(classes)}
    capacity = [min(len(real_by_class[c]), len(syn_by_class[c])) for c in classes]
    alloc = _allocate(capacity, n_items // 2)
    if sum(alloc) < n_items // 2:
        log.warning("review page: %d items instead of %d (per class real/synthetic available: %s)", 2 * sum(alloc),
                    n_items, ", ".join(f"{c} {len(real_by_class[c])}/{len(syn_by_class[c])}" for c in classes))
    drafts: list[tuple[str, str, str, str | None, np.ndarray]] = []
    for c, k in zip(classes, alloc):
        for i in sorted(rng.choice(real_by_class[c], size=k, replace=False)):
            drafts.append(("real", c, str(test.image_ids[i]), None, test.images[i]))
        for j in sorted(rng.choice(len(syn_by_class[c]), size=k, replace=False)):
            row, gan = syn_by_class[c][j]
            img = read_uint8(row.path, channels)
            if resolution and img.shape[-1] != resolution:  # same size as the real images, or size is a tell
                img = np.stack([resize_to(ch, resolution) for ch in img])
            drafts.append(("synthetic", c, row.image_id, gan, img))
    order = rng.permutation(len(drafts))
    width = max(3, len(str(len(drafts))))
    return [ReviewItem(f"item_{n + 1:0{width}d}", *drafts[i]) for n, i in enumerate(order)]


def encode(item: ReviewItem, percentiles: list[float] | None) -> str:
    """One display path for every item; compress_level=0 makes the PNG length depend on the size alone."""
    return data_uri(png_bytes(window(item.image, percentiles), compress_level=0))


def build_review(inputs: ReportInputs, cfg: ReportConfig, dataset: str) -> tuple[str, dict]:
    """(review.html text, answer key dict). Raises DataError when there is nothing to review yet."""
    if not isinstance(inputs.test, SplitArrays) or not len(inputs.test):
        raise DataError(f"data/{dataset}/cache/test.npz: no real test images for the review page; run ingest")
    gans = review_gans(inputs.gans, inputs.evaluation, cfg.review_gan)
    synthetic = [(row, g.name) for g in gans for row in g.kept]
    if not synthetic:
        raise DataError(f"data/synthetic/{dataset}: no kept synthetic images for the review page; run generate")
    items = select_items(inputs.test, synthetic, inputs.classes, inputs.channels, cfg.review_items, cfg.review_seed)
    if not items:
        raise DataError(f"{dataset}: no class has both real test images and kept synthetic images; "
                        "the review page would be empty")
    percentiles = cfg.mammo_window_percentiles if inputs.modality == "mammography" else None
    sources = [encode(it, percentiles) for it in items]
    digest = hashlib.sha256(f"{dataset}\n{cfg.review_seed}\n".encode())
    for src in sources:
        digest.update(src.encode())
    page_id = f"{dataset}-{digest.hexdigest()[:12]}"
    key = {"page_id": page_id, "dataset": dataset, "seed": cfg.review_seed, "positive": "synthetic",
           "gans": sorted({g.name for g in gans}), "n_items": len(items),
           "items": {it.item_id: {"truth": it.truth, "class": it.cls, "source_id": it.source_id, "gan": it.gan}
                     for it in items}}
    html_text = render("review.html.j2", unavailable=None, dataset=dataset, display_px=cfg.review_display_px,
                       pixelated=cfg.review_upscale == "pixelated", percentiles=percentiles,
                       config={"pageId": page_id, "dataset": dataset, "displayPx": cfg.review_display_px,
                               "items": [{"id": it.item_id, "src": s} for it, s in zip(items, sources)]})
    return html_text, key


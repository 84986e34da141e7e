"""The blinded real-or-synthetic review page and its answer key.

Items are a seeded, balanced draw: per class as many real held-out (test split) images as synthetic
(kept) ones, classes as even as the images allow, then shuffled and numbered item_001, item_002, ...
in display order. Every image, real or synthetic, goes through the same display path (same windowing,
same size, nearest-neighbour only) and the same PNG encoder with compression off, so the page's bytes
carry no trace of an image's origin: no names, no metadata, equal data-URI lengths. The truth lives
only in ``review_key.json``, which the page never references.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import numpy as np

from pipeline.data.cache import SplitArrays
from pipeline.errors import DataError
from pipeline.report.config import ReportConfig
from pipeline.report.html import esc, page
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
    windowing = ("Mammogram patches are shown with a per-patch contrast stretch "
                 f"(grey levels between percentile {percentiles[0]:g} and percentile {percentiles[1]:g} of each patch "
                 "spread over black to white), the same for every image. ") if percentiles else ""
    html_text = render(dataset, page_id, [{"id": it.item_id, "src": s} for it, s in zip(items, sources)],
                       cfg.review_display_px, cfg.review_upscale, windowing)
    return html_text, key


def render(dataset: str, page_id: str, items: list[dict], display_px: int, upscale: str, windowing: str) -> str:
    config = {"pageId": page_id, "dataset": dataset, "displayPx": display_px, "items": items}
    # "</" cannot appear in JSON text we make, but escape it anyway so no data can close the script element
    payload = json.dumps(config, separators=(",", ":")).replace("</", "<\\/")
    rendering = "pixelated" if upscale == "pixelated" else "auto"
    body = f"""
<h1>Blinded review: {esc(dataset)}</h1>
<p class="lead">Each image is either a <b>real</b> held-out image or a <b>synthetic</b> one made by a GAN;
about half are synthetic. Decide which, say how sure you are (1 = guessing, 5 = certain) and add a comment if
something gives it away. Your answers stay in this browser until you export them.</p>
<details><summary>How to use this page</summary><p>Keys: <b>R</b> real, <b>S</b> synthetic, <b>1</b>&ndash;<b>5</b>
confidence, <b>&rarr;</b>/<b>Enter</b> next, <b>&larr;</b> previous (not while typing a comment). Images are shown at
{display_px} px, enlarged {"without smoothing, so each original pixel is a block" if rendering == "pixelated" else
"with smoothing"}. {esc(windowing)}When you are done, press <b>Export answers (CSV)</b> and send the file back.
Closing the page keeps your answers in this browser; clearing the browser's data deletes them.</p></details>
<div class="bar">
 <label>Your name <input id="reader" autocomplete="name" placeholder="e.g. Dr A. Smith"></label>
 <span id="progress" aria-live="polite"></span>
 <span id="answered"></span>
 <button id="export" type="button">Export answers (CSV)</button>
</div>
<p id="storage-warning" class="warn" hidden>This browser does not keep answers for this page: export them
before you close it.</p>
<section id="card" class="card">
 <div class="frame"><img id="image" alt="review image" width="{display_px}" height="{display_px}"></div>
 <div class="controls">
  <div class="choice" role="group" aria-label="real or synthetic">
   <button id="answer-real" type="button" data-answer="real">Real</button>
   <button id="answer-synthetic" type="button" data-answer="synthetic">Synthetic</button>
  </div>
  <fieldset class="confidence"><legend>Confidence</legend>
   {"".join(f'<label><input type="radio" name="confidence" value="{v}"> {v}</label>' for v in range(1, 6))}
   <span class="hint">1 = guessing &middot; 5 = certain</span></fieldset>
  <label class="comment">Comment (optional)<textarea id="comment" rows="3"
   placeholder="What made you decide?"></textarea></label>
  <div class="nav"><button id="prev" type="button">&larr; Previous</button>
   <button id="next" type="button">Next &rarr;</button></div>
  <p id="status" class="status"></p>
 </div>
</section>
<section id="done" class="card done" hidden><h2>All images answered</h2>
 <p>Thank you. Press <b>Export answers (CSV)</b> above and send the file to the study team.
 You can still go back and change an answer.</p><button id="back" type="button">Back to the images</button></section>
<script type="application/json" id="config">{payload}</script>
"""
    css = REVIEW_CSS.replace("DISPLAY_PX", str(display_px)).replace("RENDERING", rendering)
    return page(f"Blinded review: {dataset}", body, css=css, script=REVIEW_JS,
                banner="Research study page: some images are SYNTHETIC. Not for diagnosis.")


REVIEW_CSS = """
main{max-width:980px}
.lead{max-width:760px}
.bar{display:flex;flex-wrap:wrap;gap:14px;align-items:center;background:#fff;border:1px solid #ccd;border-radius:6px;
 padding:8px 12px;margin:10px 0}
.bar input{font:inherit;padding:4px 6px;width:200px}
#progress{font-weight:700;font-size:1.1em}
#answered{color:#555}
#export{margin-left:auto}
button{font:inherit;padding:6px 14px;border:1px solid #889;border-radius:5px;background:#f4f4f8;cursor:pointer}
button:hover{background:#e8e8f0}
button:disabled{opacity:.45;cursor:default}
.card{display:flex;flex-wrap:wrap;gap:22px;background:#fff;border:1px solid #ccd;border-radius:8px;padding:16px}
.frame{width:DISPLAY_PXpx;height:DISPLAY_PXpx;background:#000;flex:none}
#image{width:DISPLAY_PXpx;height:DISPLAY_PXpx;image-rendering:RENDERING;display:block}
.controls{flex:1;min-width:260px;display:flex;flex-direction:column;gap:14px}
.choice{display:flex;gap:10px}
.choice button{flex:1;font-size:1.15em;padding:12px 0}
.choice button.selected{background:#1565c0;color:#fff;border-color:#0d47a1}
fieldset{border:1px solid #ccd;border-radius:6px}
.confidence label{margin-right:12px;font-size:1.1em;cursor:pointer}
.hint{display:block;color:#666;font-size:.85em;margin-top:4px}
.comment{display:flex;flex-direction:column;gap:4px}
.comment textarea{font:inherit;width:100%}
.nav{display:flex;justify-content:space-between}
.status{color:#b71c1c;min-height:1.4em;margin:0}
.warn{color:#b71c1c}
.done{flex-direction:column;gap:6px}
.done h2{border:0;margin:0;padding:0}
.done button{align-self:flex-start}
"""

# The page's behaviour. State lives in localStorage under "medsynth-review:<pageId>".
REVIEW_JS = r"""
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("config").textContent);
  var items = cfg.items, storeKey = "medsynth-review:" + cfg.pageId, storage = null;
  try {
    localStorage.setItem(storeKey + ":probe", "1");
    localStorage.removeItem(storeKey + ":probe");
    storage = localStorage;
  } catch (e) { document.getElementById("storage-warning").hidden = false; }
  var state = { reader: "", pos: 0, answers: {} };
  if (storage) {
    try { var saved = JSON.parse(storage.getItem(storeKey)); if (saved && saved.answers) state = saved; } catch (e) {}
  }
  var $ = function (id) { return document.getElementById(id); };
  var img = $("image"), reader = $("reader"), comment = $("comment");

  function save() { if (storage) { try { storage.setItem(storeKey, JSON.stringify(state)); } catch (e) {} } }
  function current() { return items[state.pos]; }
  function entry() { var id = current().id; return state.answers[id] || (state.answers[id] = {}); }
  function nAnswered() {
    return items.filter(function (it) { var a = state.answers[it.id]; return a && a.answer && a.confidence; }).length;
  }
  function touch(e) { e.timestamp = new Date().toISOString(); save(); }

  function show() {
    var it = current(), a = state.answers[it.id] || {};
    img.src = it.src;
    $("progress").textContent = (state.pos + 1) + " / " + items.length;
    $("answered").textContent = nAnswered() + " answered";
    ["real", "synthetic"].forEach(function (v) {
      var b = $("answer-" + v);
      b.classList.toggle("selected", a.answer === v); b.setAttribute("aria-pressed", a.answer === v);
    });
    document.querySelectorAll("input[name=confidence]").forEach(function (r) {
      r.checked = String(a.confidence) === r.value;
    });
    comment.value = a.comment || "";
    $("prev").disabled = state.pos === 0;
    $("next").textContent = state.pos === items.length - 1 ? "Finish" : "Next \u2192";
    $("status").textContent = "";
  }

  function answer(v) { var e = entry(); e.answer = v; touch(e); show(); }
  function confidence(v) { var e = entry(); e.confidence = Number(v); touch(e); show(); }
  function go(delta) {
    var a = state.answers[current().id] || {};
    if (delta > 0 && !(a.answer && a.confidence)) {
      $("status").textContent = "Choose real or synthetic and a confidence first."; return;
    }
    if (delta > 0 && state.pos === items.length - 1) { finish(); return; }
    state.pos = Math.max(0, Math.min(items.length - 1, state.pos + delta)); save(); show();
  }
  function finish() {
    var missing = items.filter(function (it) {
      var a = state.answers[it.id]; return !(a && a.answer && a.confidence);
    });
    if (missing.length) { state.pos = items.indexOf(missing[0]); save(); show();
      $("status").textContent = missing.length + " image(s) still unanswered; this is the first."; return; }
    $("card").hidden = true; $("done").hidden = false;
  }

  function csvCell(v) {
    v = v == null ? "" : String(v);
    if (/^[=+\-@\t\r]/.test(v)) v = "'" + v;  // keep spreadsheets from running a comment as a formula
    return /[",\n\r]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
  }
  function exportCsv() {
    var name = reader.value.trim();
    if (!name) {
      reader.focus(); $("status").textContent = "Type your name before exporting.";
      alert("Please type your name first."); return;
    }
    var rows = [["reader", "item", "answer", "confidence", "comment", "timestamp", "page_id"]];
    items.forEach(function (it) {
      var a = state.answers[it.id] || {};
      rows.push([name, it.id, a.answer || "", a.confidence || "", a.comment || "", a.timestamp || "", cfg.pageId]);
    });
    var text = rows.map(function (r) { return r.map(csvCell).join(","); }).join("\r\n") + "\r\n";
    var link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
    link.download = ("review_" + cfg.dataset + "_" + name).replace(/[^A-Za-z0-9_-]+/g, "_") + ".csv";
    document.body.appendChild(link); link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  }

  $("answer-real").onclick = function () { answer("real"); };
  $("answer-synthetic").onclick = function () { answer("synthetic"); };
  document.querySelectorAll("input[name=confidence]").forEach(function (r) {
    r.onchange = function () { confidence(r.value); };
  });
  comment.oninput = function () { var e = entry(); e.comment = comment.value; touch(e); };
  reader.value = state.reader || "";
  reader.oninput = function () { state.reader = reader.value; save(); };
  $("prev").onclick = function () { go(-1); };
  $("next").onclick = function () { go(1); };
  $("export").onclick = exportCsv;
  $("back").onclick = function () { $("done").hidden = true; $("card").hidden = false; show(); };
  document.addEventListener("keydown", function (ev) {
    var tag = (ev.target && ev.target.tagName) || "";
    if (tag === "TEXTAREA" || (tag === "INPUT" && ev.target.type !== "radio")) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var k = ev.key.toLowerCase();
    if (k === "r") answer("real"); else if (k === "s") answer("synthetic");
    else if ("12345".indexOf(k) >= 0 && k.length === 1) confidence(k);
    else if (k === "arrowright" || k === "enter") go(1); else if (k === "arrowleft") go(-1); else return;
    ev.preventDefault();
  });
  show();
})();
"""

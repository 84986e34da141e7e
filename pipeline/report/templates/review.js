// The blinded review page's behaviour, inlined into review.html by review.html.j2. Its settings come from
// the JSON element #config; answers live in localStorage under "medsynth-review:<pageId>".
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

"""Small HTML building blocks shared by the report and the review page: one file, inline CSS, no network.

Everything that comes from data (class names, ids, numbers) goes through :func:`esc`.
"""
from __future__ import annotations

import html
from typing import Iterable

from pipeline.report.inputs import Unavailable

NOT_FOR_DIAGNOSIS = ("SYNTHETIC IMAGES: research material only, NOT FOR DIAGNOSIS. "
                     "Every generated image in this report is labelled SYNTHETIC.")

BASE_CSS = """
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 color:#1d1d1f;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:8px 20px 60px}
h1{font-size:1.6em;margin:.6em 0 .2em}
h2{font-size:1.3em;margin:1.8em 0 .5em;padding-top:.4em;border-top:2px solid #ddd}
[id]{scroll-margin-top:48px}
nav.toc{font-size:.92em;margin:.2em 0 1em}
nav.toc a{color:#1565c0;margin-right:.9em;text-decoration:none}
h3{font-size:1.12em;margin:1.3em 0 .4em}
h4{font-size:1em;margin:1em 0 .4em;color:#333}
.summary h2{border:0;margin-top:.3em}
.banner{position:sticky;top:0;z-index:10;background:#b71c1c;color:#fff;font-weight:700;text-align:center;
 padding:8px 12px;letter-spacing:.02em;box-shadow:0 1px 4px rgba(0,0,0,.3)}
.summary{background:#fff;border:1px solid #ccd;border-left:6px solid #1565c0;border-radius:6px;padding:10px 18px}
.summary li{margin:.3em 0}
.warning{background:#fff3e0;border:1px solid #ffb74d;border-left:6px solid #ef6c00;border-radius:6px;
 padding:8px 14px;margin:10px 0}
.unavailable{color:#6d4c41;background:#f5f5f5;border:1px dashed #bbb;border-radius:6px;padding:8px 14px}
.caption,.meaning{color:#555;font-size:.9em}
.ref{color:#666;font-size:.8em;white-space:nowrap}
table{border-collapse:collapse;margin:.5em 0;background:#fff}
th,td{border:1px solid #ddd;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f0f0f4}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.up{color:#1b5e20}.down{color:#b71c1c}
.pairs{display:flex;flex-wrap:wrap;gap:12px}
.pair{background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px;margin:0;width:min-content}
.pair .imgs{display:flex;gap:4px}
.pair figcaption{font-size:.82em;color:#444;margin-top:3px}
img.thumb{display:block;image-rendering:pixelated}
img.plot{max-width:100%;height:auto;background:#fff;border:1px solid #ddd}
pre{background:#f4f4f4;border:1px solid #ddd;padding:8px;overflow:auto;font-size:.85em}
details{margin:.4em 0}
code{font-size:.92em}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def fmt_ci(ci: tuple[float, float] | None, digits: int = 3, signed: bool = False) -> str:
    if ci is None:
        return "no interval"
    return f"{fmt(ci[0], digits, signed)} to {fmt(ci[1], digits, signed)}"


def unavailable(item: Unavailable | str) -> str:
    text = item.message() if isinstance(item, Unavailable) else item
    return f'<p class="unavailable">{esc(text)}</p>'


def table(header: Iterable[str], rows: Iterable[Iterable[str]], numeric: Iterable[int] = ()) -> str:
    """A table; cells are HTML already (escape data first). Columns in ``numeric`` are right-aligned."""
    numeric = set(numeric)
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, body: str, css: str = "", banner: str | None = NOT_FOR_DIAGNOSIS, script: str = "") -> str:
    """A complete HTML5 document with inline CSS (and script): it loads nothing from anywhere."""
    banner_html = f'<div class="banner" role="alert">{esc(banner)}</div>' if banner else ""
    script_html = f"<script>{script}</script>" if script else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{esc(title)}</title><style>{BASE_CSS}{css}</style></head>"
            f"<body>{banner_html}<main>{body}</main>{script_html}</body></html>\n")

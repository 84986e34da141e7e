"""The pages' HTML: Jinja2 templates in ``templates/`` and the number formats they use.

Every page is one self-contained file: the CSS and JavaScript files next to the templates are inlined
when a page is rendered (``inline("review.js")``), images are data URIs, nothing is fetched.
Autoescaping is on for every template, so data (class names, ids, comments) is escaped wherever it
lands; ``StrictUndefined`` makes a missing value an error instead of an empty string.
"""
from __future__ import annotations

import json
from functools import lru_cache, partial
from pathlib import Path

import jinja2
from markupsafe import Markup

from pipeline.report.inputs import Unavailable

TEMPLATES = Path(__file__).with_name("templates")


def fmt(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def fmt_ci(ci: tuple[float, float] | list[float] | None, digits: int = 3, signed: bool = False) -> str:
    if not ci:
        return "no interval"
    return f"{fmt(ci[0], digits, signed)} to {fmt(ci[1], digits, signed)}"


def p_value(value: float | None) -> str:
    return "–" if value is None else "<0.001" if value < 0.001 else f"{value:.3f}"


def nice(name: str) -> str:
    return name.replace("_", " ")


@lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(fmt=fmt, ci=fmt_ci, p=p_value, nice=nice)
    env.tests["unavailable"] = lambda value: isinstance(value, Unavailable)
    env.globals["inline"] = lambda name: _inline(env, name)
    env.policies["json.dumps_function"] = partial(json.dumps, default=_not_json)
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":")}  # |tojson: compact, and escapes < > & '
    return env


def _not_json(value: object) -> object:
    str(value)  # a missing value (StrictUndefined) raises UndefinedError here, naming it
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _inline(env: jinja2.Environment, name: str) -> Markup:
    """A CSS or JavaScript file of the templates folder, as is, to go inside <style> or <script>."""
    text = env.loader.get_source(env, name)[0]
    if "</style" in text.lower() or "</script" in text.lower():
        raise ValueError(f"{TEMPLATES / name}: would close its <style> or <script> element early")
    return Markup(text)


def render(template: str, **values: object) -> str:
    return environment().get_template(template).render(**values)

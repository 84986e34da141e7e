"""Typed loading of YAML mappings into dataclasses, with one-line errors (ground floor: no torch, no sections).

Every field is typed; ranges and choices live in ``field(metadata=...)`` next to the default, so a
dataclass is the single description of what its params.yaml section may hold. :func:`build` walks the
YAML tree against these types and stops at the first unknown key, wrong type or out-of-range value::

    ConfigError: params.yaml: datasets.mammography.resolution_px: 100 is not one of [32, 64, 128, 256]
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

import yaml

from pipeline.errors import ConfigError


def rng(lo: float | None = None, hi: float | None = None, **kw: Any) -> dict:
    """Metadata for a numeric field allowed in [lo, hi] (None = unbounded)."""
    return {"range": (lo, hi), **kw}


# ------------------------------------------------------------------------------------ loading
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (list, dict):
        return origin.__name__
    return getattr(tp, "__name__", str(tp))


def convert(value: Any, tp: Any, key: str, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return convert(value, inner[0], key, where)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {key}: {value!r} is not allowed; use one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key}: expected a mapping of {tp.__name__} keys, got {value!r}; "
                              "write its keys indented under it")
        return build(tp, value, key, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key}: expected a list, got {value!r}; write it as [a, b, ...]")
        return [convert(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key}: expected a mapping, got {value!r}; write it as {{key: value, ...}}")
        return {str(k): convert(v, args[1], f"{key}.{k}", where) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: expected true or false, got {value!r}; write true or false "
                              "without quotes")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key}: expected an integer, got {value!r}; write a whole number "
                              "without quotes")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key}: expected a number, got {value!r}; write a number without quotes")
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: {key}: {value!r} is not a finite number; give a finite value")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key}: expected a string, got {value!r}; put the value in quotes")
        return value
    return value


def _check_meta(value: Any, meta: typing.Mapping, key: str, where: str) -> None:
    if value is None:
        return
    if "range" in meta:
        lo, hi = meta["range"]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            lo_s = "-inf" if lo is None else lo
            hi_s = "inf" if hi is None else hi
            raise ConfigError(f"{where}: {key}: {value!r} is out of range; allowed [{lo_s}, {hi_s}]")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where}: {key}: {value!r} is not one of {meta['choices']}; use one of them")


def build(cls: type, data: dict, prefix: str = "", where: str = "params.yaml") -> Any:
    """Build dataclass ``cls`` from ``data``, naming ``prefix.key`` in every error."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        name = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{where}: {name}: unknown key; allowed keys: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        converted = convert(value, hints[name], key, where)
        _check_meta(converted, fields[name].metadata, key, where)
        kwargs[name] = converted
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(prefix, where)
    return obj


def check_duplicate_keys(node: yaml.Node | None, where: str, prefix: str = "") -> None:
    """Stop on a key written twice in one mapping: YAML keeps the last value without a word, so
    ``resolution_px: 64`` followed by ``resolution_px: 32`` would silently run at 32 px."""
    if isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            check_duplicate_keys(child, where, f"{prefix}[{i}]")
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        name = f"{prefix}.{key}" if prefix else key
        line = key_node.start_mark.line + 1
        if key != "<<" and key in seen:
            raise ConfigError(f"{where} line {line}: {name}: key written twice (lines {seen[key]} and {line}), "
                              "YAML would keep only the last value; delete one of them")
        seen[key] = line
        check_duplicate_keys(value_node, where, name)

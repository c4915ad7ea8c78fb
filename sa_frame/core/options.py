"""Typed options of a plugin (an estimator's or an analysis'): a dataclass whose fields are made with
`option(default, help)`, set from ``key=value`` strings or a mapping, checked by the type of each default, with
unknown keys named next to the closest valid one."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from sa_frame.core.errors import UsageError, did_you_mean


@dataclasses.dataclass
class NoOptions:
    """A plugin without options."""


def option(default: Any, help: str = "") -> Any:  # noqa: A002 - the word users see
    """A field of an Options dataclass with the help that ``--options`` listings show."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.copy(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def option_help(options_type: type) -> dict[str, str]:
    """{option: help text} of an Options dataclass."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(options_type)}


def option_defaults(options_type: type) -> dict[str, Any]:
    """{option: default value} of an Options dataclass."""
    return {f.name: _default(f) for f in dataclasses.fields(options_type)}


def parse_pairs(pairs: Sequence[str], owner: str, options_type: type | None = None) -> dict[str, Any]:
    """``["key=value", ...]`` -> {key: YAML-parsed value} (``-`` in keys read as ``_``)."""
    names = [f.name for f in dataclasses.fields(options_type)] if options_type is not None else []
    listing = f"; options of {owner}: {', '.join(names) or '(none)'}" if options_type is not None else ""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"option {pair!r} of {owner} must be key=value{listing}")
        try:
            values[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            values[key] = text
    return values


def make_options(options_type: type, values: Mapping[str, Any], owner: str) -> Any:
    """An instance of `options_type` from a mapping, each value checked against its default's type."""
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    values = {str(key).replace("-", "_"): value for key, value in values.items()}
    unknown = [key for key in values if key not in fields]
    if unknown:
        raise UsageError(f"{owner}: unknown options {unknown}{did_you_mean(unknown[0], fields)}; allowed: "
                         f"{', '.join(fields) or '(none)'}")
    return options_type(**{key: coerce(owner, key, value, fields[key]) for key, value in values.items()})


def options_dict(options: Any) -> dict[str, Any]:
    """Plain {option: value} of an Options instance (tuples as lists, for YAML/JSON)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(options).items()}


def _default(field: dataclasses.Field) -> Any:
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]


def coerce(owner: str, key: str, value: Any, field: dataclasses.Field) -> Any:
    """`value` as the type of the field's default (None allowed where the default is None)."""
    default = _default(field)
    where = f"option {key!r} of {owner}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise UsageError(f"{where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UsageError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, (list, tuple)):
        items = value if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        kind = type(default[0]) if default else None
        if kind in (int, float):
            try:
                items = [kind(v) for v in items]
            except (TypeError, ValueError):
                raise UsageError(f"{where} must be a comma-separated list of numbers, got {value!r}") from None
        return tuple(items) if isinstance(default, tuple) else list(items)
    if value is None:
        return None
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise UsageError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    return str(value)

"""Settings files of the shells (``bigbird batch``, ``bigbird serve``, ``bigbird finetune``): one YAML reader,
one ``--override section.key=value`` parser and one pydantic error formatter, so that every shell reads its
files and names a bad value the same way. Plain PyYAML and pydantic; no Ray.

A shell turns a file (or a dict) into its pydantic model with :func:`load_settings`::

    settings = load_settings(JobSettings, "job.yaml", ["train.lr=3e-4"], what="job file")

or, when it merges values of its own (flags, a Serve config's ``args``) in between, with the pieces:
:func:`read_yaml`, :func:`apply_overrides` and :func:`validate`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path, *, what: str = "settings file", holds: str = "settings") -> dict[str, Any]:
    """The mapping a YAML file holds (``{}`` for an empty file).

    Args:
        path: The file.
        what: What the file is, for the messages (``"job file"``, ``"config file"``).
        holds: What the mapping holds, for the message when it is not one (``"sections"``).

    Raises:
        FileNotFoundError: If the file does not exist (``no such job file: 'x.yaml'``).
        ValueError: If it is not valid YAML (with the parser's first line) or holds no mapping.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such {what}: {str(p)!r}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a {what} must be a mapping of {holds}, got {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """``'train.epochs=3'`` -> ``(['train', 'epochs'], 3)``; the value is read as YAML (empty: None). YAML
    reads ``1e-3`` as a string (``1.0e-3`` is a float); pydantic converts either for a float field.

    Raises:
        ValueError: Without ``=``, or with an empty key or key part.
    """
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not key.strip() or any(not p for p in parts):
        raise ValueError(f"override {item!r} must look like section.key=value (e.g. train.lr=1e-3)")
    return parts, yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with each dotted ``key=value`` set, creating sections as needed; ``data`` and the
    sections in it are left unchanged.

    Raises:
        ValueError: If an override is malformed or names a section that holds a value.
    """
    out = dict(data)
    for item in overrides:
        path, value = parse_override(item)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, Mapping):
                raise ValueError(f"override {item!r}: {part!r} is a value, not a section")
            node[part] = child = dict(child)
            node = child
        node[path[-1]] = value
    return out


def format_errors(error: ValidationError, *, show_input: bool = False) -> str:
    """A pydantic error as one line, a clause per bad field: ``data.stride: ...; train.lr: ...``.

    Args:
        error: The error.
        show_input: Add the rejected value to each clause (``port: ... (got 70000)``).
    """
    parts = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if show_input and e["type"] != "missing":
            msg += f" (got {json.dumps(e['input'], default=str)[:80]})"
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def validate(model: type[M], data: Any, *, what: str = "settings", show_input: bool = False) -> M:
    """``model`` validated from a mapping.

    Raises:
        ValueError: ``invalid {what}: ...`` naming every bad field (see :func:`format_errors`), or naming the
            type of ``data`` when it is not a mapping.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} must be a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(dict(data))
    except ValidationError as e:
        raise ValueError(f"invalid {what}: {format_errors(e, show_input=show_input)}") from None


def load_settings(model: type[M], path: str | Path | None = None, overrides: Sequence[str] = (), *,
                  data: Mapping[str, Any] | None = None, what: str = "settings file",
                  holds: str = "settings") -> M:
    """Read a YAML file (or take ``data``), apply ``overrides`` and validate as ``model``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: Without a path or data, for malformed YAML or overrides, or for invalid settings
            (``invalid settings: ...``, one clause per bad field).
    """
    if data is None:
        if path is None:
            raise ValueError("pass a YAML path or a settings dict")
        data = read_yaml(path, what=what, holds=holds)
    return validate(model, apply_overrides(data, overrides))

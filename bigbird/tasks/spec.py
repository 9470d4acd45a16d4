"""What a task is, in one place: :class:`TaskSpec` (name, aliases, model and pipeline classes, parameters with
their defaults, batch result columns, command-line help).

Each ``bigbird/tasks/<task>.py`` exports one ``SPEC``; :mod:`bigbird.tasks` keeps the registry. The service's
request models, the ``bigbird`` command's flags and help, the batch job's result schema and the training
task table are all generated from the specs, so a default or an alias is written once.

A task's parameters are a dataclass whose fields carry their own description and limits in ``metadata``:

- ``help``: one line for the HTTP API documentation (and the command line unless ``cli`` says otherwise);
- ``ge`` / ``le``: the bounds the HTTP API enforces (the Python pipeline checks only what it must);
- ``cli``: the ``--flag``'s help text, or ``True`` to reuse ``help``; fields without it get no flag.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

DEFAULT_STRIDE = 128  # tokens shared by consecutive windows of a long input, everywhere a stride is a default
# Columns every batch result row has, whatever the task.
COMMON_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("id", pa.string()), ("error", pa.string()), ("num_windows", pa.int64()), ("num_tokens", pa.int64()),
    ("padding_tokens", pa.int64()))


@dataclass(frozen=True)
class TaskSpec:
    """One task.

    Attributes:
        name: The task's name (``text-classification``), as transformers spells it.
        summary: One line: what the task does (command help, API summary).
        model_class: The model (head) class the task loads.
        pipeline_class: Its :class:`~bigbird.tasks.base.TaskPipeline` subclass.
        params: The dataclass of its call parameters; ``params()`` holds the only copy of the defaults.
        aliases: Other names accepted for the task (by the pipeline, the command line and the training job).
        train_name: The name of the task in training job files (``masked-lm`` for ``fill-mask``).
        columns: The batch job's result columns of the task (after :data:`COMMON_COLUMNS`); ``None`` if the
            batch job does not run it.
        to_row: ``to_row(result, params, offset)`` -> the task's result columns of one batch record.
        batch_params: Parameters the batch job always passes (its own, or overriding a pipeline default).
        examples: The command's ``examples:`` epilog.
    """

    name: str
    summary: str
    model_class: type
    pipeline_class: type
    params: type
    aliases: tuple[str, ...] = ()
    train_name: str = ""
    columns: tuple[tuple[str, pa.DataType], ...] | None = None
    to_row: Callable[[Any, Mapping[str, Any], int | None], dict[str, Any]] | None = None
    batch_params: Mapping[str, Any] = field(default_factory=dict)
    examples: str = ""

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.params):
            raise TypeError(f"{self.name}: params must be a dataclass, got {self.params!r}")
        if not self.train_name:
            object.__setattr__(self, "train_name", self.name)

    @property
    def names(self) -> tuple[str, ...]:
        """The name, the training name and the aliases (each once)."""
        return tuple(dict.fromkeys((self.name, self.train_name, *self.aliases)))

    def defaults(self) -> dict[str, Any]:
        """The parameters' defaults as a new dict."""
        return dataclasses.asdict(self.params())

    def fields(self) -> list[ParamField]:
        """The parameters with their resolved types, defaults and metadata, in declaration order."""
        hints = typing.get_type_hints(self.params, include_extras=True)
        defaults = self.defaults()
        return [ParamField(f.name, hints[f.name], defaults[f.name], dict(f.metadata))
                for f in dataclasses.fields(self.params)]

    def result_schema(self, keep_columns: tuple[tuple[str, str], ...] = ()) -> pa.Schema:
        """The batch result table's schema: common columns, the task's, then kept input columns (strings)."""
        if self.columns is None:
            raise ValueError(f"the batch job does not run {self.name}")
        return pa.schema([*COMMON_COLUMNS, *self.columns, *[(dst, pa.string()) for _, dst in keep_columns]])

    def row(self, result: Any, params: Mapping[str, Any] | None = None, offset: int | None = None) -> dict[str, Any]:
        """The task's result columns of one record (:attr:`to_row` with the merged parameters)."""
        if self.to_row is None:
            raise ValueError(f"the batch job does not run {self.name}")
        return self.to_row(result, {**self.defaults(), **self.batch_params, **(params or {})}, offset)


@dataclass(frozen=True)
class ParamField:
    """One task parameter: name, type (with ``Literal`` choices), default and metadata (``help``, ``ge`` ...)."""

    name: str
    type: Any
    default: Any
    metadata: dict[str, Any]

    @property
    def choices(self) -> tuple[Any, ...] | None:
        """The allowed values of a ``Literal`` parameter (``None`` dropped), else ``None``."""
        for arg in (self.type, *typing.get_args(self.type)):
            if typing.get_origin(arg) is typing.Literal:
                return tuple(a for a in typing.get_args(arg) if a is not None)
        return None

    @property
    def cli_help(self) -> str | None:
        text = self.metadata.get("cli")
        if text is True:
            return f"{self.metadata.get('help', self.name)} (default {self.default})"
        return text or None


def param(default: Any = dataclasses.MISSING, *, help: str, cli: str | bool | None = None,  # noqa: A002
          default_factory: Any = dataclasses.MISSING, **limits: Any) -> Any:
    """A parameter field: ``top_k: int = param(5, help="Candidates per mask", ge=1, le=1000, cli=True)``."""
    metadata = {"help": help, **limits, **({"cli": cli} if cli is not None else {})}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def result_columns(specs: Mapping[str, TaskSpec] | list[TaskSpec]) -> frozenset[str]:
    """Every column name a batch result can have (common ones and every task's)."""
    values = specs.values() if isinstance(specs, Mapping) else specs
    return frozenset(name for name, _ in COMMON_COLUMNS) | frozenset(
        name for s in values for name, _ in (s.columns or ()))

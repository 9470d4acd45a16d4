"""What every ``bigbird`` command shares: the exit-status rule, one-line errors, ``BIGBIRD_DEBUG``, and the
discovery of the Ray commands (``batch``, ``serve``, ``finetune``) through entry points.

The core imports nothing of the Ray layers: each registers ``NAME = "module:main"`` in the
``bigbird.commands`` entry-point group (``pyproject.toml``), and ``bigbird NAME ...`` loads it when run.

Exit status, for every command (the shells call :func:`fail` so that they agree):

- 0: success;
- 1: the command could not be carried out (missing file or model, unusable input, a failed run);
- 2: the command line or the settings are wrong (:class:`UsageError`, a pydantic ``ValidationError``);
- 130: interrupted (Ctrl-C, SIGINT);
- 143: stopped by SIGTERM (``bigbird serve``: 128 + the signal, like 130).
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TextIO

GROUP = "bigbird.commands"
# One-line help of the Ray commands known to ship with bigbird; other registered commands get a generic line.
SUMMARIES = {
    "batch": "run a task over a dataset with Ray Data",
    "serve": "serve task pipelines over HTTP with Ray Serve",
    "finetune": "fine-tune a model with Ray Train",
}


class UsageError(Exception):
    """The command line is wrong (exit status 2)."""


class CommandError(Exception):
    """The command could not be carried out (exit status 1)."""


def debug_enabled() -> bool:
    """``BIGBIRD_DEBUG`` set to anything but empty, ``0``, ``false`` or ``no``: show tracebacks."""
    return os.environ.get("BIGBIRD_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _is_validation_error(error: BaseException) -> bool:
    return type(error).__name__ == "ValidationError" and callable(getattr(error, "errors", None))


def exit_status(error: BaseException) -> int:
    """The exit status of a command that raised ``error`` (see the module docstring)."""
    if isinstance(error, KeyboardInterrupt):
        return 130
    if isinstance(error, UsageError) or _is_validation_error(error):
        return 2
    return 1


EXPECTED = (UsageError, CommandError, ValueError, TypeError, OSError)  # shown without their class name


def one_line(error: BaseException) -> str:
    """An error as one line; a pydantic ``ValidationError`` as ``field.path: message; ...``."""
    if _is_validation_error(error):
        parts = [f"{'.'.join(map(str, e.get('loc', ()))) or 'settings'}: {e.get('msg', 'invalid')}"
                 for e in error.errors()]  # type: ignore[attr-defined]
        return "; ".join(parts)
    text = re.sub(r"\s*\n\s*", " ", str(error)).strip()
    if isinstance(error, EXPECTED):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def fail(prog: str, error: BaseException, *, status: int | None = None, stderr: TextIO | None = None) -> int:
    """Report a failed command the one way: ``PROG: error: ONE LINE`` on stderr (after the traceback when
    :func:`debug_enabled`; a hint to set it for an unexpected error), and return its exit status.

    Args:
        prog: The command (``bigbird batch``).
        error: What it raised.
        status: Override of :func:`exit_status`.
        stderr: Where to write (default ``sys.stderr``).
    """
    stderr = sys.stderr if stderr is None else stderr
    code = exit_status(error) if status is None else status
    if isinstance(error, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=stderr)
        return code
    debug = debug_enabled()
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__, file=stderr)
    expected = isinstance(error, EXPECTED) or _is_validation_error(error)
    hint = "" if debug or expected else " (BIGBIRD_DEBUG=1 shows the traceback)"
    print(f"{prog}: error: {one_line(error)}{hint}", file=stderr)
    return code


# ------------------------------------------------------------------------------------ Ray commands
def _source_tree_commands() -> list[EntryPoint]:
    """The group as the source checkout's ``pyproject.toml`` declares it, for a checkout whose installed
    metadata predates the group (run from source, or ``pip install -e .`` not yet re-run)."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        return []
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        return []
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, ValueError):
        return []
    if project.get("name") != "bigbird":
        return []
    group = project.get("entry-points", {}).get(GROUP, {})
    return [EntryPoint(name, value, GROUP) for name, value in group.items() if isinstance(value, str)]


def ray_commands() -> dict[str, EntryPoint]:
    """The registered Ray commands, ``name -> entry point`` (``module:function``), sorted by name."""
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if not found:
        found = {ep.name: ep for ep in _source_tree_commands()}
    return dict(sorted(found.items()))


def summary(name: str) -> str:
    """The one-line help of a Ray command."""
    return f"{SUMMARIES.get(name, 'a Ray command')} (options: bigbird {name} --help)"

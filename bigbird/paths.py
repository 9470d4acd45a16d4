"""Where a shell's path settings point, locally and under ``ray job submit``: one rule for every shell. No Ray.

:func:`resolve_path` is the rule:

- a URI (``s3://``, ``gs://``, ...) is returned unchanged; ``file:///abs`` becomes the local path ``/abs``
  (storage every node mounts at the same place);
- an absolute path (``~`` expanded) is returned as it is;
- a relative path is resolved against ``base_dir`` when one is given (``--base-dir "$PWD"``: the submitter's
  directory, on a local cluster or a filesystem every node shares), else against the current directory, except
  under ``ray job submit`` (:func:`job_submitted`): there the current directory is Ray's temporary copy of the
  uploaded working dir, without its ``.gitignore``'d files (``data/``, ``outputs/``) and deleted with the job.
  An input that came with the upload is resolved against it; any other relative path is refused with a
  :class:`RelativePathError` naming what to pass instead, before the job does any work.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

# The variable Ray's job supervisor sets on the driver of a submitted job (ray._private.runtime_env.constants,
# Ray 2.x): the job's runtime env and metadata (``job_submission_id``) as JSON. A plain ``python script.py``
# driver, Ray workers and ``ray.init`` do not set it.
JOB_CONFIG_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class RelativePathError(ValueError):
    """A relative path that cannot work where the job runs; the message says what to pass instead."""


def is_uri(path: str) -> bool:
    """``scheme://...`` (``s3://``, ``gs://``, ``file://``, ``hf://``): a URI, not a local path."""
    return bool(_URI.match(path))


def job_submitted(environ: Mapping[str, str] | None = None) -> str | None:
    """The submission id when this process is the driver of a ``ray job submit`` job, else None."""
    raw = (os.environ if environ is None else environ).get(JOB_CONFIG_VAR)
    if not raw:
        return None
    try:
        metadata = json.loads(raw).get("metadata") or {}
    except (ValueError, AttributeError):
        return None
    return str(metadata.get("job_submission_id") or "submitted-job")


def _local(path: str) -> str | None:
    """``file:///abs`` -> ``/abs``; None for other URIs."""
    parsed = urlparse(path)
    if parsed.scheme != "file":
        return None
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(f"file URI {path!r} names a host ({parsed.netloc!r}); use file:///absolute/path")
    return unquote(parsed.path)


def resolve_path(path: str, *, setting: str, output: bool = False, base_dir: str | None = None,
                 fix: str | None = None, base_option: str | None = "--base-dir",
                 environ: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None) -> str:
    """The path a setting means, by the rule in the module docstring.

    Args:
        path: The value as given (a path or a URI).
        setting: Its name in messages (``data.train``, ``--output``).
        output: Whether the job writes there (an output is never looked for in the uploaded working dir).
        base_dir: Resolve relative paths against this absolute folder (the submitter's directory).
        fix: How to pass the value on the command line, with ``{path}`` for the value (default:
            ``--override SETTING={path}``).
        base_option: The shell's option that sets ``base_dir``, suggested in the message (None: it has none).
        environ: The environment to look at (default ``os.environ``).
        cwd: The current directory (default ``os.getcwd()``).

    Raises:
        RelativePathError: A relative path under ``ray job submit`` that is not in the uploaded working dir.
        ValueError: A ``base_dir`` that is relative or does not exist here, or a ``file://`` URI with a host.
    """
    if is_uri(path):
        local = _local(path)
        return path if local is None else local
    p = Path(path).expanduser()
    if p.is_absolute():
        return str(p)
    here = Path(cwd if cwd is not None else os.getcwd())
    if base_dir is not None:
        base = Path(base_dir).expanduser()
        if not base.is_absolute():
            raise ValueError(f"--base-dir {base_dir!r} must be an absolute path (e.g. \"$PWD\")")
        if not base.is_dir():
            raise ValueError(f"--base-dir {base_dir!r} does not exist on this node ({os.uname().nodename}): "
                             "the driver runs where it cannot see the submitter's directory; pass absolute "
                             "paths on storage every node sees, or URIs (s3://, gs://)")
        return str((base / p).resolve())
    submission = job_submitted(environ)
    if submission is None:
        return str((here / p).resolve())
    if not output and (here / p).exists():  # it came with the uploaded working dir, on every node
        return str((here / p).resolve())
    why = ("results written there are deleted with the job" if output else
           "it is not in the uploaded working dir (.gitignore'd files such as data/ are not uploaded)")
    example = (fix or f"--override {setting}={{path}}").format(path=f'"$PWD/{path}"')
    base = (f", or add {base_option} \"$PWD\" to resolve every relative path against the submitting directory "
            "(a local cluster or a shared filesystem)") if base_option else ""
    raise RelativePathError(
        f"{setting} {path!r} is a relative path, and this job ({submission}) runs under `ray job submit` in "
        f"Ray's temporary copy of the working dir ({here}): {why}. Pass an absolute path on storage the "
        f"cluster's nodes see or a URI (s3://, gs://, file://), e.g. {example}{base}")

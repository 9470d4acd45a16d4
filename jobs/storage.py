"""Object storage for the fine-tuning and batch jobs: pyarrow filesystems built from the ``storage`` settings,
the runtime env that hands the same options to every worker, and copying a local folder to a URI.

The filesystem object is what carries the options to Ray Data's read tasks and Ray Train's checkpoint uploads
(it pickles with them); the runtime env's variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``) reach anything else
on the workers that builds its own client from the environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

from bigbird.paths import JOB_CONFIG_VAR, is_uri

if TYPE_CHECKING:
    from jobs.settings import StorageSettings

S3_SCHEMES = ("s3", "s3a")
GCS_SCHEMES = ("gs", "gcs")


def _split_endpoint(endpoint: str) -> tuple[str | None, str]:
    """``http://host:9000`` -> (``http``, ``host:9000``); no scheme -> (None, endpoint)."""
    parsed = urlparse(endpoint)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return parsed.scheme, parsed.netloc
    return None, endpoint.rstrip("/")


def filesystem(path: str, storage: StorageSettings) -> tuple[pafs.FileSystem | None, str]:
    """``(filesystem, path inside it)`` of a URI, built with the storage options; ``(None, path)`` for a
    local path (pyarrow's default local filesystem).

    Raises:
        ValueError: If pyarrow cannot open the URI's scheme (names the URI).
    """
    if not is_uri(path):
        return None, path
    parsed = urlparse(path)
    inner = parsed.netloc + parsed.path
    scheme, host = _split_endpoint(storage.endpoint) if storage.endpoint else (None, None)
    if parsed.scheme in S3_SCHEMES:
        kwargs: dict[str, Any] = {"anonymous": storage.anonymous, "region": storage.region}
        if host is not None:
            kwargs.update(endpoint_override=host, scheme=scheme or "https")
        return pafs.S3FileSystem(**{k: v for k, v in kwargs.items() if v is not None}), inner
    if parsed.scheme in GCS_SCHEMES:
        kwargs = {"anonymous": storage.anonymous}
        if host is not None:
            kwargs.update(endpoint_override=host, scheme=scheme or "https")
        return pafs.GcsFileSystem(**kwargs), inner
    try:
        return pafs.FileSystem.from_uri(path)
    except (OSError, ValueError, NotImplementedError) as e:
        raise ValueError(f"cannot open {path!r}: {e}") from None


def runtime_env(storage: StorageSettings, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The part of a Ray runtime env that gives every worker the storage options (``{}`` when none are set).

    Under ``ray job submit`` Ray merges it into the submitted runtime env, refusing a variable set in both:
    variables the submission sets (``--runtime-env-json``) are left to it.
    """
    env: dict[str, str] = {}
    if storage.endpoint:
        env["AWS_ENDPOINT_URL"] = storage.endpoint
    if storage.region:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = storage.region
    raw = (os.environ if environ is None else environ).get(JOB_CONFIG_VAR)
    if raw:
        try:
            submitted = (json.loads(raw).get("runtime_env") or {}).get("env_vars") or {}
        except (ValueError, AttributeError):
            submitted = {}
        env = {k: v for k, v in env.items() if k not in submitted}
    return {"env_vars": env} if env else {}


def upload_folder(local: str, uri: str, storage: StorageSettings) -> None:
    """Copy a local folder to ``uri`` (replacing files of the same names there)."""
    fs, inner = filesystem(uri, storage)
    if fs is None:
        raise ValueError(f"{uri!r} is not a URI")
    fs.create_dir(inner, recursive=True)
    pafs.copy_files(local, inner, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)

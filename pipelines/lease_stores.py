"""Where a batch job's lease lives: one small file with atomic (or, where the storage has none, best-effort)
create and compare-and-swap, per filesystem; :mod:`pipelines.lease` says what each guarantees."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, Protocol

import pyarrow.fs as pafs

from pipelines import errors

LEASE = "_bigbird_batch.lease"
SETTLE_S = 2.0  # stores without conditional writes: how long a new lease must survive before it counts

class Store(Protocol):
    """One lease file with atomic (or, where the storage has none, best-effort) create and compare-and-swap;
    a version is whatever identifies what :meth:`read` returned (its bytes, an ETag)."""

    def create(self, data: bytes) -> Any: ...  # the new version, None if a lease exists
    def read(self) -> tuple[bytes, Any] | None: ...
    def swap(self, version: Any, data: bytes) -> Any: ...  # the new version, None if no longer ``version``
    def take(self, version: Any, data: bytes) -> Any: ...  # swap for a stale lease
    def delete(self, version: Any) -> None: ...


class LocalStore:
    """A lease file on a local (or NFS) disk: ``O_EXCL`` create; takeover renames the stale file aside."""

    def __init__(self, path: str) -> None:
        self.path = path

    def create(self, data: bytes) -> Any:
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        except OSError as e:
            raise errors.WriteError(self.path, e) from e
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return data

    def read(self) -> tuple[bytes, Any] | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data, data

    def swap(self, version: Any, data: bytes) -> Any:
        current = self.read()
        if current is None or current[0] != version:
            return None
        temp = f"{self.path}.{uuid.uuid4().hex}"
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, self.path)
        return data

    def take(self, version: Any, data: bytes) -> Any:
        """Replace a stale lease: rename it aside (of jobs racing for it, one rename succeeds), check it is the
        one judged stale (else put it back), then create ours."""
        aside = f"{self.path}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return None
        with open(aside, "rb") as f:
            moved = f.read()
        if moved != version:  # renewed meanwhile: not stale after all
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            os.unlink(aside)
            return None
        os.unlink(aside)
        return self.create(data)

    def delete(self, version: Any) -> None:
        current = self.read()
        if current is not None and current[0] == version:
            os.unlink(self.path)


class S3Store:
    """A lease object on S3 through botocore's conditional ``PutObject`` (``IfNoneMatch``/``IfMatch``)."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key

    def _put(self, data: bytes, **condition: str) -> Any:
        from botocore.exceptions import ClientError

        try:
            done = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409", "404"):
                return None
            raise errors.WriteError(f"s3://{self.bucket}/{self.key}", OSError(f"{code}: {e}")) from e
        return done["ETag"]

    def create(self, data: bytes) -> Any:
        return self._put(data, IfNoneMatch="*")

    def read(self) -> tuple[bytes, Any] | None:
        from botocore.exceptions import ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code", "") in ("NoSuchKey", "404"):
                return None
            raise
        return got["Body"].read(), got["ETag"]

    def swap(self, version: Any, data: bytes) -> Any:
        return self._put(data, IfMatch=version)

    take = swap

    def delete(self, version: Any) -> None:
        current = self.read()
        if current is not None and current[1] == version:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)


class SettleStore:
    """A lease on a pyarrow filesystem without conditional writes: write if absent, then read back after
    ``settle`` seconds (the weaker protocol of the module docstring)."""

    def __init__(self, fs: pafs.FileSystem, path: str, settle: float = SETTLE_S) -> None:
        self.fs, self.path, self.settle = fs, path, settle

    def _write(self, data: bytes) -> None:
        with self.fs.open_output_stream(self.path) as f:
            f.write(data)

    def _settled(self, data: bytes) -> Any:
        time.sleep(self.settle)
        current = self.read()
        return data if current is not None and current[0] == data else None

    def create(self, data: bytes) -> Any:
        if self.read() is not None:
            return None
        self._write(data)
        return self._settled(data)

    def read(self) -> tuple[bytes, Any] | None:
        try:
            with self.fs.open_input_stream(self.path) as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data, data

    def swap(self, version: Any, data: bytes) -> Any:
        current = self.read()
        if current is None or current[0] != version:
            return None
        self._write(data)
        return data

    def take(self, version: Any, data: bytes) -> Any:
        return None if self.swap(version, data) is None else self._settled(data)

    def delete(self, version: Any) -> None:
        current = self.read()
        if current is not None and current[0] == version:
            self.fs.delete_file(self.path)


def _s3_client(storage: Any) -> Any | None:
    """A botocore S3 client with the storage options, or None when botocore is not importable."""
    try:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config
    except ImportError:
        return None
    kwargs: dict[str, Any] = {}
    if storage is not None and storage.endpoint:
        endpoint = storage.endpoint
        kwargs["endpoint_url"] = endpoint if "://" in endpoint else f"https://{endpoint}"
    if storage is not None and storage.region:
        kwargs["region_name"] = storage.region
    if storage is not None and storage.anonymous:
        kwargs["config"] = Config(signature_version=UNSIGNED)
    return boto3.session.Session().client("s3", **kwargs)


def store_for(fs: pafs.FileSystem, root: str, uri: str, storage: Any = None) -> Store:
    """The lease store of an output folder (``fs``, ``root``: its filesystem and path; ``uri`` as given)."""
    path = f"{root.rstrip('/')}/{LEASE}"
    if isinstance(fs, pafs.LocalFileSystem):
        return LocalStore(path)
    if isinstance(fs, pafs.S3FileSystem):
        client = _s3_client(storage)
        if client is not None:
            bucket, _, key = path.partition("/")
            return S3Store(client, bucket, key)
    return SettleStore(fs, path)

"""One writer per output folder: the batch job's lease, a small JSON file ``_bigbird_batch.lease`` in the folder.

A job takes the lease before it plans (an atomic create-if-absent), renews it from a thread on the driver every
``RENEW_S`` seconds while it runs, and deletes it at the end, also on failure or Ctrl-C. A second job finds it
and refuses at once, naming the holder (host, pid, start, last renewal). A lease not renewed for ``TTL_S``
seconds (its job was killed, its node lost) is taken over, and the takeover is reported; so is, at once, one
held by a process of this host that no longer runs. A job that finds its lease gone or someone else's when it
renews stops, and every result file is published only after checking the lease is still its own (a fence).

What each filesystem guarantees (the holder's clock and the taker's are assumed within ``TTL_S / 2``):

- local disks (and NFS v3+, which implements it on the server): ``O_CREAT | O_EXCL``, so two jobs that start at
  the same moment cannot both create it; a stale lease is taken over by renaming it aside (one rename of a
  name succeeds), then creating a new one. Renewal is read-compare-replace, not atomic: a holder that was
  frozen past ``TTL_S`` and wakes exactly as it is taken over can overwrite the taker's lease once; one of the
  two then finds the lease not its own at its next renewal (``RENEW_S``) and stops.
- ``s3://`` with boto3/botocore importable: S3's conditional writes, ``PutObject`` with ``If-None-Match: *``
  to create and ``If-Match: ETAG`` to renew or take over, so every change is a compare-and-swap (AWS S3 since
  2024, MinIO, moto; a store that ignores the headers degrades to the protocol below).
- other object stores (``gs://``, or ``s3://`` without botocore): pyarrow's filesystems have no conditional
  put, so a job writes its lease only if none exists, waits ``SETTLE_S``, and holds it only if it reads its own
  back: of jobs racing, the last write wins and the others read it back and refuse. It fails only for a job
  whose check and write are more than ``SETTLE_S`` apart (both may then hold it), and resume then keeps each
  row once (:func:`pipelines.manifest.settle_overlaps`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow.fs as pafs

from pipelines.lease_stores import LEASE, SETTLE_S, LocalStore, S3Store, SettleStore, Store, store_for

__all__ = ["LEASE", "SETTLE_S", "LocalStore", "S3Store", "SettleStore", "Store", "store_for", "Holder", "Lease",
           "LeaseHeld", "LeaseLost", "verify"]
TTL_S = 60.0  # a lease not renewed for this long belongs to a dead job
RENEW_S = 10.0


class LeaseHeld(ValueError):
    """Another job holds the output folder's lease."""


class LeaseLost(RuntimeError):
    """This job's lease was taken over or removed while it ran."""


@dataclass(frozen=True)
class Holder:
    """What a lease file says: who holds it and when it was last renewed (seconds since the epoch)."""

    token: str
    host: str
    pid: int
    started: float
    renewed: float
    ttl: float = TTL_S

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode("utf-8")

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        """The holder in a lease file's bytes, or None for bytes that are not one (being written, damaged)."""
        try:
            raw = json.loads(data.decode("utf-8"))
            return cls(str(raw["token"]), str(raw["host"]), int(raw["pid"]), float(raw["started"]),
                       float(raw["renewed"]), float(raw.get("ttl", TTL_S)))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None

    def describe(self, now: float) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return (f"host {self.host}, pid {self.pid}, started {started}, last renewed "
                f"{max(0.0, now - self.renewed):.0f} s ago")

    def stale(self, now: float) -> str | None:
        """Why this lease no longer holds, or None if it does."""
        if now - self.renewed > self.ttl:
            return f"not renewed for {now - self.renewed:.0f} s (more than {self.ttl:.0f} s)"
        if self.host == socket.gethostname() and self.pid != os.getpid() and not _alive(self.pid):
            return f"its process {self.pid} no longer runs on this host"
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class Lease:
    """This job's lease on an output folder: :meth:`acquire`, then :meth:`start` renewing, :meth:`release`."""

    def __init__(self, store: Store, output: str, *, ttl: float = TTL_S, renew_every: float = RENEW_S,
                 report: Callable[[str], None] = lambda line: None, clock: Callable[[], float] = time.time) -> None:
        self.store, self.output, self.ttl, self.renew_every = store, output, ttl, renew_every
        self.report, self.clock = report, clock
        now = clock()
        self.holder = Holder(uuid.uuid4().hex, socket.gethostname(), os.getpid(), now, now, ttl)
        self.version: Any = None
        self.lost: str | None = None  # why the lease was lost, once it is
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def token(self) -> str:
        return self.holder.token

    def _current(self) -> tuple[Holder | None, tuple[bytes, Any] | None]:
        """The lease as stored; bytes that do not parse are re-read for a moment (a create still writing)."""
        for _ in range(20):
            got = self.store.read()
            if got is None:
                return None, None
            holder = Holder.parse(got[0])
            if holder is not None:
                return holder, got
            time.sleep(0.1)
        return None, got

    def acquire(self) -> None:
        """Take the lease, or take over a stale one (reported).

        Raises:
            LeaseHeld: Naming the live holder and what to do.
        """
        for _ in range(5):
            self.version = self.store.create(self.holder.to_bytes())
            if self.version is not None:
                return
            holder, got = self._current()
            if got is None:
                continue  # released meanwhile: try again
            now = self.clock()
            why = "its lease file is unreadable" if holder is None else holder.stale(now)
            if why is None:
                raise LeaseHeld(
                    f"output {self.output!r} is being written by another batch job ({holder.describe(now)}); "
                    f"wait for it to finish or stop it, then re-run: the lease {LEASE} of a job that stops is "
                    f"removed, and one not renewed for {self.ttl:.0f} s (a killed job) is taken over; if no job "
                    f"writes there, delete {LEASE} in the output folder")
            renewed = Holder(**{**asdict(self.holder), "renewed": now})
            self.version = self.store.take(got[1], renewed.to_bytes())
            if self.version is not None:
                self.holder = renewed
                who = "an unreadable lease" if holder is None else f"the lease of a job ({holder.describe(now)})"
                self.report(f"took over {who} on output {self.output!r}: {why}")
                return
        raise LeaseHeld(f"output {self.output!r}: could not take its lease {LEASE}, other jobs keep changing it")

    def renew(self) -> None:
        """Extend the lease (the renewal thread calls it).

        Raises:
            LeaseLost: If the lease is no longer this job's.
        """
        renewed = Holder(**{**asdict(self.holder), "renewed": self.clock()})
        version = self.store.swap(self.version, renewed.to_bytes())
        if version is None:
            holder, _ = self._current()
            now = self.clock()
            who = "removed" if holder is None else f"taken over by another job ({holder.describe(now)})"
            raise LeaseLost(f"output {self.output!r}: this job's lease {LEASE} was {who}; stopping so that only "
                            f"one job writes there")
        self.holder, self.version = renewed, version

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the renewal thread found the lease lost."""
        if self.lost:
            raise LeaseLost(self.lost)

    def start(self) -> None:
        """Renew every ``renew_every`` s in a daemon thread until :meth:`release`."""

        def loop() -> None:
            while not self._stop.wait(self.renew_every):
                try:
                    self.renew()
                except LeaseLost as e:
                    self.lost = str(e)
                    return
                except Exception as e:  # a storage hiccup: retried at the next renewal, reported once per kind
                    self.report(f"could not renew the lease on output {self.output!r} (will retry): "
                                f"{type(e).__name__}: {e}")

        self._thread = threading.Thread(target=loop, name="bigbird-batch-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still this job's (a failure to is reported, not raised:
        the job's own error, if any, is the one to see; the lease then expires after ``ttl``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.lost is None and self.version is not None:
            try:
                self.store.delete(self.version)
            except Exception as e:
                self.report(f"could not remove the lease of output {self.output!r} (it expires in {self.ttl:.0f} "
                            f"s): {type(e).__name__}: {e}")
        self.version = None


def verify(fs: pafs.FileSystem, root: str, token: str) -> None:
    """The fence a writer passes before publishing a result file: the folder's lease is still ``token``'s.

    Raises:
        LeaseLost: If the lease is missing or another job's.
    """
    path = f"{root.rstrip('/')}/{LEASE}"
    try:
        with fs.open_input_stream(path) as f:
            holder = Holder.parse(f.read())
    except FileNotFoundError:
        holder = None
    if holder is None or holder.token != token:
        who = "missing" if holder is None else f"held by another job ({holder.describe(time.time())})"
        raise LeaseLost(f"output {root!r}: the job's lease {LEASE} is {who}; this block is not published")

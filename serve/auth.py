"""API keys of the HTTP service: ``Authorization: Bearer <key>`` on every route but ``/healthz``.

Keys come from the ``BIGBIRD_API_KEY`` environment variable (one key) of the process that builds the
application, and from a keys file (``api_keys_file:`` / ``--api-key-file``: one key a line, blank lines and
``#`` comments skipped), which the ingress re-reads when its modification time or size changes (looked at at most
once every ``RELOAD_CHECK_S`` seconds), so keys rotate without a restart. A key never goes on a command line, and
is never echoed or logged. A presented key is compared with every configured key in constant time
(``hmac.compare_digest`` over SHA-256 digests, so neither the position of the first differing byte nor the
key's length shows in the timing).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ENV_KEY = "BIGBIRD_API_KEY"
RELOAD_CHECK_S = 1.0  # how often (at most) the keys file's mtime and size are looked at
OPEN_PATHS = frozenset({"/healthz"})  # answered without a key (orchestrators' probes)

logger = logging.getLogger("ray.serve")


def read_keys_file(path: str | Path) -> list[str]:
    """The keys of a keys file: one a line, surrounding whitespace stripped, blank lines and ``#`` lines skipped.

    Raises:
        ValueError: If the file cannot be read (naming the path, never a key).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read api_keys_file {str(path)!r}: {type(e).__name__}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def env_keys(environ: dict[str, str] | None = None) -> list[str]:
    """The key in ``BIGBIRD_API_KEY`` (none when unset or blank)."""
    key = (os.environ if environ is None else environ).get(ENV_KEY, "").strip()
    return [key] if key else []


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class KeyCheck:
    """The configured keys (fixed ones and those of a keys file, kept up to date) and the check of a request's.

    Args:
        keys: Fixed keys (from ``BIGBIRD_API_KEY``).
        keys_file: A keys file, re-read when it changes; a file that becomes unreadable keeps the last keys read
            (logged, without its contents).
        clock: ``time.monotonic`` (tests pass their own).

    Raises:
        ValueError: If ``keys_file`` cannot be read at the start.
    """

    def __init__(self, keys: Iterable[str] = (), keys_file: str | Path | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fixed = [digest(k) for k in keys if k]
        self.keys_file = Path(keys_file) if keys_file else None
        self.clock, self.checked_at, self.stamp = clock, float("-inf"), None
        self.from_file: list[bytes] = []
        self.lock = threading.Lock()
        if self.keys_file is not None:
            self.reload(force=True)

    @property
    def enabled(self) -> bool:
        """Whether keys are required (a keys file counts even while it is empty: then nothing is let in)."""
        return bool(self.fixed) or self.keys_file is not None

    def reload(self, *, force: bool = False) -> None:
        """Re-read the keys file if its mtime or size changed since the last read (or if ``force``)."""
        assert self.keys_file is not None
        with self.lock:
            self.checked_at = self.clock()
            try:
                st = self.keys_file.stat()
            except OSError as e:
                if force:
                    raise ValueError(f"cannot read api_keys_file {str(self.keys_file)!r}: {type(e).__name__}") \
                        from None
                logger.error("api_keys_file %s: %s; keeping the %d keys read before", self.keys_file,
                             type(e).__name__, len(self.from_file))
                return
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self.stamp and not force:
                return
            try:
                keys = read_keys_file(self.keys_file)
            except ValueError as e:
                if force:
                    raise
                logger.error("%s; keeping the %d keys read before", e, len(self.from_file))
                return
            self.from_file, self.stamp = [digest(k) for k in keys], stamp
            logger.info("api_keys_file %s: %d keys", self.keys_file, len(keys))

    def allows(self, token: str | None) -> bool:
        """Whether ``token`` is one of the keys: compared with every key, in constant time."""
        if self.keys_file is not None and self.clock() - self.checked_at >= RELOAD_CHECK_S:
            self.reload()
        if token is None:
            return False
        presented = digest(token)
        match = False
        for known in self.fixed + self.from_file:  # no early exit: the time does not tell which key matched
            match |= hmac.compare_digest(presented, known)
        return match

    def refusal(self, authorization: str | None) -> str | None:
        """Why a request with this ``Authorization`` header is refused (None: let in). Never holds the key."""
        token = bearer_token(authorization)
        if token is None:
            return "missing API key: send the header 'Authorization: Bearer <key>'"
        if not self.allows(token):
            return "invalid API key"
        return None

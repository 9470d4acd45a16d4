"""I/O failures of a batch job as one line: the file or URI, the cause in words, and what a re-run resumes.

A result file that cannot be written fails in a model actor, far from the user: Ray hands the driver a
``RayTaskError`` whose text is the whole remote traceback. The writer raises :class:`WriteError` (it names the
URI), and the driver finds it, or any ``OSError``, in the chain (or in the text, which Ray keeps when it cannot
rebuild the exception), names its cause, counts the records already kept, and raises :class:`JobIOError`:
one line for :func:`bigbird.commands.fail`, the traceback only with ``BIGBIRD_DEBUG=1``.
"""

from __future__ import annotations

import errno
import re

# (pattern in an error's text, the cause in words): pyarrow's S3/GCS errors and botocore's, then errno texts.
CAUSES = (
    (r"NO_SUCH_BUCKET|NoSuchBucket|bucket does not exist|The specified bucket", "the bucket does not exist"),
    (r"SLOW_DOWN|SlowDown|Throttl|TooManyRequests|RequestLimitExceeded|rate exceeded|503",
     "the store is throttling requests (try fewer --actors, or later)"),
    (r"ACCESS_DENIED|AccessDenied|Forbidden|403|InvalidAccessKeyId|SignatureDoesNotMatch|Permission denied",
     "permission denied"),
    (r"No space left on device|ENOSPC|Disk quota exceeded", "no space left on the device"),
    (r"Read-only file system", "the filesystem is read-only"),
)
ERRNO_CAUSES = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "no space left on the device (quota)",
                errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                errno.EROFS: "the filesystem is read-only", errno.ENOENT: "no such file or folder"}
MARK = re.compile(r"cannot write (\S+?): (.+?)(?: \[errno \d+\])?(?:\n|$)")


class WriteError(OSError):
    """A result or lease file that could not be written; ``str()`` is ``cannot write URI: CAUSE``."""

    def __init__(self, uri: str, error: BaseException) -> None:
        self.uri = uri
        code = getattr(error, "errno", None)
        super().__init__(code, f"cannot write {uri}: {cause(error)}")

    def __reduce__(self):  # rebuilt from its text on the driver
        return (_rebuild, (self.uri, str(self)))

    def __str__(self) -> str:
        return self.strerror or ""


def _rebuild(uri: str, text: str) -> WriteError:
    error = WriteError.__new__(WriteError)
    OSError.__init__(error, None, text)
    error.uri = uri
    return error


class JobIOError(OSError):
    """The job stopped on an I/O error; its text says what is kept and how to resume."""

    def __str__(self) -> str:
        return self.strerror or ""


def cause(error: BaseException) -> str:
    """The cause of an I/O error in a few words (``permission denied``), else its own first line."""
    code = getattr(error, "errno", None)
    if code in ERRNO_CAUSES:
        return ERRNO_CAUSES[code]
    text = str(error)
    for pattern, words in CAUSES:
        if re.search(pattern, text):
            return words
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def find_io_error(error: BaseException) -> tuple[str, str] | None:
    """``(what failed, cause)`` of the I/O error behind ``error`` (its chain, Ray's wrapped cause, its text),
    or None when it is no I/O error."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    fallback: tuple[str, str] | None = None
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, WriteError):
            return _split(str(e))
        if isinstance(e, OSError) and fallback is None and not isinstance(e, JobIOError):
            name = getattr(e, "filename", None)
            fallback = (f"I/O on {name}" if name else "I/O", cause(e))
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    found = MARK.search(str(error))
    if found:
        return f"cannot write {found.group(1)}", found.group(2).strip()
    return fallback


def _split(text: str) -> tuple[str, str]:
    what, _, why = text.partition(": ")
    return what, why


def job_io_error(what: str, why: str, *, kept: int | None, total: int) -> JobIOError:
    """The one-line error of a job stopped by an I/O failure (``kept``: records in its result files, None if
    they cannot be counted)."""
    if kept is None:
        tail = "the records already written are kept; re-run the same command to score the rest"
    else:
        tail = (f"{kept:,} of {total:,} records are kept in the output folder; re-run the same command to score "
                f"the other {total - kept:,}")
    return JobIOError(None, f"{what}: {why}; {tail}")

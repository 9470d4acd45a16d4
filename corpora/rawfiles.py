"""Opening the raw files of the corpora: a checked path, or bytes with bz2/gzip undone."""

from __future__ import annotations

import bz2
import contextlib
import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def existing_path(path: str | Path) -> Path:
    """``path`` as a Path; FileNotFoundError naming it when it does not exist."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {p}")
    return p


@contextlib.contextmanager
def open_binary(path_or_file: str | Path | IO[bytes], *, decompress: bool = True) -> Iterator[IO[bytes]]:
    """Open a path as bytes (bz2/gzip undone from the magic bytes), or pass a file through."""
    if not isinstance(path_or_file, (str, Path)):
        yield path_or_file
        return
    path = existing_path(path_or_file)
    with open(path, "rb") as fh:
        magic = fh.read(3)
    if decompress and magic == b"BZh":
        with bz2.open(path, "rb") as fh:
            yield fh
    elif decompress and magic[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as fh:
            yield fh
    else:
        with open(path, "rb") as fh:
            yield fh

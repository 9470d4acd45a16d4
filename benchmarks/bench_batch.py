"""Batch job throughput: the whole Ray Data job against a bare in-process loop over the same windows.

Both score the same real long documents (Wikipedia articles shipped as test fixtures, or a corpus folder you
pass) with the same random-weight model, windows and batching. The bare loop times only the model calls;
the job's time is its wall time from reading parquet to the written output (Ray already started), so it
includes the job's fixed costs (planning, the model actor's start, the last batches draining), which the
report shows separately: the job's steady-state rate is what a large corpus sees.

    python benchmarks/bench_batch.py                 # ~3.5 minutes on 2 cores (960k tokens per side)
    python benchmarks/bench_batch.py --copies 1 --quick
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def build_model(folder: Path, *, hidden: int, layers: int, max_length: int) -> Path:
    import bigbird
    from bigbird.tokenization import BigBirdTokenizer

    tok = BigBirdTokenizer(vocab_file=str(FIXTURES / "spm" / "test_model.model"))
    config = bigbird.BigBirdConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                                   num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                                   max_position_embeddings=max_length, block_size=64, num_random_blocks=3,
                                   sep_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id,
                                   id2label={0: "NEG", 1: "POS"})
    torch.manual_seed(0)
    bigbird.BigBirdForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_corpus(folder: Path, source: str | None, copies: int) -> Path:
    """Real long documents; ``copies`` repeats them under new ids to lengthen the run."""
    from corpora import iter_wiki_records

    if source:
        table = pq.read_table(source, columns=["id", "text"])
    else:
        rows = list(iter_wiki_records(FIXTURES / "corpora" / "enwiki-excerpt.xml.bz2"))
        table = pa.Table.from_pylist([{"id": r["id"], "text": r["text"]} for r in rows])
    folder.mkdir(parents=True, exist_ok=True)
    for c in range(copies):
        ids = pa.array([f"{i}#{c}" for i in table.column("id").to_pylist()])
        pq.write_table(table.set_column(0, "id", ids), folder / f"part-{c:03d}.parquet")
    return folder


def bare_loop(model: Path, corpus: Path, *, batch_size: int, threads: int) -> tuple[int, float, int]:
    """Tokens, seconds of model calls, padding tokens: one process, the job's windows and batching."""
    from bigbird.tasks import pipeline
    from bigbird.windows import padded_length

    torch.set_num_threads(threads)
    pipe = pipeline("text-classification", model, batch_size=batch_size)
    texts = pq.read_table(corpus, columns=["text"]).column("text").to_pylist()
    windows, _ = pipe.windows(pipe.encode(texts))
    pipe.score(windows[:batch_size])  # warm-up
    start = time.perf_counter()
    pipe.score(windows, top_k=None)
    seconds = time.perf_counter() - start
    tokens = sum(w.own_end - w.own_start for w in windows)
    padding = sum(padded_length(len(w.input_ids), pipe.config.block_size) - len(w.input_ids) for w in windows)
    return tokens, seconds, padding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", help="a parquet corpus (id, text); default: the Wikipedia fixture")
    parser.add_argument("--copies", type=int, default=8, help="repeat the corpus under new ids")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true", help="tiny model, one copy: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.hidden, args.layers, args.copies, args.max_length = 64, 1, 1, 512
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from pipelines import batch
    from pipelines.settings import BatchSettings

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_model(tmp / "model", hidden=args.hidden, layers=args.layers, max_length=args.max_length)
        corpus = build_corpus(tmp / "corpus", args.corpus, args.copies)
        tokens, bare_s, bare_pad = bare_loop(model, corpus, batch_size=args.batch_size, threads=args.threads)
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        settings = BatchSettings(task="text-classification", model=str(model), input=str(corpus),
                                 output=str(tmp / "out"), batch_size=args.batch_size, actors=1,
                                 threads=args.threads)
        stats = batch.run(settings)
        ray.shutdown()
    bare_tps = tokens / bare_s
    pad = stats.padding_tokens / max(1, stats.tokens + stats.padding_tokens)
    print(f"model: hidden {args.hidden}, {args.layers} layers, windows of {args.max_length} tokens; "
          f"torch threads {args.threads}; corpus {stats.records} records, {stats.tokens:,} tokens")
    print(f"{'':18}{'seconds':>10}{'tokens/s':>12}")
    print(f"{'bare loop':18}{bare_s:10.1f}{bare_tps:12,.0f}")
    print(f"{'ray data job':18}{stats.seconds:10.1f}{stats.tokens_per_second:12,.0f}")
    fixed = stats.seconds - tokens / bare_tps  # wall time beyond the bare loop's compute for the same tokens
    print(f"job / bare loop: {stats.tokens_per_second / bare_tps:.1%} (target >= 85%); "
          f"padding: {pad:.1%} of computed tokens (bare loop {bare_pad / max(1, tokens + bare_pad):.1%}; "
          f"target < 10%); job time beyond the bare loop's: {fixed:.1f} s (start-up, planning, draining)")
    if stats.tokens != tokens:
        raise SystemExit(f"token counts differ: job {stats.tokens} vs bare loop {tokens}")


if __name__ == "__main__":
    main()

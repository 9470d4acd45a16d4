"""How many real documents get exactly SentencePiece's ids: our BigBirdTokenizer and transformers 5's.

For every text of each corpus in ``tests/spm_corpora.py`` (raw documents and paragraphs, trailing newlines
kept) the reference is ``[CLS] + SentencePieceProcessor(model_file=MODEL).encode(text) + [SEP]``
(``[CLS] A [SEP] B [SEP]`` for the TriviaQA question/document pairs). Compared:
- ``ours``: ``bigbird.BigBirdTokenizer.from_pretrained(folder with only spiece.model)``;
- ``transformers``: ``transformers.BigBirdTokenizer.from_pretrained`` on the same folder (transformers 5);
- ``converter``: transformers' ``BigBirdConverter`` output (what hub ``tokenizer.json`` files hold).

    python -m tests.spm_parity [--model tests/fixtures/spm/test_model.model] [--json out.json]

Prints one line per corpus: ``corpus: documents identical / total`` for each tokenizer.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.spm_corpora import CORPUS_LOADERS, triviaqa_pairs  # noqa: E402

DEFAULT_MODEL = ROOT / "tests" / "fixtures" / "spm" / "test_model.model"


def tokenizers(model: Path, folder: Path) -> dict:
    """The tokenizers to compare, each a function from a batch of texts (or pairs) to id lists."""
    import transformers
    from transformers.convert_slow_tokenizer import BigBirdConverter

    from bigbird import BigBirdTokenizer

    shutil.copy(model, folder / "spiece.model")
    hf = transformers.BigBirdTokenizer.from_pretrained(str(folder))
    conv = transformers.BigBirdTokenizer(tokenizer_object=BigBirdConverter(hf).converted())
    ours = BigBirdTokenizer.from_pretrained(folder)
    return {"ours": lambda batch: ours(batch)["input_ids"], "transformers": lambda batch: hf(batch)["input_ids"],
            "converter": lambda batch: conv(batch)["input_ids"]}


def reference(model: Path, cls_id: int, sep_id: int):
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(model))

    def ids(item: str | tuple[str, str]) -> list[int]:
        if isinstance(item, str):
            return [cls_id, *sp.encode(item), sep_id]
        return [cls_id, *sp.encode(item[0]), sep_id, *sp.encode(item[1]), sep_id]

    return ids


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="SentencePiece .model file")
    parser.add_argument("--json", type=Path, help="also write the counts here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        candidates = tokenizers(args.model, Path(tmp))
        from bigbird import BigBirdTokenizer

        probe = BigBirdTokenizer.from_pretrained(Path(tmp))
        ref = reference(args.model, probe.cls_token_id, probe.sep_token_id)
        corpora = {name: load() for name, load in CORPUS_LOADERS.items()}
        corpora["triviaqa-pairs"] = triviaqa_pairs()
        counts = {}
        for name, texts in corpora.items():
            expected = [ref(t) for t in texts]
            row = {"total": len(texts)}
            for who, encode in candidates.items():
                got = [ids for start in range(0, len(texts), 64) for ids in encode(texts[start:start + 64])]
                row[who] = sum(a == b for a, b in zip(got, expected))
            counts[name] = row
            print(f"{name:15s} " + "  ".join(f"{who} {row[who]}/{row['total']}" for who in candidates), flush=True)
    if args.json:
        args.json.write_text(json.dumps(counts, indent=2) + "\n")
    return counts


if __name__ == "__main__":
    main()

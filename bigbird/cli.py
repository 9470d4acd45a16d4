"""The ``bigbird`` command line: task pipelines over texts, files and standard input (one JSON line per input),
checkpoint conversion, and the entry points of the Ray layers (``batch``, ``serve``, ``finetune``).

This module only parses arguments and reads inputs; the work is done by :mod:`bigbird.tasks`,
:mod:`bigbird.convert` and the Ray layers' own ``main`` functions.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

CHUNK = 64  # inputs per pipeline call: windows are batched across them, results are printed as they come
# Ray-layer commands: (module whose ``main(argv) -> int`` runs them, one-line description).
DISPATCH = {
    "batch": ("pipelines.batch", "run a task over a dataset with Ray Data (options: bigbird batch --help)"),
    "serve": ("serve.cli", "serve task pipelines over HTTP with Ray Serve (options: bigbird serve --help)"),
    "finetune": ("jobs.finetune", "fine-tune a model with Ray Train (options: bigbird finetune --help)"),
}
TASK_HELP = {
    "fill-mask": "predict the tokens behind each mask token",
    "question-answering": "extract the answer to a question from a (long) context",
    "text-classification": "classify whole (long) documents",
    "token-classification": "tag the tokens of (long) documents and merge them into entities",
}
TOP_K_HELP = {
    "fill-mask": "candidates per mask (default 5)",
    "question-answering": "answers per context (default 1; more prints a list)",
    "text-classification": "labels per input, printed as a list (default: the best label as one object)",
}
TASK_ALIASES = {"text-classification": ["sentiment-analysis"], "token-classification": ["ner"]}
INPUT_HELP = """\
Inputs: TEXT arguments, then each --file (one input per file, '-' = standard input); with neither, the whole
standard input is ONE document. --lines makes every line of a file or of standard input a separate input
(every line must hold text: output line N answers input line N). Long inputs are cut into overlapping
windows (--max-length tokens, overlapping by --stride) and the results merged, so any length works.
Output: one JSON value per input per line (JSON lines), as the Python pipeline returns it."""
EXAMPLES = {
    "fill-mask": """\
examples:
  bigbird fill-mask --model ./my-bigbird "Paris is the [MASK] of France." --top-k 3
  bigbird fill-mask --model google/bigbird-roberta-base --file report.txt""",
    "question-answering": """\
examples:
  bigbird question-answering --model ./bigbird-qa --question "Who wrote it?" --context-file book.txt
  cat book.txt | bigbird question-answering --model ./bigbird-qa --question "Who wrote it?" --top-k 3
  bigbird question-answering --model ./bigbird-qa --question "When?" --context "It rained on Monday." """,
    "text-classification": """\
examples:
  bigbird text-classification --model ./bigbird-imdb < review.txt
  bigbird text-classification --model ./bigbird-imdb --lines --file reviews.txt --top-k 2 > labels.jsonl""",
    "token-classification": """\
examples:
  bigbird token-classification --model ./bigbird-genes --file chromosome.txt
  bigbird token-classification --model ./bigbird-ner "Alice flew to Paris." --aggregation-strategy none""",
    "convert": """\
examples:
  bigbird convert ./bert-base-uncased ./bigbird-from-bert
  bigbird convert ./roberta-base ./bigbird-from-roberta --max-position-embeddings 4096 --block-size 64

The encoder weights are copied (BERT names, or RoBERTa's after dropping its 2 unused position rows), the
learned position table is repeated up to --max-position-embeddings (the BigBird paper's warm start), MLM/NSP
heads are kept, and the tokenizer files are copied.""",
}
MAIN_EPILOG = """\
examples:
  bigbird fill-mask --model ./my-bigbird "The capital of France is [MASK]."
  bigbird question-answering --model ./bigbird-qa --question "Who is the narrator?" --context-file novel.txt
  bigbird convert ./bert-base-uncased ./bigbird-base --max-position-embeddings 4096
  bigbird batch --help

exit status: 0 success, 1 the command failed (missing file or model, unreadable or unusable input),
2 the command line is wrong. Errors are one line on stderr; set BIGBIRD_DEBUG=1 for a traceback."""


class UsageError(Exception):
    """The command line is wrong (exit status 2)."""


class CommandError(Exception):
    """The command could not be carried out (exit status 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)  # main() prints one line instead of argparse's usage + message


@dataclass
class Source:
    """One input and where it came from (for error messages)."""

    text: str
    where: str


def _int_at_least(low: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {number}")
        return number

    return parse


def _device(value: str) -> int | str:
    return int(value) if re.fullmatch(r"-?\d+", value) else value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bigbird")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The ``bigbird`` argument parser with one subcommand per task, ``convert`` and the Ray commands."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="bigbird", description="BigBird long-document transformer: task pipelines over "
                     "inputs of any length, checkpoint conversion, and Ray batch/serve/finetune jobs.",
                     epilog=MAIN_EPILOG, formatter_class=raw)
    parser.add_argument("--version", action="version", version=f"bigbird {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for task, summary in TASK_HELP.items():
        p = sub.add_parser(task, aliases=TASK_ALIASES.get(task, []), help=summary, formatter_class=raw,
                           description=f"{summary[0].upper()}{summary[1:]}.\n\n{INPUT_HELP}",
                           epilog=EXAMPLES[task])
        p.set_defaults(task=task)
        p.add_argument("--model", required=True, metavar="PATH_OR_HUB_ID", help="model folder or hub id")
        if task == "question-answering":
            p.add_argument("--question", required=True, help="the question asked of every context")
            ctx = p.add_mutually_exclusive_group()
            ctx.add_argument("--context", action="append", default=[], metavar="TEXT", help="a context (repeatable)")
            ctx.add_argument("--context-file", action="append", default=[], metavar="F",
                             help="a file holding one context ('-' = standard input; repeatable)")
            p.add_argument("--max-answer-len", type=_int_at_least(1), metavar="N",
                           help="longest answer in tokens (default 15)")
        else:
            p.add_argument("texts", nargs="*", metavar="TEXT", help="input texts (one input each)")
            p.add_argument("--file", action="append", default=[], metavar="F",
                           help="a file holding one input ('-' = standard input; repeatable)")
        p.add_argument("--lines", action="store_true", help="every line of a file or stdin is a separate input")
        if task == "token-classification":
            p.add_argument("--aggregation-strategy", choices=("simple", "none"),
                           help="merge tokens into entities (simple, default) or list every token (none)")
        else:
            p.add_argument("--top-k", type=_int_at_least(1), metavar="K", help=TOP_K_HELP[task])
        p.add_argument("--max-length", type=_int_at_least(8), metavar="N", help="tokens per window (default: the "
                       "model's max_position_embeddings)")
        p.add_argument("--stride", type=_int_at_least(0), metavar="N", help="tokens shared by consecutive windows "
                       "(default 128, or half of --max-length if that is less)")
        p.add_argument("--batch-size", type=_int_at_least(1), default=8, metavar="N",
                       help="windows per forward pass (default 8)")
        p.add_argument("--device", type=_device, default=None, help="cpu (default), cuda, cuda:1 or a GPU index")

    p = sub.add_parser("convert", help="turn a BERT/RoBERTa checkpoint into a long-input BigBird",
                       description="Turn a BERT/RoBERTa checkpoint folder (config.json, model.safetensors or "
                       "pytorch_model.bin, tokenizer files) into a BigBird folder.", epilog=EXAMPLES["convert"],
                       formatter_class=raw)
    p.add_argument("src", metavar="SRC", help="folder of the BERT/RoBERTa checkpoint")
    p.add_argument("dst", metavar="DST", help="folder to write the BigBird into")
    p.add_argument("--max-position-embeddings", type=_int_at_least(1), default=4096, metavar="N",
                   help="positions of the BigBird (default 4096)")
    p.add_argument("--attention-type", choices=("block_sparse", "original_full"), default="block_sparse")
    p.add_argument("--block-size", type=_int_at_least(1), default=64, metavar="N",
                   help="tokens per attention block (default 64)")
    p.add_argument("--num-random-blocks", type=_int_at_least(0), default=3, metavar="N",
                   help="random key blocks per query block (default 3)")
    p.add_argument("--drop-heads", action="store_true", help="leave out fine-tuned classifier/QA heads")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty DST")

    for name, (_, summary) in DISPATCH.items():
        sub.add_parser(name, help=summary, add_help=False)  # their own parser handles every argument
    return parser


# --------------------------------------------------------------------------------------------- inputs
def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CommandError(f"{where} is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})") from None


class _Reader:
    """Reads files and standard input (at most once) as strict UTF-8."""

    def __init__(self, stdin: TextIO) -> None:
        self.stdin, self.stdin_used = stdin, False

    def read(self, name: str) -> tuple[str, str]:
        if name == "-":
            if self.stdin_used:
                raise UsageError("standard input ('-') can be read only once")
            self.stdin_used = True
            if self.stdin.isatty():
                print("bigbird: reading a document from standard input (end it with Ctrl-D)", file=sys.stderr)
            buffer = getattr(self.stdin, "buffer", None)
            where = "standard input"
            return (_decode(buffer.read(), where) if buffer is not None else self.stdin.read()), where
        where = f"file {name!r}"
        try:
            with open(name, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise CommandError(f"{where} does not exist") from None
        except IsADirectoryError:
            raise CommandError(f"{where} is a directory") from None
        except OSError as e:
            raise CommandError(f"cannot read {where}: {e.strerror or e}") from None
        return _decode(data, where), where


def gather_inputs(texts: Sequence[str], files: Sequence[str], *, lines: bool, stdin: TextIO) -> list[Source]:
    """The inputs of a task command, in order, each checked to hold text.

    Args:
        texts: Texts given as arguments (one input each).
        files: Files holding one input each (``-`` = standard input).
        lines: Split files and standard input into one input per line.
        stdin: Standard input, read as one document when there are neither texts nor files.

    Returns:
        The inputs with a description of their origin.

    Raises:
        UsageError: For an empty or whitespace-only text argument.
        CommandError: For a missing or unreadable file, invalid UTF-8 or an empty file/stdin/line.
    """
    sources: list[Source] = []
    for i, text in enumerate(texts, 1):
        if not text.strip():
            raise UsageError(f"TEXT argument {i} is {'empty' if not text else 'whitespace only'}")
        sources.append(Source(text, f"TEXT argument {i}"))
    reader = _Reader(stdin)
    for name in list(files) or (["-"] if not texts else []):
        content, where = reader.read(name)
        if not lines:
            if not content.strip():
                raise CommandError(f"{where} is {'empty' if not content else 'whitespace only'}: nothing to score")
            sources.append(Source(content, where))
            continue
        split = content.splitlines()
        if not split:
            raise CommandError(f"{where} is empty: no lines to score")
        for n, line in enumerate(split, 1):
            if not line.strip():
                raise CommandError(f"line {n} of {where} is {'empty' if not line else 'whitespace only'}")
            sources.append(Source(line, f"line {n} of {where}"))
    return sources


# ---------------------------------------------------------------------------------------------- tasks
def task_params(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline call parameters the user set (unset ones keep the pipeline's defaults)."""
    names = {"top_k": "top_k", "max_answer_len": "max_answer_len", "aggregation_strategy": "aggregation_strategy"}
    return {key: getattr(args, attr) for attr, key in names.items() if getattr(args, attr, None) is not None}


def run_task(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """Load the model once, score the inputs in chunks and print one JSON line per input."""
    from bigbird.tasks import pipeline

    if args.task == "question-answering":
        if not args.question.strip():
            raise UsageError("--question is empty")
        for i, text in enumerate(args.context, 1):
            if not text.strip():
                raise UsageError(f"--context {i} is empty")
        sources = gather_inputs(args.context, args.context_file, lines=args.lines, stdin=stdin)
        sources = [Source(s.text, s.where.replace("TEXT argument", "--context")) for s in sources]
    else:
        sources = gather_inputs(args.texts, args.file, lines=args.lines, stdin=stdin)
    stride = args.stride
    if stride is None:
        stride = 128 if args.max_length is None else min(128, args.max_length // 2)
    pipe = pipeline(args.task, args.model, device=args.device, batch_size=args.batch_size,
                    max_length=args.max_length, stride=stride)
    params = task_params(args)
    for start in range(0, len(sources), CHUNK):
        chunk = sources[start : start + CHUNK]
        texts = [s.text for s in chunk]
        try:
            if args.task == "question-answering":
                results = pipe([{"question": args.question, "context": t} for t in texts], **params)
            else:
                results = pipe(texts, **params)
        except ValueError as e:
            m = re.match(r"input (\d+): (.*)", str(e), flags=re.S)
            if m is None:
                raise
            raise CommandError(f"{chunk[int(m.group(1))].where}: {m.group(2)}") from e
        stdout.write("".join(json.dumps(r, default=_json_default) + "\n" for r in results))
        stdout.flush()
    return 0


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def run_convert(args: argparse.Namespace, stdout: TextIO) -> int:
    from bigbird.convert import convert_checkpoint

    dst = convert_checkpoint(args.src, args.dst, max_position_embeddings=args.max_position_embeddings,
                             attention_type=args.attention_type, block_size=args.block_size,
                             num_random_blocks=args.num_random_blocks, drop_heads=args.drop_heads,
                             overwrite=args.overwrite)
    config = json.loads((dst / "config.json").read_text(encoding="utf-8"))
    stdout.write(f"{dst}: {config['architectures'][0]}, {config['max_position_embeddings']} positions, "
                 f"{config['attention_type']} attention\n")
    return 0


def dispatch(command: str, rest: list[str]) -> int:
    """Run a Ray-layer command: import its module lazily and hand it the remaining arguments.

    Raises:
        UsageError: If the module is not available in this installation.
    """
    module_name = DISPATCH[command][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise UsageError(f"'bigbird {command}' is not available: module {e.name} is not installed") from e
        raise CommandError(f"'bigbird {command}' cannot start: {e}") from e
    if not callable(getattr(module, "main", None)):
        raise UsageError(f"'bigbird {command}' is not available: {module_name} has no main()")
    try:
        code = module.main(rest)
    except SystemExit as e:  # their argparse's --help / errors
        code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


# ----------------------------------------------------------------------------------------------- main
def _one_line(error: BaseException) -> str:
    text = re.sub(r"\s*\n\s*", " ", str(error)).strip()
    if isinstance(error, (UsageError, CommandError, ValueError, TypeError, OSError)):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _run(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as e:  # --help, --version
        return 0 if e.code is None else int(e.code)
    if args.command in DISPATCH:
        return dispatch(args.command, argv[argv.index(args.command) + 1 :])
    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        raise UsageError("no command given (bigbird --help lists them)")
    if args.command == "convert":
        return run_convert(args, sys.stdout)
    return run_task(args, sys.stdin, sys.stdout)


def main(argv: list[str] | None = None) -> int:
    """Run the ``bigbird`` command line.

    Args:
        argv: Arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 if the command failed, 2 if the command line is wrong. Errors are
        printed as one line ``bigbird: error: ...`` on stderr (with a traceback when ``BIGBIRD_DEBUG=1``).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get("BIGBIRD_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print("bigbird: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `bigbird ... | head -1`: stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except Exception as e:
        if debug:
            traceback.print_exc()
        expected = (UsageError, CommandError, ValueError, TypeError, OSError)
        hint = "" if debug or isinstance(e, expected) else " (BIGBIRD_DEBUG=1 shows the traceback)"
        print(f"bigbird: error: {_one_line(e)}{hint}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1

"""The ``bigbird`` command line: task pipelines over texts, files and standard input (one JSON line per input),
checkpoint conversion, and the Ray commands (``batch``, ``serve``, ``finetune``), found through the
``bigbird.commands`` entry points (:mod:`bigbird.commands`): the core imports none of them.

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
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from bigbird.commands import CommandError, UsageError, fail, ray_commands
from bigbird.commands import summary as command_summary
from bigbird.tasks import SPECS
from bigbird.tasks.spec import DEFAULT_STRIDE, ParamField

CHUNK = 64  # inputs per pipeline call: windows are batched across them, results are printed as they come


def input_help(task: str) -> str:
    """The description's paragraph on inputs, naming only the arguments ``bigbird TASK`` takes."""
    if task == "question-answering":  # --context and --context-file exclude each other
        noun, text = "context", ("Inputs: the contexts the --question is asked of: each --context, or each "
                                 "--context-file (one context per file, '-' = standard input); with neither, the "
                                 "whole standard input is ONE context.")
    else:
        noun, text = "input", ("Inputs: TEXT arguments, then each --file (one input per file, '-' = standard "
                               "input); with neither, the whole standard input is ONE document.")
    text += (f" --lines makes every line of a file or of standard input a separate {noun} (every line must hold "
             f"text: output line N answers {noun} line N). Long {noun}s are cut into overlapping windows "
             f"(--max-length tokens, overlapping by --stride) and the results merged, so any length works. Output: "
             f"one JSON value per {noun} per line (JSON lines), as the Python pipeline returns it.")
    return textwrap.fill(text, width=110)


EXAMPLES = {
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
    for task, spec in SPECS.items():  # one subcommand per task: help, aliases, examples and flags from its spec
        summary = spec.summary
        p = sub.add_parser(task, aliases=[n for n in spec.names if n != task], help=summary, formatter_class=raw,
                           description=f"{summary[0].upper()}{summary[1:]}.\n\n{input_help(task)}",
                           epilog=spec.examples)
        p.set_defaults(task=task)
        p.add_argument("--model", required=True, metavar="PATH_OR_HUB_ID", help="model folder or hub id")
        if task == "question-answering":
            p.add_argument("--question", required=True, help="the question asked of every context")
            ctx = p.add_mutually_exclusive_group()
            ctx.add_argument("--context", action="append", default=[], metavar="TEXT", help="a context (repeatable)")
            ctx.add_argument("--context-file", action="append", default=[], metavar="F",
                             help="a file holding one context ('-' = standard input; repeatable)")
        else:
            p.add_argument("texts", nargs="*", metavar="TEXT", help="input texts (one input each)")
            p.add_argument("--file", action="append", default=[], metavar="F",
                           help="a file holding one input ('-' = standard input; repeatable)")
        p.add_argument("--lines", action="store_true", help="every line of a file or stdin is a separate input")
        for f in cli_params(task):
            flag = "--" + f.name.replace("_", "-")
            if f.choices is not None:
                p.add_argument(flag, choices=f.choices, help=f.cli_help)
            else:
                p.add_argument(flag, type=_int_at_least(int(f.metadata.get("ge", 0))),
                               metavar="K" if f.name == "top_k" else "N", help=f.cli_help)
        p.add_argument("--max-length", type=_int_at_least(8), metavar="N", help="tokens per window (default: the "
                       "model's max_position_embeddings)")
        p.add_argument("--stride", type=_int_at_least(0), metavar="N", help="tokens shared by consecutive windows "
                       f"(default {DEFAULT_STRIDE}, or half of --max-length if that is less)")
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

    for name in ray_commands():  # found through entry points: the core imports none of them
        sub.add_parser(name, help=command_summary(name), add_help=False)  # their own parser handles every argument
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
def cli_params(task: str) -> list[ParamField]:
    """The task parameters that have a command-line flag (those with ``cli`` help in the task's spec)."""
    return [f for f in SPECS[task].fields() if f.cli_help]


def task_params(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline call parameters the user set (unset ones keep the pipeline's defaults)."""
    return {f.name: getattr(args, f.name) for f in cli_params(args.task) if getattr(args, f.name, None) is not None}


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
        stride = DEFAULT_STRIDE if args.max_length is None else min(DEFAULT_STRIDE, args.max_length // 2)
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
    """Run a Ray-layer command: load its entry point (``module:main``) and hand it the remaining arguments.

    Raises:
        UsageError: If the command's module is not available in this installation.
    """
    entry = ray_commands()[command]
    module_name, _, attr = entry.value.partition(":")
    module_name = module_name.strip()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise UsageError(f"'bigbird {command}' is not available: module {e.name} is not installed") from e
        raise CommandError(f"'bigbird {command}' cannot start: {e}") from e
    function = getattr(module, attr.strip() or "main", None)
    if not callable(function):
        raise UsageError(f"'bigbird {command}' is not available: {entry.value} is not a function")
    try:
        code = function(rest)
    except SystemExit as e:  # their argparse's --help / errors
        code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


# ----------------------------------------------------------------------------------------------- main
def _run(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as e:  # --help, --version
        return 0 if e.code is None else int(e.code)
    if args.command in ray_commands():
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
    try:
        return _run(argv)
    except BrokenPipeError:  # e.g. `bigbird ... | head -1`: stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except (Exception, KeyboardInterrupt) as e:
        return fail("bigbird", e)

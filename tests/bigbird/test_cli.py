"""The ``bigbird`` command line, run in-process: every task command equals its Python pipeline, over text
arguments, files and standard input, for inputs several times longer than the model's positions; bad input
gives one error line and the documented exit status."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from bigbird.cli import main
from bigbird.tasks import pipeline
from tests.helpers import SPM_MODEL, spm_tokenizer

BOTCHAN = " ".join((SPM_MODEL.parent / "botchan_excerpt.txt").read_text(encoding="utf-8").split("\n"))
LONG = BOTCHAN[:5000]  # ~1,850 SentencePiece tokens: over 7x the fixture's 256 positions
SHORT = ["Because of an hereditary recklessness, I have been playing always a losing game.",
         "The janitor of the school had to carry me home on his back."]


def stdin_bytes(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def json_lines(out: str) -> list:
    return [json.loads(line) for line in out.splitlines()]


def plain(value):
    """A pipeline result as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


@pytest.fixture(scope="module")
def pipes(task_models):
    return {task: pipeline(task, folder) for task, folder in task_models.items()}


def test_long_inputs_span_many_windows():
    assert len(spm_tokenizer()(LONG)["input_ids"]) > 6 * 256


# ----------------------------------------------------------------------------------------- task commands
def test_fill_mask_text_arguments(capsys, task_models, pipes):
    texts = ["I was [MASK] in the yard.", "The [MASK] of the school had to [MASK] me home."]
    code, out, err = run(capsys, ["fill-mask", "--model", str(task_models["fill-mask"]), *texts, "--top-k", "3"])
    assert code == 0 and err == ""
    assert json_lines(out) == plain(pipes["fill-mask"](texts, top_k=3))


def test_fill_mask_long_file(capsys, tmp_path, task_models, pipes):
    text = LONG[:2500] + " [MASK] " + LONG[2500:] + " The end [MASK]."
    (tmp_path / "doc.txt").write_text(text, encoding="utf-8")
    code, out, _ = run(capsys, ["fill-mask", "--model", str(task_models["fill-mask"]), "--file",
                                str(tmp_path / "doc.txt")])
    assert code == 0
    assert json_lines(out) == [plain(pipes["fill-mask"](text))]


def test_text_classification_files_and_options(capsys, tmp_path, task_models, pipes):
    files = []
    for i, text in enumerate([LONG, SHORT[0]]):
        files += ["--file", str(tmp_path / f"{i}.txt")]
        (tmp_path / f"{i}.txt").write_text(text, encoding="utf-8")
    model = str(task_models["text-classification"])
    code, out, _ = run(capsys, ["text-classification", "--model", model, *files])
    assert code == 0 and json_lines(out) == plain(pipes["text-classification"]([LONG, SHORT[0]]))
    code, out, _ = run(capsys, ["sentiment-analysis", "--model", model, *files, "--top-k", "2", "--max-length",
                                "64", "--stride", "16", "--batch-size", "3"])
    small = pipeline("text-classification", model, max_length=64, stride=16, batch_size=3)
    assert code == 0 and json_lines(out) == plain(small([LONG, SHORT[0]], top_k=2))


def test_text_classification_whole_stdin_is_one_document(capsys, monkeypatch, task_models, pipes):
    document = LONG[:3000] + "\n\n" + LONG[3000:]  # blank lines are part of the one document
    stdin_bytes(monkeypatch, document.encode())
    code, out, _ = run(capsys, ["text-classification", "--model", str(task_models["text-classification"])])
    assert code == 0 and json_lines(out) == plain(pipes["text-classification"]([document]))


def test_lines_give_one_output_per_line(capsys, monkeypatch, tmp_path, task_models, pipes):
    model = str(task_models["text-classification"])
    stdin_bytes(monkeypatch, ("\n".join(SHORT) + "\n").encode())
    code, out, _ = run(capsys, ["text-classification", "--model", model, "--lines"])
    assert code == 0 and json_lines(out) == plain(pipes["text-classification"](SHORT))
    (tmp_path / "lines.txt").write_text("\r\n".join([*SHORT, LONG]), encoding="utf-8")
    stdin_bytes(monkeypatch, b"")
    code, out, _ = run(capsys, ["text-classification", "--model", model, "--lines", "--file",
                                str(tmp_path / "lines.txt"), "--top-k", "2"])
    assert code == 0 and json_lines(out) == plain(pipes["text-classification"]([*SHORT, LONG], top_k=2))


def test_token_classification_long_stdin(capsys, monkeypatch, task_models, pipes):
    model = str(task_models["token-classification"])
    for strategy in ("simple", "none"):
        stdin_bytes(monkeypatch, LONG.encode())
        code, out, _ = run(capsys, ["ner", "--model", model, "--aggregation-strategy", strategy])
        expected = pipes["token-classification"](LONG, aggregation_strategy=strategy)
        assert code == 0 and json_lines(out) == [plain(expected)]
        assert expected  # a random 3-label model tags something in 1,850 tokens
    stdin_bytes(monkeypatch, b"")
    code, out, _ = run(capsys, ["token-classification", "--model", model, *SHORT])
    assert code == 0 and json_lines(out) == plain(pipes["token-classification"](SHORT))


def test_question_answering_long_context(capsys, monkeypatch, tmp_path, task_models, pipes):
    model, question = str(task_models["question-answering"]), "Who carried me home?"
    (tmp_path / "book.txt").write_text(LONG, encoding="utf-8")
    code, out, _ = run(capsys, ["question-answering", "--model", model, "--question", question, "--context-file",
                                str(tmp_path / "book.txt")])
    assert code == 0 and json_lines(out) == [plain(pipes["question-answering"](question=question, context=LONG))]
    stdin_bytes(monkeypatch, LONG.encode())
    code, out, _ = run(capsys, ["question-answering", "--model", model, "--question", question, "--top-k", "3",
                                "--max-answer-len", "5"])
    expected = pipes["question-answering"](question=question, context=LONG, top_k=3, max_answer_len=5)
    assert code == 0 and json_lines(out) == [plain(expected)]
    code, out, _ = run(capsys, ["question-answering", "--model", model, "--question", question,
                                "--context", SHORT[0], "--context", SHORT[1]])
    expected = pipes["question-answering"](question=[question] * 2, context=SHORT)
    assert code == 0 and json_lines(out) == plain(expected)


# ----------------------------------------------------------------------------------------------- errors
def _missing_model(models, tmp):
    return ["fill-mask", "--model", str(tmp / "no-such-model"), "a [MASK]"]


ERRORS = {
    # name: (argv builder, stdin, exit status, message pattern)
    "empty text": (lambda m, t: ["fill-mask", "--model", m["fill-mask"], ""], b"", 2, "TEXT argument 1 is empty"),
    "whitespace text": (lambda m, t: ["text-classification", "--model", m["text-classification"], "ok", " \t "],
                        b"", 2, "TEXT argument 2 is whitespace only"),
    "whitespace stdin": (lambda m, t: ["text-classification", "--model", m["text-classification"]], b" \n\t\n",
                         1, "standard input is whitespace only"),
    "blank line": (lambda m, t: ["text-classification", "--model", m["text-classification"], "--lines"],
                   b"one\n  \nthree\n", 1, "line 2 of standard input is whitespace only"),
    "invalid utf-8 file": (lambda m, t: ["text-classification", "--model", m["text-classification"], "--file",
                                         str(t / "bad.txt")], b"", 1,
                           r"file '.*bad.txt' is not valid UTF-8 \(byte 0xff at offset 6\)"),
    "invalid utf-8 stdin": (lambda m, t: ["token-classification", "--model", m["token-classification"]],
                            b"caf\xc3\xa9 \xff", 1, "standard input is not valid UTF-8"),
    "question too long": (lambda m, t: ["question-answering", "--model", m["question-answering"], "--question",
                                        "why " * 300, "--context", "Because."], b"", 1,
                          r"--context 1: question of \d+ tokens leaves no room for context in 256-token windows"),
    "empty question": (lambda m, t: ["question-answering", "--model", m["question-answering"], "--question", " ",
                                     "--context", "Because."], b"", 2, "--question is empty"),
    "no mask": (lambda m, t: ["fill-mask", "--model", m["fill-mask"], "a [MASK]", "no mask here"], b"", 1,
                r"TEXT argument 2: no \[MASK\] token in the text"),
    "unknown task": (lambda m, t: ["summarization", "--model", m["fill-mask"]], b"", 2,
                     "invalid choice: 'summarization'"),
    "missing model folder": (_missing_model, b"", 1, "model folder .*no-such-model.* does not exist"),
    "missing file": (lambda m, t: ["fill-mask", "--model", m["fill-mask"], "--file", str(t / "nope.txt")], b"", 1,
                     r"file '.*nope.txt' does not exist"),
    "stdin twice": (lambda m, t: ["fill-mask", "--model", m["fill-mask"], "--file", "-", "--file", "-"],
                    b"a [MASK]", 2, "can be read only once"),
    "missing --model": (lambda m, t: ["fill-mask", "a [MASK]"], b"", 2, "the following arguments are required: --model"),
    "bad --top-k": (lambda m, t: ["fill-mask", "--model", m["fill-mask"], "--top-k", "0", "a [MASK]"], b"", 2,
                    "argument --top-k: must be at least 1, got 0"),
    "window too long": (lambda m, t: ["fill-mask", "--model", m["fill-mask"], "--max-length", "999", "a [MASK]"],
                        b"", 1, r"max_length 999 must lie in \[8, 256\]"),
    "unknown option": (lambda m, t: ["fill-mask", "--model", m["fill-mask"], "--topk", "2", "a [MASK]"], b"", 2,
                       "unrecognized arguments: --topk"),
    "two context sources": (lambda m, t: ["question-answering", "--model", m["question-answering"], "--question",
                                          "q?", "--context", "c", "--context-file", "f"], b"", 2, "not allowed with"),
    "no command": (lambda m, t: [], b"", 2, "no command given"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_one_line(case, capsys, monkeypatch, tmp_path, task_models):
    build, stdin, status, pattern = ERRORS[case]
    (tmp_path / "bad.txt").write_bytes(b"hello \xff\xfe world")
    stdin_bytes(monkeypatch, stdin)
    monkeypatch.delenv("BIGBIRD_DEBUG", raising=False)
    code, out, err = run(capsys, build({k: str(v) for k, v in task_models.items()}, tmp_path))
    assert (code, out) == (status, "")
    assert err.startswith("bigbird: error: ") and err.count("\n") == 1, err
    assert re.search(pattern, err), err


def test_debug_shows_traceback(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("BIGBIRD_DEBUG", "1")
    stdin_bytes(monkeypatch, b"")
    code, _, err = run(capsys, ["fill-mask", "--model", str(tmp_path / "none"), "a [MASK]"])
    assert code == 1 and "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1].startswith("bigbird: error: model folder")


# ------------------------------------------------------------------------------------ help and version
def test_version(capsys):
    from importlib.metadata import version

    code, out, _ = run(capsys, ["--version"])
    assert code == 0 and out.strip() == f"bigbird {version('bigbird')}"


@pytest.mark.parametrize("command", ["fill-mask", "question-answering", "text-classification",
                                     "token-classification", "convert"])
def test_help_has_an_example(command, capsys):
    code, out, _ = run(capsys, [command, "--help"])
    assert code == 0 and f"usage: bigbird {command}" in out
    assert "examples:" in out and f"\n  bigbird {command} " in out


@pytest.mark.parametrize("command", ["fill-mask", "question-answering", "text-classification",
                                     "token-classification"])
def test_help_names_only_arguments_the_command_takes(command, capsys):
    """Every --flag the help text mentions is one of the command's, and it speaks of TEXT arguments only when the
    command takes them (question-answering takes --context instead)."""
    import argparse

    from bigbird.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    actions = sub.choices[command]._actions
    flags = {s for a in actions for s in a.option_strings}
    positional = {a.metavar for a in actions if not a.option_strings}
    code, out, _ = run(capsys, [command, "--help"])
    assert code == 0
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", out))
    assert mentioned and mentioned <= flags, sorted(mentioned - flags)
    assert ("TEXT argument" in out) == ("TEXT" in positional), (command, positional)


def test_main_help_lists_commands(capsys):
    code, out, _ = run(capsys, ["--help"])
    assert code == 0 and "examples:" in out and "BIGBIRD_DEBUG" in out
    for command in ("fill-mask", "question-answering", "text-classification", "token-classification", "convert",
                    "batch", "serve", "finetune"):
        assert command in out


def test_console_script_help():
    script = Path(sys.executable).parent / "bigbird"
    if not script.is_file():
        pytest.skip(f"console script not installed next to {sys.executable} (pip install -e .)")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: bigbird") and "examples:" in result.stdout


# ------------------------------------------------------------------------------- Ray-layer dispatchers
@pytest.mark.parametrize(("command", "module"), [("batch", "pipelines.batch"), ("serve", "serve.cli"),
                                                 ("finetune", "jobs.finetune")])
def test_dispatch_hands_over_every_argument(command, module, capsys, monkeypatch):
    seen = []

    def fake_main(argv):
        seen.append(argv)
        if "--help" in argv:
            print(f"usage: {module} help")
            raise SystemExit(0)
        return 3

    monkeypatch.setitem(sys.modules, module, types.SimpleNamespace(main=fake_main))
    rest = ["--config", "job.yaml", "input", "-v", "--", "--literal"]
    assert main([command, *rest]) == 3
    assert main([command, "--help"]) == 0 and f"usage: {module} help" in capsys.readouterr().out
    assert seen == [rest, ["--help"]]


def test_dispatch_without_module(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "serve.cli", None)  # as if serve/cli.py did not exist
    code, out, err = run(capsys, ["serve", "--help"])
    assert (code, out) == (2, "")
    assert err == "bigbird: error: 'bigbird serve' is not available: module serve.cli is not installed\n"


@pytest.mark.parametrize(("command", "module"), [("batch", "pipelines.batch"), ("serve", "serve.cli"),
                                                 ("finetune", "jobs.finetune")])
def test_dispatch_shows_their_help(command, module, capsys):
    pytest.importorskip(module, reason=f"{module} is not importable here")
    code, out, _ = run(capsys, [command, "--help"])
    assert code == 0 and out.startswith("usage:") and command in out.splitlines()[0]

"""``bigbird serve`` (serve.cli.main): help, flags over config, one-line errors before Ray starts.

The real run (join a cluster, serve, stop on Ctrl-C) is ``test_cli_serves_until_interrupted`` in
test_serve.py, which joins the Serve instance already running there.
"""

from __future__ import annotations

import pytest

from serve.cli import main, parser, settings_from


def test_help_has_an_example(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "bigbird serve --model" in out and "--address" in out and "curl" in out


@pytest.mark.parametrize(("argv", "words"), [
    ([], ["--model is required"]),
    (["--model", "/no/such/model"], ["cannot read model", "/no/such/model"]),
    (["--model", "MODEL", "--port", "99999"], ["port", "99999"]),
    (["--model", "MODEL", "--task", "summarization"], ["unknown task", "summarization"]),
    (["--model", "MODEL", "--replicas", "0"], ["replicas"]),
    (["--config", "/no/such.yaml"], ["does not exist"]),
])
def test_bad_input_is_one_line_and_nonzero(capsys, task_models, argv, words):
    argv = [str(task_models["fill-mask"]) if a == "MODEL" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bigbird serve: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err


def test_usage_error_is_nonzero(capsys):
    assert main(["--port", "eighty"]) == 2
    assert "invalid int value" in capsys.readouterr().err


def test_flags_override_config(tmp_path):
    config = tmp_path / "s.yaml"
    config.write_text("model: ./a\nport: 9000\nmax_batch_size: 4\n")
    s = settings_from(parser().parse_args(["--config", str(config), "--port", "9100", "--num-gpus", "0"]))
    assert (s.model, s.port, s.max_batch_size, s.num_gpus) == ("./a", 9100, 4, 0)

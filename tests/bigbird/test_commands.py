"""The Ray commands through entry points (the core imports none of them), and the one exit-status rule."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, ValidationError

import bigbird
from bigbird import cli, commands
from bigbird.commands import CommandError, UsageError, exit_status, fail, one_line

ROOT = Path(__file__).parents[2]
SHELLS = ("pipelines", "serve", "jobs")


def test_core_names_no_shell_module():
    """No module of bigbird/ imports (or names as an import string) the Ray layers."""
    for path in Path(bigbird.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value] if node.value.split(".")[0] in SHELLS and "." in node.value else []
            else:
                continue
            bad = [n for n in names if n.split(".")[0] in SHELLS]
            assert not bad, f"{path.relative_to(ROOT)} names {bad}"


def test_ray_commands_come_from_the_entry_point_group():
    found = commands.ray_commands()
    assert {n: ep.value for n, ep in found.items()} == {
        "batch": "pipelines.batch:main", "finetune": "jobs.finetune:main", "serve": "serve.cli:main"}


def test_a_registered_command_is_dispatched(monkeypatch, capsys):
    seen = []
    module = types.SimpleNamespace(run=lambda argv: seen.append(argv) or 4)
    monkeypatch.setitem(sys.modules, "fake_shell", module)
    monkeypatch.setattr(cli, "ray_commands", lambda: {"fake": EntryPoint("fake", "fake_shell:run", commands.GROUP)})
    assert cli.main(["fake", "--x", "1"]) == 4 and seen == [["--x", "1"]]
    monkeypatch.setattr(cli, "ray_commands", lambda: {"fake": EntryPoint("fake", "fake_shell:nope", commands.GROUP)})
    assert cli.main(["fake"]) == 2
    assert "fake_shell:nope is not a function" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="setuptools is needed to build")
def test_installed_copy_finds_the_commands(tmp_path):
    """A real install (wheel metadata, no source tree next to it) registers the group."""
    source, target = tmp_path / "src", tmp_path / "site"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):  # a copy: building in the checkout would leave build/ there
        shutil.copy(ROOT / name, source / name)
    for package in ("bigbird", *SHELLS):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--target", str(target), str(source)], capture_output=True, text=True, timeout=600)
    if build.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {build.stderr[-300:]}")
    code = ("import bigbird.commands as c, sys; assert c.__file__.startswith(sys.argv[1]), c.__file__; "
            "assert not (c.Path(c.__file__).parents[1] / 'pyproject.toml').exists(); "
            "print(sorted(c.ray_commands()))")
    run = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['batch', 'finetune', 'serve']"


class _Settings(BaseModel):
    stride: int = Field(ge=0)
    name: str


def test_one_exit_rule(capsys, monkeypatch):
    try:
        _Settings(stride=-1)
    except ValidationError as e:
        invalid = e
    assert exit_status(UsageError("x")) == 2 and exit_status(invalid) == 2
    assert exit_status(CommandError("x")) == 1 and exit_status(ValueError("x")) == 1
    assert exit_status(RuntimeError("x")) == 1 and exit_status(KeyboardInterrupt()) == 130
    assert one_line(invalid) == "stride: Input should be greater than or equal to 0; name: Field required"
    assert one_line(RuntimeError("a\n  b")) == "RuntimeError: a b" and one_line(OSError("gone")) == "gone"
    monkeypatch.delenv("BIGBIRD_DEBUG", raising=False)
    assert fail("bigbird batch", invalid) == 2
    assert capsys.readouterr().err == ("bigbird batch: error: stride: Input should be greater than or equal to 0; "
                                       "name: Field required\n")
    assert fail("bigbird serve", RuntimeError("boom"), status=3) == 3
    assert capsys.readouterr().err == "bigbird serve: error: RuntimeError: boom (BIGBIRD_DEBUG=1 shows the traceback)\n"
    for value, shows in (("0", False), ("no", False), ("1", True), ("yes", True)):
        monkeypatch.setenv("BIGBIRD_DEBUG", value)
        try:
            raise ValueError("bad value 7")
        except ValueError as e:
            assert fail("bigbird", e) == 1
        err = capsys.readouterr().err
        assert ("Traceback (most recent call last)" in err) is shows
        assert err.splitlines()[-1] == "bigbird: error: bad value 7"
    assert fail("bigbird", KeyboardInterrupt()) == 130 and capsys.readouterr().err == "bigbird: interrupted\n"

"""Every command in the README is run somewhere: by ``.ci/run``, by this file, or by a named test.

The README's ```bash blocks are parsed into commands; each must match one entry of :data:`COVERAGE`, so a new
command without a test fails here. Commands this file runs itself are the cheap ones (help texts, the genome
converter on the shipped GenBank excerpt, the Python API on the committed model, the job and Serve configs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent

# (pattern matched against the start of a README command, where it is exercised)
COVERAGE: list[tuple[str, str]] = [
    (r"bash scripts/main_job\.sh", "ci"),
    (r"bash \.ci/run", "ci"),
    (r"python -m corpora fetch rrna16s --dest data", "ci"),
    (r"bigbird batch --task text-classification --model models/rrna16s-phylum", "ci"),
    (r"python -m corpora\.genome ", "here:test_genome_command"),
    (r"python -m corpora fetch nctc11397", "test:tests/corpora/test_genome_tagger.py::test_readme_batch_command_on_a_chromosome_slice"),
    (r"bigbird batch --task token-classification --model models/kaptive-cds", "test:tests/corpora/test_genome_tagger.py::test_readme_batch_command_on_a_chromosome_slice"),
    (r"python -m corpora\.genome\.genes --corpus", "test:tests/corpora/test_genome_tagger.py::test_readme_batch_command_on_a_chromosome_slice"),
    (r"bigbird batch --help", "here:test_help_commands"),
    (r"ray job submit --working-dir \. -- python -m pipelines\.batch",
     "test:tests/test_submit.py::test_readme_batch_submit_runs_on_a_local_cluster"),
    (r"bigbird serve --model models/rrna16s-phylum", "test:tests/serve/test_serve.py::test_cli_serves_until_interrupted"),
    (r"curl -s localhost:8000/v1/text-classification", "test:tests/serve/test_serve.py::test_endpoint_matches_pipeline"),
    (r"serve run serve/config\.yaml", "here:test_serve_config"),
    (r"serve deploy serve/config\.yaml", "here:test_serve_config"),
    (r"bigbird finetune --config jobs/configs/rrna16s_phylum\.yaml", "here:test_finetune_config"),
    (r"ray job submit --working-dir \. -- python -m jobs\.finetune",
     "test:tests/test_submit.py::test_readme_finetune_submit_runs_on_a_local_cluster"),
]


def readme_commands() -> list[str]:
    """Commands of the README's ```bash blocks: continuation lines joined, comments and blank lines dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_every_readme_command_is_exercised():
    commands = readme_commands()
    assert len(commands) >= 10, commands
    uncovered = [c for c in commands if not any(re.match(p, c) for p, _ in COVERAGE)]
    assert not uncovered, f"README commands with no test (add them to COVERAGE): {uncovered}"
    unused = [p for p, _ in COVERAGE if not any(re.match(p, c) for c in commands)]
    assert not unused, f"COVERAGE entries no README command matches: {unused}"


def test_named_tests_exist():
    here = Path(__file__).read_text(encoding="utf-8")
    for _, where in COVERAGE:
        kind, _, target = where.partition(":")
        if kind == "test":
            path, _, name = target.partition("::")
            assert f"def {name}(" in (ROOT / path).read_text(encoding="utf-8"), where
        elif kind == "here":
            assert f"def {target}(" in here, where


def test_ci_runs_the_main_job_commands():
    """``.ci/run`` runs the main job script, which fetches the corpus and runs the README's batch command."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/main_job.sh" in ci and "pytest" in ci
    script = (ROOT / "scripts" / "main_job.sh").read_text(encoding="utf-8")
    assert "-m corpora fetch rrna16s --dest data" in script
    batch = " ".join(script[script.index('"$VENV/bin/bigbird" batch'):].replace("\\\n", " ").split())
    readme_batch = next(c for c in readme_commands() if c.startswith("bigbird batch --task text-classification"))
    for flag in ("--task text-classification", "--input data/rrna16s", "--keep-columns label=label_true"):
        assert flag in batch and flag in readme_batch, flag
    assert 'MODEL=${MODEL:-models/rrna16s-phylum}' in script and 'OUTPUT=${OUTPUT:-outputs/rrna16s-phylum}' in script


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """A command as a user runs it from ``cwd``, with this environment's ``bin`` first on PATH."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_help_commands():
    out = _run(["bigbird", "batch", "--help"], ROOT)
    assert out.returncode == 0 and "--question-column" in out.stdout and "examples:" in out.stdout


def test_genome_command(tmp_path):
    """The README's converter command as written, from a copy of the repository's layout."""
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    command = next(c for c in readme_commands() if c.startswith("python -m corpora.genome"))
    out = _run([sys.executable, *command.split()[1:]], tmp_path, PYTHONPATH=str(ROOT))
    assert out.returncode == 0, out.stderr
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "data" / "genome")
    assert {"id", "text", "offset", "spans"} <= set(table.column_names) and table.num_rows >= 2


def test_python_api_local_model():
    """The README's Python API lines that need no hub: the committed 16S model on a gene from the fixtures."""
    block = next(b for b in python_blocks() if "models/rrna16s-phylum" in b)
    local = "\n".join(line for line in block.splitlines()
                      if "google/" not in line and not line.startswith("fill(") and not line.startswith("#"))
    scope: dict = {}
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        exec(compile("import bigbird\n" + local, "README.md", "exec"), scope)  # noqa: S102 - our own README
        result = scope["clf"](scope["gene"])
    finally:
        os.chdir(cwd)
    assert result[0]["label"] == "Actinobacteria" and result[0]["score"] > 0.5


def test_serve_config():
    """serve/config.yaml (for ``serve run`` / ``serve deploy``) names an importable app and valid settings that
    point at the committed model, so it runs offline as written."""
    import yaml

    from serve.settings import ServeSettings

    config = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text(encoding="utf-8"))
    app = config["applications"][0]
    module, _, attr = app["import_path"].partition(":")
    assert callable(getattr(__import__(module, fromlist=[attr]), attr))
    settings = ServeSettings.model_validate(app["args"])
    assert (ROOT / settings.model / "model.safetensors").is_file(), settings.model


def test_finetune_config():
    """The job file the README trains with validates, and its inputs are what the main job fetches."""
    from jobs.finetune import load_settings

    settings = load_settings(str(ROOT / "jobs" / "configs" / "rrna16s_phylum.yaml"), [])
    assert settings.task == "text-classification"
    assert "data/rrna16s" in str(settings.data.train)


def test_module_entry_points():
    """What ``ray job submit --working-dir . -- python -m ...`` runs on a cluster's driver. (Submitting needs a
    cluster with a job server; not run here.)"""
    for module, words in (("pipelines.batch", "--address"), ("jobs.finetune", "--config")):
        out = _run([sys.executable, "-m", module, "--help"], ROOT)
        assert out.returncode == 0 and words in out.stdout, (module, out.stderr)


@pytest.mark.parametrize("command", ["batch", "serve", "finetune"])
def test_cli_help_mentions_ray_job_submit_or_example(command):
    out = _run(["bigbird", command, "--help"], ROOT)
    assert out.returncode == 0 and ("example" in out.stdout.lower() or "ray job submit" in out.stdout)

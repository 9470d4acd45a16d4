"""The README's ``ray job submit`` commands, as written, against a local ``ray start --head`` cluster.

The cluster is this test's own: its own ``--temp-dir`` and free ports, 2 CPUs, the dashboard (whose job server
``ray job submit`` talks to) on 127.0.0.1. It is stopped by killing the processes it started (the ``ray start
--block`` process group, then every process whose command line names its temp dir), never ``ray stop``.

The commands run from a copy of the repository's files (what ``git ls-files`` lists: ``data/`` and
``outputs/`` are ignored, as in a fresh clone) with the 200-gene 16S sample as ``data/rrna16s``; tiny-run flags
are appended to keep them short (``--limit`` for the batch job, ``train.max_steps`` / ``data.limit`` for
fine-tuning). Wall times are printed (``-s``), not asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

import corpora
from tests.test_readme import readme_commands

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FIXTURES = ROOT / "tests" / "fixtures" / "corpora"
BATCH_FLAGS = " --limit 16 --batch-size 8"
FINETUNE_FLAGS = (" --override train.max_steps=2 --override data.limit=60 --override model.unigram.sample=40"
                  " --override train.checkpoint_every_steps=1 --override train.log_every=1")

pytestmark = [pytest.mark.timeout(1500), pytest.mark.slow]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _kill_cluster(proc: subprocess.Popen, temp: Path) -> None:
    """Stop only this cluster: its process group, then any process left that names its temp dir."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=30)
            break
        except subprocess.TimeoutExpired:
            continue
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.info["pid"] != os.getpid() and str(temp) in " ".join(p.info["cmdline"] or []):
            try:
                p.kill()
            except psutil.Error:
                pass


@pytest.fixture(scope="module")
def head():
    """A local head node with the dashboard; yields the environment a user's shell would have."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout (the copy of the repository is what git ls-files lists)")
    temp = Path(tempfile.mkdtemp(prefix="rsub", dir="/tmp"))  # short: Ray's socket paths have a length limit
    gcs, dash, node, obj, client, agent, agent_grpc, renv, metrics = _free_ports(9)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", RAY_AUTH_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    log = open(temp / "head.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--temp-dir={temp}", f"--port={gcs}", "--num-cpus=2",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--node-manager-port={node}", f"--object-manager-port={obj}", f"--ray-client-server-port={client}",
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--runtime-env-agent-port={renv}", f"--metrics-export-port={metrics}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    started = time.perf_counter()
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited {proc.returncode}: {(temp / 'head.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() - started > 300:
                raise RuntimeError(f"the dashboard did not answer in 300 s: {(temp / 'head.log').read_text()[-2000:]}")
            time.sleep(2)
        print(f"\n[submit] head up in {time.perf_counter() - started:.0f} s at {address}")
        yield {"address": address, "env": {**env, "RAY_ADDRESS": address}}
    finally:
        _kill_cluster(proc, temp)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The repository's files as a clone has them, plus the 16S sample where the README's commands read it."""
    dest = tmp_path_factory.mktemp("clone")
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    corpora.convert("rrna16s", FIXTURES / "rRNA16S.gold.sample.fasta", dest / "data" / "rrna16s")
    return dest


def _submit(command: str, project: Path, head: dict, timeout: int = 900) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    try:
        out = subprocess.run(["bash", "-c", command], cwd=project, env=head["env"], capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        subprocess.run(["bash", "-c", "ray job list | grep -o 'raysubmit_[A-Za-z0-9]*' | sort -u | "
                                      "xargs -r -n1 ray job stop"], cwd=project, env=head["env"], timeout=120)
        raise
    return out, time.perf_counter() - started


def _readme_submit(module: str) -> str:
    found = [c for c in readme_commands() if c.startswith("ray job submit") and f"python -m {module}" in c]
    assert len(found) == 1, (module, found)
    return found[0]


def test_readme_finetune_submit_runs_on_a_local_cluster(head, project):
    """The README's command as written: relative paths of the job file against the submitter (--base-dir "$PWD");
    checkpoints and the exported model land in the submitter's folder, not in Ray's copy of the working dir."""
    command = _readme_submit("jobs.finetune")
    out, took = _submit(command + FINETUNE_FLAGS, project, head)
    print(f"[submit] finetune job: {took:.0f} s, exit {out.returncode}")
    assert out.returncode == 0 and "succeeded" in out.stdout, out.stdout[-3000:] + out.stderr[-2000:]
    summary = json.loads(next(line for line in out.stdout.splitlines()[::-1] if line.startswith("{")))
    export = project / "outputs" / "models" / "rrna16s-phylum"
    assert summary["export_dir"] == str(export) and (export / "model.safetensors").is_file()
    assert json.loads((export / "trainer_state.json").read_text())["step"] == 2
    assert (project / "outputs" / "runs" / "rrna16s-phylum").is_dir()  # checkpoints in the submitter's folder


def test_readme_batch_submit_runs_on_a_local_cluster(head, project):
    """The README's batch command as written: absolute input and output under the submitter's folder."""
    command = _readme_submit("pipelines.batch")
    out, took = _submit(command + BATCH_FLAGS, project, head)
    print(f"[submit] batch job: {took:.0f} s, exit {out.returncode}")
    assert out.returncode == 0 and "succeeded" in out.stdout, out.stdout[-3000:] + out.stderr[-2000:]
    output = command.split("--output ")[1].split()[0].strip('"').replace("$PWD", str(project))
    table = pq.read_table(output)
    ids = table.column("id").to_pylist()
    assert len(ids) == 16 and len(set(ids)) == 16 and table.column("error").null_count == 16


def test_relative_data_under_submit_is_refused_before_any_work(head, project):
    """The command the README used to show (no --base-dir): refused with what to pass instead, nothing written."""
    command = "ray job submit --working-dir . -- python -m jobs.finetune --config jobs/configs/rrna16s_phylum.yaml"
    out, took = _submit(command + " --override run.name=refused", project, head, timeout=600)
    print(f"[submit] refused job: {took:.0f} s, exit {out.returncode}")
    assert out.returncode != 0 and "failed" in out.stdout, out.stdout[-3000:]
    assert "data.train 'data/rrna16s' is a relative path" in out.stdout and '--base-dir "$PWD"' in out.stdout
    assert not (project / "outputs" / "runs" / "refused").exists()

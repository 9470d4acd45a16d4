"""``bigbird serve`` started from a script stops on SIGINT and SIGTERM: its own Ray instance and Serve are shut
down, none of the processes it started is left, and it exits 130 / 143 (bigbird/commands.py's rule: 128 + the
signal). The child starts with SIGINT ignored, as a shell script's background job does (``bigbird serve &``),
which Python alone would keep ignoring."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.serve.common import free_port, post

ROOT = Path(__file__).parents[2]
START_S = 600  # starting a Ray instance and Serve on a loaded 2-core machine (under a minute when quiet)
STOP_S = 120  # bound on the whole shutdown (the command's own watchdog is 60 s)


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(("signum", "status", "message"), [
    (signal.SIGINT, 130, "bigbird serve: interrupted"),
    (signal.SIGTERM, 143, "bigbird serve: terminated (SIGTERM)"),
])
def test_serve_stops_on_signal_and_leaves_nothing(task_models, tmp_path, signum, status, message):
    psutil = pytest.importorskip("psutil")
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "cli.yaml"
    config.write_text("num_cpus: 0.25\nnum_gpus: 0\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # start its own Ray instance
    cmd = [sys.executable, "-m", "serve.cli", "--model", str(task_models["text-classification"]), "--port", str(port),
           "--config", str(config), "--metrics-port", str(metrics_port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**env, "RAY_AUTH_MODE": "disabled"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sigint, start_new_session=True)
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda s=s, lines=lines: lines.extend(iter(s.readline, "")), daemon=True)
               for s, lines in ((proc.stdout, out), (proc.stderr, err))]
    for t in readers:
        t.start()
    started: list = []
    try:
        deadline = time.monotonic() + START_S
        while not any(line.startswith("serving ") for line in out):
            assert proc.poll() is None, f"exited {proc.returncode}: {''.join(err)[-3000:]}"
            assert time.monotonic() < deadline, f"not serving after {START_S} s: {out} {''.join(err)[-3000:]}"
            time.sleep(0.5)
        serving = next(line for line in out if line.startswith("serving "))
        assert f":{metrics_port}/metrics" in serving, serving
        r = post(f"http://127.0.0.1:{port}/v1/text-classification", {"inputs": "hello"})
        assert r.status_code == 200, r.text
        assert requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).status_code == 200
        started = proc_tree(psutil, proc.pid)
        names = " ".join(p.name() for p in started)
        assert "raylet" in names and "gcs_server" in names, names  # it started a Ray instance of its own
        proc.send_signal(signum)
        assert proc.wait(timeout=STOP_S) == status, "".join(err)[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()  # the Ray processes it started die with it (Ray binds them to their parent)
            proc.wait(timeout=120)
    for t in readers:
        t.join(timeout=10)
    assert "stopping" in "".join(out) and message in "".join(err), (out, "".join(err)[-3000:])
    left = alive(psutil, started, within_s=30)
    assert not left, f"processes it started still run: {left}"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)


def proc_tree(psutil, pid: int) -> list:
    return psutil.Process(pid).children(recursive=True)


def alive(psutil, procs: list, within_s: float) -> list[str]:
    """The processes of ``procs`` still running (zombies count as gone) after waiting up to ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        left = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{p.pid} {p.name()}")
            except psutil.NoSuchProcess:
                pass
        if not left or time.monotonic() > deadline:
            if left:
                for p in procs:  # do not leave them to the next test
                    try:
                        p.kill()
                    except psutil.NoSuchProcess:
                        pass
            return left
        time.sleep(0.5)

"""``bigbird serve`` on a cluster with Ray's token authentication on: ``ray start --head`` with
``RAY_AUTH_MODE=token`` and its own token (in a temporary HOME, its own ports and temp dir); a driver with a
wrong token is refused; ``bigbird serve --address`` with ``RAY_AUTH_MODE=token``, the token in
``RAY_AUTH_TOKEN`` and an API key in ``BIGBIRD_API_KEY`` serves: one request with the key is answered, one
without gets 401. The head is stopped by its PID at the end."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.serve.common import free_port, post

ROOT = Path(__file__).parents[2]
START_S = 600  # a Ray head and Serve on a loaded 2-core machine
STOP_S = 120


class Lines:
    """A process's output lines, read in a thread (so its pipe never fills)."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True)
        self.thread.start()

    def text(self) -> str:
        return "".join(self.lines)


def stop(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> None:
    """Stop a process this test started, then what is left of its process group (its own session)."""
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            proc.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=60)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group is this test's: start_new_session below
    except ProcessLookupError:
        pass


def test_serve_on_a_cluster_with_token_authentication(task_models):
    temp = Path(tempfile.mkdtemp(prefix="bbauth", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    token = secrets.token_hex(32)
    token_path = temp / "home" / ".ray" / "auth_token"
    token_path.parent.mkdir(parents=True)
    token_path.write_text(token)
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    base.update(HOME=str(temp / "home"), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    gcs, client, agent, metrics = free_port(), free_port(), free_port(), free_port()
    head_env = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}
    ray_bin = str(Path(sys.executable).parent / "ray")
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", f"--port={gcs}", f"--ray-client-server-port={client}",
         f"--dashboard-agent-listen-port={agent}", f"--metrics-export-port={metrics}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp / 'ray'}"],
        cwd=ROOT, env=head_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    head_out = Lines(head.stdout)
    server = None
    try:
        port, key = free_port(), secrets.token_hex(16)
        # The client side as serve/README.md tells it: for an explicit address Ray wants RAY_AUTH_MODE=token (it
        # turns token mode on by itself only for `auto`, so a token never goes to an address by accident).
        client_env = {**base, "RAY_AUTH_MODE": "token"}
        serve_env = {**client_env, "RAY_AUTH_TOKEN": token, "BIGBIRD_API_KEY": key}
        cmd = [sys.executable, "-m", "serve.cli", "--model", str(task_models["text-classification"]),
               "--address", f"127.0.0.1:{gcs}", "--port", str(port), "--num-cpus", "0.5"]
        deadline = time.monotonic() + START_S
        while "Ray runtime started" not in head_out.text():
            assert head.poll() is None, f"ray start exited {head.returncode}: {head_out.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no head after {START_S} s: {head_out.text()[-3000:]}"
            time.sleep(0.5)
        # Authentication is on: a driver with a wrong token is turned away.
        wrong = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address='127.0.0.1:{gcs}')"], cwd=ROOT,
                               env={**client_env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}, capture_output=True, text=True,
                               timeout=300)
        assert wrong.returncode != 0 and "auth" in wrong.stderr.lower(), wrong.stderr[-3000:]
        server = subprocess.Popen(cmd, cwd=ROOT, env=serve_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True)
        out, err = Lines(server.stdout), Lines(server.stderr)
        while not any(line.startswith("serving ") for line in out.lines):
            assert server.poll() is None, f"bigbird serve exited {server.returncode}: {err.text()[-3000:]}"
            assert time.monotonic() < deadline, f"not serving after {START_S} s: {err.text()[-3000:]}"
            time.sleep(0.5)
        assert "API keys required" in out.text(), out.text()
        url = f"http://127.0.0.1:{port}/v1/text-classification"
        r = post(url, {"inputs": "hello"}, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        assert post(url, {"inputs": "hello"}).status_code == 401
        stop(server)
        assert server.returncode == 143, err.text()[-3000:]
        assert key not in out.text() + err.text() and token not in out.text() + err.text()
    finally:
        if server is not None:
            stop(server)
        stop(head)
        shutil.rmtree(temp, ignore_errors=True)

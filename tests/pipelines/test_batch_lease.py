"""One writer per output folder: the lease (local disk and moto's S3 server), its refusal, stale takeover, the
fence before a result file is published, and overlapping part files settled at resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from pipelines import batch, lease, manifest
from pipelines.settings import BatchSettings
from tests.helpers import SPM_LINES

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 40


def _race(make, n: int = 8) -> list[lease.Lease]:
    """``n`` leases acquired at the same moment from threads; returns those that got it."""
    barrier, won, lock = threading.Barrier(n), [], threading.Lock()

    def one() -> None:
        held = make()
        barrier.wait()
        try:
            held.acquire()
        except lease.LeaseHeld:
            return
        with lock:
            won.append(held)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


def test_of_jobs_starting_at_once_one_holds_the_local_lease(tmp_path):
    for _ in range(5):
        won = _race(lambda: lease.Lease(lease.LocalStore(str(tmp_path / lease.LEASE)), "out"))
        assert len(won) == 1
        won[0].release()
        assert not (tmp_path / lease.LEASE).exists()


def test_a_second_job_is_refused_naming_the_holder(tmp_path):
    store = lease.LocalStore(str(tmp_path / lease.LEASE))
    first = lease.Lease(store, "outputs/x")
    first.acquire()
    with pytest.raises(lease.LeaseHeld) as e:
        lease.Lease(store, "outputs/x").acquire()
    text = str(e.value)
    assert text.startswith(f"output 'outputs/x' is being written by another batch job (host {socket.gethostname()}, "
                           f"pid {os.getpid()}, started ")
    assert "last renewed 0 s ago); wait for it to finish or stop it" in text
    assert f"not renewed for {lease.TTL_S:.0f} s (a killed job) is taken over" in text
    assert f"delete {lease.LEASE} in the output folder" in text
    first.release()
    lease.Lease(store, "outputs/x").acquire()  # free again


def test_a_stale_lease_is_taken_over_and_reported(tmp_path):
    path = tmp_path / lease.LEASE
    old = lease.Holder("a" * 32, "another-host", 4242, 1000.0, time.time() - lease.TTL_S - 5)
    path.write_bytes(old.to_bytes())
    lines: list[str] = []
    taker = lease.Lease(lease.LocalStore(str(path)), "out", report=lines.append)
    taker.acquire()
    assert lease.Holder.parse(path.read_bytes()).token == taker.token
    assert len(lines) == 1 and lines[0].startswith("took over the lease of a job (host another-host, pid 4242, ")
    assert f"not renewed for {lease.TTL_S + 5:.0f} s (more than {lease.TTL_S:.0f} s)" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [lease.LEASE]  # nothing left aside


def test_a_dead_process_of_this_host_loses_its_lease_at_once(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)
    path = tmp_path / lease.LEASE
    path.write_bytes(lease.Holder("b" * 32, socket.gethostname(), dead, time.time(), time.time()).to_bytes())
    lines: list[str] = []
    lease.Lease(lease.LocalStore(str(path)), "out", report=lines.append).acquire()
    assert lines and f"its process {dead} no longer runs on this host" in lines[0]


def test_renewal_finds_a_lost_lease_and_the_fence_refuses_to_publish(tmp_path):
    path = tmp_path / lease.LEASE
    held = lease.Lease(lease.LocalStore(str(path)), "out")
    held.acquire()
    held.renew()
    lease.verify(pafs.LocalFileSystem(), str(tmp_path), held.token)
    path.write_bytes(lease.Holder("c" * 32, "elsewhere", 7, time.time(), time.time()).to_bytes())  # taken over
    with pytest.raises(lease.LeaseLost, match="was taken over by another job \\(host elsewhere, pid 7"):
        held.renew()
    with pytest.raises(lease.LeaseLost, match="is held by another job \\(host elsewhere"):
        lease.verify(pafs.LocalFileSystem(), str(tmp_path), held.token)
    held.lost = "lost"
    held.release()
    assert lease.Holder.parse(path.read_bytes()).host == "elsewhere"  # the taker's lease is left alone


def test_overlapping_parts_are_settled_to_each_row_once():
    parts = {manifest.part_name(0, a, b): (0, a, b) for a, b in [(0, 100), (50, 150), (100, 200), (0, 64)]}
    parts[manifest.part_name(1, 0, 64)] = (1, 0, 64)
    drop = manifest.settle_overlaps(parts)
    assert drop == sorted([manifest.part_name(0, 0, 64), manifest.part_name(0, 50, 150)])
    kept = [parts[n] for n in parts if n not in drop]
    rows = [(f, r) for f, a, b in kept for r in range(a, b)]
    assert len(rows) == len(set(rows))


def _corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus.parquet"
    texts = [" ".join(SPM_LINES[(i + k) % len(SPM_LINES)] for k in range(2)) for i in range(RECORDS)]
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(RECORDS)], "text": texts}), corpus)
    return corpus


def _wait_for(exists, driver: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 300
    while not exists() and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert exists(), f"the first job never took the lease:\n{log.read_text()[-2000:]}"


def _start(args: list[str], log: Path, extra_env: dict | None = None) -> subprocess.Popen:
    script = f"import sys; from pipelines import batch; sys.exit(batch.main({args!r}))"
    env = {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
           "HOME": os.environ.get("HOME", "/tmp"), **(extra_env or {})}
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=f, stderr=f,
                                start_new_session=True)


def test_two_jobs_on_one_local_folder_write_each_id_once(task_models, tmp_path, capsys):
    corpus, out = _corpus(tmp_path), tmp_path / "out"
    model = str(task_models["text-classification"])
    args = ["--task", "text-classification", "--model", model, "--input", str(corpus), "--output", str(out),
            "--stride", "32"]
    log = tmp_path / "first.log"
    first = _start([*args, "--block-records", "4"], log)
    try:
        _wait_for((out / lease.LEASE).exists, first, log)
        code = batch.main([*args, "--block-records", "6"])  # the same command again, other blocks
        err = capsys.readouterr().err
        assert code == 1 and "is being written by another batch job (host" in err and "\n" not in err.strip()
        assert first.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, 9)
    ids = pq.read_table(out, columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == sorted(f"r{i}" for i in range(RECORDS))
    assert not (out / lease.LEASE).exists()  # released at the end


def test_job_refusal_needs_no_ray(task_models, tmp_path, monkeypatch):
    corpus, out = _corpus(tmp_path), tmp_path / "out"
    holder = lease.Lease(lease.LocalStore(str(out / lease.LEASE)), str(out))
    holder.acquire()

    def forbidden(*args, **kwargs):
        raise AssertionError("the job started work it should have refused")

    monkeypatch.setattr(batch, "_execute", forbidden)
    settings = BatchSettings(task="text-classification", model=str(task_models["text-classification"]),
                             input=str(corpus), output=str(out), stride=32)
    with pytest.raises(lease.LeaseHeld):
        batch.run(settings)
    assert sorted(p.name for p in out.iterdir()) == [lease.LEASE]  # no manifest: the folder was not planned
    holder.release()
    with pytest.raises(AssertionError, match="should have refused"):
        batch.run(settings)
    assert not (out / lease.LEASE).exists()  # dropped on failure too
    assert json.loads((out / manifest.MANIFEST).read_text())["input"] == [["corpus.parquet", RECORDS]]

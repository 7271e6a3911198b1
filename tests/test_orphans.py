"""Workers die with the process that started them: a synthesis killed with SIGKILL (a kernel that died, a node
that preempted it) leaves no worker running under ppid 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_synthesis_workers_end_when_their_parent_is_killed(tmp_path):
    cmd = [sys.executable, "-m", "omnirl_core.synthesis", "params/quick/02_synthesis.yaml", "--out", str(tmp_path),
           "--only", "dpd_quick", "--workers", "2", "--no-progress", "--set", "datasets.dpd_quick.n_sequences=8192",
           "--set", "datasets.dpd_quick.sequences_per_shard=4096",
           "--set", "datasets.dpd_quick.batch_size=4096"]  # shards of minutes: a worker must not finish its shard
    workers: list[int] = []
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(workers) < 2 and proc.poll() is None:
            time.sleep(0.2)
            workers = children(proc.pid)
        assert len(workers) >= 2, ("the pool did not start", proc.poll(), proc.stderr.read() if proc.poll() else "")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.time() + 8
        while time.time() < deadline and any(alive(w) for w in workers):
            time.sleep(0.2)
        left = [w for w in workers if alive(w)]
        assert not left, f"workers {left} outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        for w in workers:  # an orphan is no longer proc's child: kill what was seen
            if alive(w):
                os.kill(w, signal.SIGKILL)

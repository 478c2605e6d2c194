"""A real two-node Ray cluster on this box: `ray start --head` and `ray start --address`, each a process of its own,
started and stopped by PID here (never `ray stop`, which ends every Ray process of the user). Token authentication
is on, as Ray 2.60 sets up a new cluster: every node and the job's driver use `RAY_AUTH_MODE=token` and the token in
`~/.ray/auth_token` (on real machines it must be copied to each node and the driver)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_vllm_tutorial.outputs import read_output

RAY = str(Path(sys.executable).with_name("ray"))
CURRENT = Path("/tmp/ray/ray_current_cluster")  # `ray start --head` points plain `ray.init()` calls here


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list, env: dict) -> subprocess.Popen:
    "`ray start ... --block` in a session of its own: its raylet and workers can be stopped as one group."
    return subprocess.Popen([RAY, "start", *args, "--num-cpus=3", "--node-ip-address=127.0.0.1",
                             "--disable-usage-stats", "--block"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen) -> None:
    "Stop a `ray start --block` we started, and everything in its process group, by its PID."
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


_WAIT = """
import sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False)
deadline = time.monotonic() + 60
while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.monotonic() < deadline:
    time.sleep(0.5)
print(len([n for n in ray.nodes() if n["Alive"]]))
"""


@pytest.fixture(scope="module")
def two_nodes():
    "The address of a head node and a worker node, 3 logical CPUs each, and the environment that joins them."
    saved = CURRENT.read_text() if CURRENT.exists() else None
    env, port = dict(os.environ, RAY_AUTH_MODE="token"), _free_port()
    head = _start(["--head", f"--port={port}", "--include-dashboard=false"], env)
    procs, address = [head], f"127.0.0.1:{port}"
    try:
        time.sleep(5)
        procs.append(_start([f"--address={address}"], env))
        alive = subprocess.run([sys.executable, "-c", _WAIT, address], env=env, capture_output=True, text=True,
                               timeout=120)
        assert alive.stdout.strip().splitlines()[-1:] == ["2"], alive.stdout + alive.stderr[-2000:]
        yield address, env
    finally:
        for p in reversed(procs):
            _stop(p)
        if saved is not None:
            CURRENT.write_text(saved)
        elif CURRENT.exists() and str(port) in CURRENT.read_text():
            CURRENT.unlink()


def test_a_job_on_two_nodes(two_nodes, tmp_path):
    "The command as a user runs it on a cluster (`--address`, the token in its environment): four engines on two 3-CPU nodes land on both, every id once, every part file in the driver's folder."
    address, env = two_nodes
    inp = tmp_path / "in.jsonl"
    ids = [f"r{i:03d}" for i in range(120)]
    inp.write_text("".join(json.dumps({"id": i, "messages": [{"role": "user", "content": "w " * 8}]}) + "\n" for i in ids))
    exe = str(Path(sys.executable).with_name("ray-vllm-batch"))
    r = subprocess.run([exe, str(inp), str(tmp_path / "out"), "--dry-run", "--replicas", "4", "--address", address],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "rows: 120 in" in r.stdout and "failed: 0" in r.stdout, r.stdout
    assert sorted(read_output(tmp_path / "out")["id"]) == ids
    engines = next(l for l in r.stdout.splitlines() if l.startswith("engines: "))
    nodes = {part.split(" on node ")[1].split()[0] for part in engines[len("engines: "):].split(", ")}
    assert len(nodes) == 2, engines  # engines on both nodes (3 CPUs each: at most 3 on one)

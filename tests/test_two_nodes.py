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
from typing import NamedTuple

import pytest

from ray_vllm_tutorial.outputs import read_output

from conftest import BUCKET

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
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):  # the head takes 30 s to end on SIGTERM alone
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


class TwoNodes(NamedTuple):
    address: str  # the head node's address, for `--address`
    env: dict  # the environment that joins them (token authentication)
    worker: subprocess.Popen  # the worker node's `ray start --block`: killing its group loses the node


@pytest.fixture(scope="module")
def two_nodes():
    "A head node and a worker node, 3 logical CPUs each: their address, the environment that joins them, the worker."
    saved = CURRENT.read_text() if CURRENT.exists() else None
    env, port = dict(os.environ, RAY_AUTH_MODE="token"), _free_port()
    # the head's GCS declares a silent node dead after 3 missed 1 s health checks (Ray's default: 5 of 3 s each)
    head = _start(["--head", f"--port={port}", "--include-dashboard=false"],
                  dict(env, RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3"))
    procs, address = [head], f"127.0.0.1:{port}"
    try:
        time.sleep(5)
        procs.append(_start([f"--address={address}"], env))
        alive = subprocess.run([sys.executable, "-c", _WAIT, address], env=env, capture_output=True, text=True,
                               timeout=120)
        assert alive.stdout.strip().splitlines()[-1:] == ["2"], alive.stdout + alive.stderr[-2000:]
        yield TwoNodes(address, env, procs[1])
    finally:
        for p in reversed(procs):
            _stop(p)
        if saved is not None:
            CURRENT.write_text(saved)
        elif CURRENT.exists() and str(port) in CURRENT.read_text():
            CURRENT.unlink()


def test_a_job_on_two_nodes(two_nodes, s3):
    """The command as a user runs it on a cluster (`--address`, the token in its environment), input and output on
    object storage: two JSONL shards read by Ray Data, four engines on two 3-CPU nodes land on both, every id once in
    the bucket. The nodes were started without the bucket's endpoint: the filesystem the driver made travels with
    the read and write tasks."""
    address, env, _ = two_nodes
    ids = [f"r{i:03d}" for i in range(120)]
    for k in range(2):
        s3.put_object(Bucket=BUCKET, Key=f"nodes/in/part-{k}.jsonl", Body="".join(
            json.dumps({"id": i, "messages": [{"role": "user", "content": "w " * 8}]}) + "\n" for i in ids[k::2]).encode())
    exe = str(Path(sys.executable).with_name("ray-vllm-batch"))
    r = subprocess.run([exe, f"s3://{BUCKET}/nodes/in/", f"s3://{BUCKET}/nodes/out", "--dry-run", "--replicas", "4",
                        "--address", address], env=dict(os.environ, **env), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert f"rows: 120 in s3://{BUCKET}/nodes/out" in r.stdout and "failed: 0" in r.stdout, r.stdout
    assert sorted(read_output(f"s3://{BUCKET}/nodes/out")["id"]) == ids
    engines = next(l for l in r.stdout.splitlines() if l.startswith("engines: "))
    nodes = {part.split(" on node ")[1].split()[0] for part in engines[len("engines: "):].split(", ")}
    assert len(nodes) == 2, engines  # engines on both nodes (3 CPUs each: at most 3 on one)


def test_a_lost_node_mid_job(two_nodes, tmp_path):
    """The worker node is lost while rows are in flight on it (its `ray start` and everything under it SIGKILLed, as a
    reclaimed spot node goes): the job finishes on the head node, exit 0, every id exactly once, no row failed, and the
    summary names the engines that died. The job's own bookkeeping (progress counter, dispatcher, part-file writes)
    is pinned to the driver's node, so the loss takes only engines. Runs last: it ends the module's worker node."""
    address, env, worker = two_nodes
    inp, out = tmp_path / "in.jsonl", tmp_path / "out"
    ids = [f"n{i:03d}" for i in range(240)]
    inp.write_text("".join(json.dumps({"id": i, "messages": [{"role": "user", "content": "w " * 8}]}) + "\n" for i in ids))
    exe = str(Path(sys.executable).with_name("ray-vllm-batch"))
    job = subprocess.Popen([exe, str(inp), str(out), "--dry-run", "--replicas", "4", "--address", address,
                            "--engine-arg", 'echo={"token_s": 0.05}', "--batch-size", "4", "--rows-in-flight", "4",
                            "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while time.time() - t0 < 200 and len(read_output(out)) < len(ids) // 4 and job.poll() is None:
            time.sleep(0.5)  # a quarter answered: every engine has had time to start, on both nodes
        assert job.poll() is None, "the job ended before the node could be lost"
        os.killpg(worker.pid, signal.SIGKILL)  # the worker node, gone at once
        worker.wait()
        stdout, stderr = job.communicate(timeout=400)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, stdout[-2000:] + stderr[-3000:]
    got = read_output(out)
    assert sorted(got["id"]) == ids, (len(got), got["id"].nunique())  # every id once
    assert got["error"].isna().all(), got["error"].dropna().str[:300].value_counts().to_dict()  # none failed
    engines = next(l for l in stdout.splitlines() if l.startswith("engines: "))
    assert len({p.split(" on node ")[1].split()[0] for p in engines[len("engines: "):].split(", ")}) == 2, stdout
    assert "engines died: " in stdout and "their rows were answered by the others" in stdout, stdout

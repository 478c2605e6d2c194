"""Input and output on object storage: an S3-compatible server (moto) on a loopback port, the CLI reading a folder of
shards from it and writing its results, manifest and OpenAI output back, resuming, and the guard against two jobs
on one prefix (S3's conditional writes). The server is started by PID and stopped by PID."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_vllm_tutorial.inputs import InputError, input_files
from ray_vllm_tutorial.outputs import MANIFEST_NAME, OutputFolderError, _S3Lease, claim_output, input_fingerprint, read_output

from conftest import BUCKET


def _shards(client, prefix, rows_per_file=(40, 40, 40)):
    "OpenAI Batch requests in one JSONL object per shard; their custom_ids."
    ids = []
    for k, n in enumerate(rows_per_file):
        lines = []
        for i in range(n):
            ids.append(f"{k}-{i}")
            lines.append(json.dumps({"custom_id": ids[-1], "method": "POST", "url": "/v1/chat/completions",
                                     "body": {"messages": [{"role": "user", "content": f"shard {k} request {i}"}]}}))
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/part-{k}.jsonl", Body=("\n".join(lines) + "\n").encode())
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/_SUCCESS", Body=b"")
    return ids


def test_listing_and_fingerprint_on_s3(s3):
    _shards(s3, "listed", (2, 3))
    files = input_files(f"s3://{BUCKET}/listed/")
    assert [p.rsplit("/", 1)[1] for p in files.paths] == ["part-0.jsonl", "part-1.jsonl"] and not files.local
    assert input_files(f"s3://{BUCKET}/listed/*-1.jsonl").paths == [f"{BUCKET}/listed/part-1.jsonl"]
    fp = input_fingerprint(files)
    s3.put_object(Bucket=BUCKET, Key="listed/part-1.jsonl", Body=b'{"custom_id": "x", "body": {}}\n')
    assert input_fingerprint(input_files(f"s3://{BUCKET}/listed/")) != fp  # a changed shard changes the input
    with pytest.raises(InputError, match="input file not found"):
        input_files(f"s3://{BUCKET}/nothing-here.jsonl")


def test_two_jobs_on_one_prefix(s3, tmp_path):
    """A live lease refuses a second claim, naming its holder; an expired one (its holder killed) is taken over, and
    of two successors only one gets it; the holder that lost it is told when its run ends."""
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": "1", "prompt": "hi"}\n')
    out = f"s3://{BUCKET}/guarded"
    first = _S3Lease(out, lease_s=1.0)
    first.acquire()
    with pytest.raises(OutputFolderError, match=r"in use by another job \(PID \d+ on .*lease runs \d+ s more"):
        with claim_output(out, input_fingerprint(inp), "prompt"):
            pass
    first.stop.set()  # as if killed: no more renewals
    time.sleep(1.5)
    a, b = _S3Lease(out), _S3Lease(out)
    a.acquire()  # takes the expired lease over
    with pytest.raises(OutputFolderError, match="in use by another job"):
        b.acquire()
    a.release()
    with claim_output(out, input_fingerprint(inp), "prompt") as claim:  # free again: released, not expired
        assert claim.run_id and json.loads(s3.get_object(Bucket=BUCKET, Key="guarded/.rvt.lock")["Body"].read())["pid"] == os.getpid()
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="guarded/.rvt.lock")  # released at the end


def test_the_cli_reads_and_writes_s3_and_resumes(s3, tmp_path):
    """`ray-vllm-batch s3://.../in/ s3://.../out` (dry run): three shards of OpenAI requests, every custom_id once in
    the part files and in the OpenAI output file, the manifest beside them; the same command again has nothing to do."""
    ids = _shards(s3, "job/in")
    cmd = [str(Path(sys.executable).with_name("ray-vllm-batch")), f"s3://{BUCKET}/job/in/", f"s3://{BUCKET}/job/out",
           "--dry-run", "--no-progress", "--replicas", "2"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "rows: 120 in s3://rvt-test/job/out (120 new, 0 already done)" in first.stdout
    out = read_output(f"s3://{BUCKET}/job/out")
    assert sorted(out["id"]) == sorted(ids) and out["error"].isna().all()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="job/out/")["Contents"]]
    assert f"job/out/{MANIFEST_NAME}" in keys and not any(k.endswith(".rvt.lock") for k in keys)
    body = s3.get_object(Bucket=BUCKET, Key="job/out/openai_batch_output.jsonl")["Body"].read().decode()
    lines = [json.loads(l) for l in body.splitlines()]
    assert [l["custom_id"] for l in lines] == ids  # input order, across the shards
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"job/out/{MANIFEST_NAME}")["Body"].read())
    assert manifest["input_kind"] == "openai" and [r["status"] for r in manifest["runs"]] == ["done"]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "(0 new, 120 already done)" in again.stdout, again.stderr[-2000:]

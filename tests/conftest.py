"""Fixtures shared by test modules: an S3-compatible server for input and output on object storage."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BUCKET = "rvt-test"


@pytest.fixture(scope="module")
def s3():
    "A moto S3 server on a free loopback port; the AWS_* variables point pyarrow and boto3 (and the CLI) at it."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3
    client = boto3.client("s3")
    for _ in range(100):
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:
            time.sleep(0.1)
    yield client
    server.terminate()
    server.wait(10)
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)



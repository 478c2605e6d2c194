"""Helpers shared by the job tests (test_pipeline.py, test_engine_faults.py): input files and clean-up checks."""
import json
import time

import ray

from ray_vllm_tutorial.cluster import placement_groups
from ray_vllm_tutorial.models import tiny_corpus


def _messages(i):
    return [{"role": "user", "content": tiny_corpus()[i]}]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _assert_all_released(cpus: int, within: float = 20.0):
    "No live placement group and all `cpus` free again: Ray releases them asynchronously, so wait up to `within` s."
    deadline = time.monotonic() + within
    while True:
        live, free = placement_groups(), ray.available_resources().get("CPU")
        if (live == [] and free == cpus) or time.monotonic() > deadline: break
        time.sleep(0.5)
    assert live == [] and free == cpus, (live, free)


ECHO = dict(echo=dict(token_s=0.01))


def _echo_input(tmp_path, n=40):
    rows = [{"id": f"e{i:02d}", "messages": [{"role": "user", "content": " ".join(["w"] * (3 + i % 7))}]} for i in range(n)]
    return _write_jsonl(tmp_path / "echo.jsonl", rows), [r["id"] for r in rows]

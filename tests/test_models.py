"""Tests of the embedded tiny model builder (ray_vllm_tutorial.models)."""
import json
import shutil
import subprocess
import sys

import pytest

from ray_vllm_tutorial.models import (TINY_MODEL, ensure_tiny_model, file_hashes, is_valid_model_dir,
                                      resolve_model)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    return root, ensure_tiny_model(root)


def test_files_and_config(built):
    _, path = built
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "MANIFEST.json"} <= names
    cfg = json.loads((path / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_hidden_layers"]) == (256, 4, 2, 2)
    assert cfg["hidden_size"] // cfg["num_attention_heads"] == 64


def test_idempotent(built):
    root, path = built
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    assert ensure_tiny_model(root) == path
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before  # reused, not rewritten


def test_deterministic(built, tmp_path):
    _, path = built
    assert file_hashes(ensure_tiny_model(tmp_path)) == file_hashes(path)


@pytest.mark.parametrize("damage", ["truncate", "delete", "manifest"])
def test_corrupt_cache_is_rebuilt(built, tmp_path, damage):
    _, good = built
    path = tmp_path / good.name
    shutil.copytree(good, path)  # a valid cache, then damage it
    assert ensure_tiny_model(tmp_path) == path and is_valid_model_dir(path)
    if damage == "truncate":
        (path / "model.safetensors").write_bytes(b"\0" * 10)
    elif damage == "delete":
        (path / "tokenizer.json").unlink()
    else:
        (path / "MANIFEST.json").write_text("{not json")
    assert not is_valid_model_dir(path)
    assert file_hashes(ensure_tiny_model(tmp_path)) == file_hashes(good)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp or corrupt leftovers


def test_concurrent_builds(built, tmp_path):
    _, good = built
    code = ("import sys; from ray_vllm_tutorial.models import ensure_tiny_model; "
            "print(ensure_tiny_model(sys.argv[1]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1]
    assert file_hashes(outs[0]) == file_hashes(good) and is_valid_model_dir(outs[0])
    assert len(list(tmp_path.iterdir())) == 1


def test_resolve_model(built, monkeypatch):
    root, path = built
    monkeypatch.setenv("RAY_VLLM_TUTORIAL_CACHE", str(root))
    assert resolve_model(None) == str(path) == resolve_model(TINY_MODEL)
    assert resolve_model("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
    assert resolve_model("/some/local/path") == "/some/local/path"

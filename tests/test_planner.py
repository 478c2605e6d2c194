"""Tests of ray_vllm_tutorial.planner: shipped configs, valid TP sizes, memory, plans (with hypothesis)."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from ray_vllm_tutorial.planner import (load_config, memory_per_gpu, param_count, plan, shipped_configs,
                                       valid_tp_sizes)

NAMES = sorted(shipped_configs())


def test_shipped():
    assert NAMES == ["Llama-3.1-70B", "Llama-3.1-8B", "Qwen2.5-0.5B", "Qwen2.5-1.5B", "Qwen2.5-7B"]


def test_examples():
    assert valid_tp_sizes("Qwen2.5-0.5B") == [1, 2]
    assert valid_tp_sizes("Qwen2.5-7B") == [1, 2, 4]
    assert valid_tp_sizes("Llama-3.1-8B") == [1, 2, 4, 8, 16, 32]
    assert 0.49e9 < param_count("Qwen2.5-0.5B") < 0.5e9  # published 0.49B


def test_kv_replication_past_kv_heads():
    m4, m8, m16 = (memory_per_gpu("Llama-3.1-8B", tp) for tp in (4, 8, 16))
    assert (m4["kv_heads_per_gpu"], m8["kv_heads_per_gpu"], m16["kv_heads_per_gpu"]) == (2, 1, 1)
    assert m16["kv_cache"] == m8["kv_cache"] == m4["kv_cache"] / 2  # TP past 8 KV heads saves no KV memory
    assert m16["weights"] == pytest.approx(m8["weights"] / 2)


def test_tiny_model_weights_match_file(tmp_path):
    from ray_vllm_tutorial.models import ensure_tiny_model
    path = ensure_tiny_model()
    size = (path / "model.safetensors").stat().st_size
    assert param_count(path) * 4 <= size < param_count(path) * 4 + 20_000


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="config lacks \\['intermediate_size'"):
        load_config({"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1, "vocab_size": 4})
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_config(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(ValueError, match="config lacks"):
        valid_tp_sizes(tmp_path)
    with pytest.raises(ValueError, match="nothing fits.*TP may not exceed 2"):
        plan("Llama-3.1-70B", n_gpus=8, gpus_per_node=2, gpu_memory_gb=40)
    with pytest.raises(ValueError, match="need n_gpus >= 1"):
        plan("Qwen2.5-7B", n_gpus=0, gpus_per_node=8, gpu_memory_gb=80)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(NAMES), nodes=st.integers(1, 4), per_node=st.sampled_from([1, 2, 4, 8]),
       mem=st.sampled_from([16, 24, 40, 48, 80, 141]), max_len=st.sampled_from([2048, 4096, 32768]))
def test_plans_are_valid(name, nodes, per_node, mem, max_len):
    n = nodes * per_node
    try:
        p = plan(name, n_gpus=n, gpus_per_node=per_node, gpu_memory_gb=mem, max_model_len=max_len)
    except ValueError as e:
        assert "nothing fits" in str(e)
        return
    tp, dp = p["tensor_parallel_size"], p["replicas"]
    assert tp in valid_tp_sizes(name) and tp <= per_node  # valid, and never spans nodes
    assert 1 <= dp and dp * tp <= n
    assert p["memory_per_gpu_gb"] <= mem * 0.9
    smaller = [t for t in valid_tp_sizes(name) if t < tp]
    assert all(memory_per_gpu(name, t, max_model_len=max_len)["total"] > mem * 0.9 for t in smaller)  # smallest fit

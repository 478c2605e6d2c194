"""Tests of ray_vllm_tutorial.planner: shipped configs, valid TP sizes, memory, node-by-node engine counts, plans."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from ray_vllm_tutorial.chat import tp_problems
from ray_vllm_tutorial.planner import (NothingFitsError, engines_that_fit, load_config, memory_per_gpu, param_count,
                                       plan, shipped_configs, valid_tp_sizes)

NAMES = sorted(shipped_configs())


def test_shipped():
    assert NAMES == ["Llama-3.1-70B", "Llama-3.1-8B", "Mixtral-8x7B", "Qwen2.5-0.5B", "Qwen2.5-1.5B", "Qwen2.5-7B"]


def test_examples():
    assert valid_tp_sizes("Qwen2.5-0.5B") == [1, 2]
    assert valid_tp_sizes("Qwen2.5-7B") == [1, 2, 4]
    assert valid_tp_sizes("Llama-3.1-8B") == [1, 2, 4, 8, 16, 32]
    assert 0.49e9 < param_count("Qwen2.5-0.5B") < 0.5e9  # published 0.49B


@pytest.mark.parametrize("name", NAMES)
def test_valid_tp_sizes_is_chats_rule(name):
    "The planner and make_llm share one TP rule: chat.tp_problems."
    cfg = load_config(name)
    assert valid_tp_sizes(name) == [tp for tp in range(1, 65) if not tp_problems(tp, cfg)]


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
    with pytest.raises(NothingFitsError, match="nothing fits.*TP may not exceed 2"):
        plan("Llama-3.1-70B", n_gpus=8, gpus_per_node=2, gpu_memory_gb=40)
    with pytest.raises(ValueError, match="n_gpus must be a positive integer, got 0"):
        plan("Qwen2.5-7B", n_gpus=0, gpus_per_node=8, gpu_memory_gb=80)
    with pytest.raises(ValueError, match="gpu_memory_gb must be the memory of one GPU"):
        plan("Qwen2.5-7B", n_gpus=8, gpus_per_node=8, gpu_memory_gb=None)
    with pytest.raises(ValueError, match="gpus_per_node is required"):
        plan("Qwen2.5-7B", n_gpus=8, gpu_memory_gb=80)
    with pytest.raises(ValueError, match="n_gpus=16 but the nodes \\[8, 8, 4\\] hold 20 GPUs"):
        plan("Qwen2.5-7B", 16, [8, 8, 4], 80)
    with pytest.raises(ValueError, match="no node has a whole GPU"):
        plan("Qwen2.5-7B", gpus_per_node=[0, 0.5], gpu_memory_gb=80)


def test_six_gpus_on_two_nodes_hold_two_tp2_engines():
    "Issue 12, finding 3: 6 GPUs as 2 nodes x 3 with TP=2 hold 2 engines; plan said 3 (n_gpus // tp)."
    p = plan("Qwen2.5-7B", 6, 3, 24)
    assert (p["tensor_parallel_size"], p["replicas"]) == (2, 2)
    assert engines_that_fit(3, 2, n_gpus=6) == engines_that_fit([3, 3], 2) == 2
    assert plan("Qwen2.5-7B", gpus_per_node=[3, 3], gpu_memory_gb=24) == p


@pytest.mark.parametrize("nodes, tp, fit", [([8, 8, 4], 8, 2), ([8, 8, 4], 4, 5), ([6, 6, 4], 4, 3), ([0, 2.0, 2.0], 2, 2),
                                            ([3, 3, 3], 2, 3), ([1], 1, 1), ([0], 1, 0)])
def test_engines_that_fit(nodes, tp, fit):
    assert engines_that_fit(nodes, tp) == fit


def test_engines_that_fit_int_form():
    assert engines_that_fit(8, 4, n_gpus=12) == 3  # nodes [8, 4]
    assert engines_that_fit(8, 8, n_gpus=12) == 1
    with pytest.raises(ValueError, match="n_gpus is needed with gpus_per_node=8"):
        engines_that_fit(8, 2)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="tensor_parallel_size must be a positive integer"):
            engines_that_fit([8], bad)
    for bad in ([], [8, -1], "88", [True], None):
        with pytest.raises(ValueError, match="non-empty list of GPU counts >= 0"):
            engines_that_fit(bad, 2)


def strict_pack(nodes: list, replicas: int, tp: int) -> list | None:
    "Place `replicas` groups of `tp` GPUs, each on one node, by first fit; the GPUs left per node, or None if one fails."
    free = list(nodes)
    for _ in range(replicas):
        i = next((i for i, g in enumerate(free) if g >= tp), None)
        if i is None:
            return None
        free[i] -= tp
    return free


NODES = st.lists(st.integers(0, 8), min_size=1, max_size=5).filter(lambda n: max(n) > 0)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(NAMES), nodes=NODES, mem=st.sampled_from([16, 24, 40, 48, 80, 141]),
       max_len=st.sampled_from([2048, 4096, 32768]))
def test_plans_are_valid(name, nodes, mem, max_len):
    budget = mem * 0.9
    fitting = [tp for tp in valid_tp_sizes(name) if tp <= max(nodes)
               and memory_per_gpu(name, tp, max_model_len=max_len)["total"] <= budget]
    if not fitting:  # nothing fits: the specific error, not a plan
        with pytest.raises(NothingFitsError, match=f"nothing fits.*TP may not exceed {max(nodes)} GPUs of one node"):
            plan(name, gpus_per_node=nodes, gpu_memory_gb=mem, max_model_len=max_len)
        return
    p = plan(name, gpus_per_node=nodes, gpu_memory_gb=mem, max_model_len=max_len)
    tp, dp = p["tensor_parallel_size"], p["replicas"]
    assert tp == fitting[0]  # the smallest valid TP whose share fits, never wider than the biggest node
    assert p["memory_per_gpu_gb"] <= budget
    assert dp == engines_that_fit(nodes, tp) >= 1
    left = strict_pack(nodes, dp, tp)
    assert left is not None  # STRICT_PACK can place every planned engine ...
    assert all(g < tp for g in left)  # ... and not one more
    assert dp * tp <= sum(nodes)
    assert plan(name, sum(nodes), nodes, mem, max_model_len=max_len) == p  # n_gpus given too: same plan


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(NAMES), per_node=st.integers(1, 8), n=st.integers(1, 40), mem=st.sampled_from([24, 80, 141]))
def test_int_form_is_the_node_list(name, per_node, n, mem):
    "plan(config, n_gpus, gpus_per_node, ...) plans for n GPUs in nodes of gpus_per_node, the last one holding the rest."
    nodes = [per_node] * (n // per_node) + ([n % per_node] if n % per_node else [])
    try:
        expected = plan(name, gpus_per_node=nodes, gpu_memory_gb=mem)
    except NothingFitsError:
        with pytest.raises(NothingFitsError):
            plan(name, n, per_node, mem)
        return
    assert plan(name, n, per_node, mem) == expected


def test_strict_pack_in_ray_places_what_the_planner_counts():
    "A real two-node Ray cluster of 3 GPUs each: STRICT_PACK places exactly engines_that_fit([3, 3], 2) = 2 TP=2 groups."
    import ray
    from ray_vllm_tutorial.cluster import local_cluster, tp_placement_group
    if ray.is_initialized():
        ray.shutdown()
    with local_cluster(nodes=2, gpus_per_node=3, cpus_per_node=3):
        pgs = [tp_placement_group(2, "gpu", timeout_s=60) for _ in range(engines_that_fit([3, 3], 2))]
        with pytest.raises(TimeoutError, match="STRICT_PACK needs them all on one node"):
            tp_placement_group(2, "gpu", timeout_s=3)  # 2 GPUs are free, one on each node: no third engine
        for pg in pgs:
            ray.util.remove_placement_group(pg)

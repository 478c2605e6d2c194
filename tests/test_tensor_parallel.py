"""Tests of the educational TP layers in ray_vllm_tutorial.tensor_parallel."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from ray_vllm_tutorial.tensor_parallel import (ColumnParallelLinear, NoProcessGroupError, RowParallelLinear,
                                               TensorParallelMLP, allreduce_bytes_per_rank, mlp_weights, reference_mlp,
                                               shard_columns, shard_rows)

K = st.sampled_from([1, 2, 4])


@settings(max_examples=30, deadline=None)
@given(k=K, batch=st.integers(1, 5), mult_in=st.integers(1, 4), mult_out=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_column_and_row_equal_full(k, batch, mult_in, mult_out, seed):
    g = torch.Generator().manual_seed(seed)
    d_in, d_out = k * mult_in, k * mult_out
    x = torch.randn(batch, d_in, generator=g, dtype=torch.float64)
    w = torch.randn(d_in, d_out, generator=g, dtype=torch.float64)
    b = torch.randn(d_out, generator=g, dtype=torch.float64)
    full = x @ w + b
    col = torch.cat([ColumnParallelLinear(d_in, d_out, k, r, weight=w, bias=b)(x) for r in range(k)], -1)
    row = sum(RowParallelLinear(d_in, d_out, k, r, input_is_parallel=False, weight=w, bias=b, reduce_results=False)(x)
              for r in range(k))
    torch.testing.assert_close(col, full, rtol=0, atol=1e-10)
    torch.testing.assert_close(row, full, rtol=0, atol=1e-10)
    assert [tuple(s.shape) for s in shard_columns(w, k)] == [(d_in, d_out // k)] * k
    assert [tuple(s.shape) for s in shard_rows(w, k)] == [(d_in // k, d_out)] * k


@pytest.mark.parametrize("k", [1, 2, 4])
def test_mlp_equals_reference(k):
    ws = mlp_weights(8, 32, seed=k, dtype=torch.float64)
    x = torch.randn(3, 8, dtype=torch.float64)
    out = sum(TensorParallelMLP(*ws, world_size=k, rank=r, reduce_results=False)(x) for r in range(k))
    torch.testing.assert_close(out, reference_mlp(x, *ws), rtol=0, atol=1e-10)


@pytest.mark.parametrize("k", [3, 4])
def test_not_divisible(k):
    w = torch.randn(6, 10)
    with pytest.raises(ValueError, match=f"output dimension of size 10 cannot be split evenly into {k}"):
        shard_columns(w, k)
    with pytest.raises(ValueError, match="input dimension of size 6 cannot be split evenly into 4"):
        shard_rows(w, 4)
    with pytest.raises(ValueError, match="output dimension of size 10"):
        ColumnParallelLinear(6, 10, 4, 0)
    with pytest.raises(ValueError, match="rank must be in"):
        RowParallelLinear(8, 4, 2, 2)
    with pytest.raises(ValueError, match="weight must be"):
        ColumnParallelLinear(8, 4, 2, 0, weight=torch.randn(4, 8))
    with pytest.raises(ValueError, match="world_size must be a positive integer, got 0"):
        shard_rows(w, 0)


def test_collectives_without_a_group_raise():
    "Issue 12, finding 5: RowParallelLinear returned a partial sum silently without a process group; now both layers raise."
    x, w = torch.randn(3, 8), torch.randn(8, 4)
    with pytest.raises(NoProcessGroupError, match="RowParallelLinear\\(reduce_results=True\\) with world_size=2 must all-reduce"):
        RowParallelLinear(8, 4, 2, 0, input_is_parallel=False, weight=w)(x)
    with pytest.raises(NoProcessGroupError, match="ColumnParallelLinear\\(gather_output=True\\) with world_size=2 must all-gather"):
        ColumnParallelLinear(8, 4, 2, 0, gather_output=True, weight=w)(x)
    with pytest.raises(NoProcessGroupError, match="reduce_results=False"):
        TensorParallelMLP(*mlp_weights(8, 16), world_size=2, rank=1)(x)
    assert issubclass(NoProcessGroupError, RuntimeError)
    # one rank needs no collective: the full answer, with or without a group
    torch.testing.assert_close(RowParallelLinear(8, 4, 1, 0, weight=w)(x), x @ w)
    torch.testing.assert_close(ColumnParallelLinear(8, 4, 1, 0, gather_output=True, weight=w)(x), x @ w)


def test_allreduce_bytes():
    assert allreduce_bytes_per_rank(100, 1) == 0
    assert allreduce_bytes_per_rank(100, 2, 2) == 200
    assert allreduce_bytes_per_rank(100, 8, 2) == pytest.approx(2 * 7 / 8 * 200)
    with pytest.raises(ValueError, match="world_size must be a positive integer, got 0"):
        allreduce_bytes_per_rank(100, 0)


def test_real_allreduce_across_ray_actors():
    import ray
    from ray_vllm_tutorial.cluster import init_ray
    from ray_vllm_tutorial.tensor_parallel import start_tp_workers
    init_ray(num_cpus=2)
    try:
        ws = mlp_weights(16, 64, dtype=torch.float64)
        x = torch.randn(4, 16, dtype=torch.float64)
        workers = start_tp_workers(2, ws)
        outs = ray.get([w.forward.remote(x) for w in workers])
        for o in outs:
            torch.testing.assert_close(o, reference_mlp(x, *ws), rtol=0, atol=1e-10)
        ray.get([w.close.remote() for w in workers])
    finally:
        ray.shutdown()

"""Tests of the exported Ray helpers in ray_vllm_tutorial.cluster."""
import time

import pytest
import ray

from ray_vllm_tutorial.cluster import (check_positive_int, init_ray, placement_group_scope, placement_groups,
                                       tp_bundles, tp_placement_group)


@pytest.fixture(scope="module")
def local_ray():
    res = init_ray(num_cpus=4, num_gpus=3)
    yield res
    ray.shutdown()


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_bundle_shapes(tp):
    assert tp_bundles(tp, "gpu") == [{"GPU": 1, "CPU": 1}] * tp
    assert tp_bundles(tp, "cpu") == [{"CPU": 1}] * tp
    b = tp_bundles(tp)
    b[0]["GPU"] = 99  # bundles are independent dicts, not one dict repeated
    assert all(x["GPU"] == 1 for x in b[1:])


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", None, True])
def test_bad_tp(bad):
    with pytest.raises(ValueError, match="tensor_parallel_size must be a positive integer"):
        tp_bundles(bad)
    with pytest.raises(ValueError, match=f"replicas must be a positive integer, got {bad!r}"):
        check_positive_int(bad, "replicas")


def test_check_positive_int_accepts_numpy():
    import numpy as np
    assert check_positive_int(np.int32(4), "tp") == 4 and type(check_positive_int(np.int32(4), "tp")) is int


def test_bad_device_and_strategy(local_ray):
    with pytest.raises(ValueError, match="'gpu' or 'cpu'"):
        tp_bundles(2, "tpu")
    with pytest.raises(ValueError, match="unknown placement strategy"):
        tp_placement_group(1, "cpu", strategy="RANDOM")


def test_init_ray_is_private_and_reports_resources(local_ray):
    assert local_ray["CPU"] == 4 and local_ray["GPU"] == 3
    assert init_ray(num_cpus=99) == ray.cluster_resources()  # already running: returns, does not restart


def _free(res):
    time.sleep(0.5)
    return ray.available_resources().get(res, 0)


def test_scope_removes_group_on_success_and_failure(local_ray):
    with placement_group_scope(2, "gpu") as pg:
        assert pg.wait(10)
        assert _free("GPU") == 1
        assert [r["bundle"] for r in placement_groups()] == [0, 1]
    assert _free("GPU") == 3 and placement_groups() == []
    with pytest.raises(RuntimeError, match="boom"):
        with placement_group_scope(3, "cpu"):
            assert _free("CPU") == 1
            raise RuntimeError("boom")
    assert _free("CPU") == 4 and placement_groups() == []


def test_infeasible_group_raises_and_cleans_up(local_ray):
    with pytest.raises(TimeoutError, match="not placed within 1 s; cluster has 3 GPU"):
        tp_placement_group(4, "gpu", timeout_s=1)
    assert placement_groups() == [] and _free("GPU") == 3

"""Tests of ray_vllm_tutorial.chat: argument checks without an engine, parse_outputs on real tiny-model output."""
import pytest

from ray_vllm_tutorial.chat import check_tensor_parallel, engine_kwargs, make_llm, parse_outputs, tp_problems


def test_cpu_defaults():
    kw = engine_kwargs(None, device="cpu")
    assert (kw["dtype"], kw["enforce_eager"], kw["distributed_executor_backend"]) == ("float32", True, "mp")
    assert 0 < kw["gpu_memory_utilization"] <= 0.2
    assert engine_kwargs(None, device="cpu", max_model_len=512)["max_model_len"] == 512


@pytest.mark.parametrize("tp, msg", [(0, "positive integer"), (-2, "positive integer"), (1.0, "positive integer"),
                                     (True, "positive integer"),
                                     (3, "tensor_parallel_size=3 cannot shard this model: it does not divide the 4 attention "
                                         "heads; it neither divides the 2 KV heads nor is a multiple of them; it does not "
                                         "divide the MLP width 512. Choose one of \\[1, 2, 4\\]")])
def test_bad_tp(tp, msg):
    with pytest.raises(ValueError, match=msg):
        engine_kwargs(None, tensor_parallel_size=tp, device="cpu")


def test_tp_larger_than_devices():
    with pytest.raises(ValueError, match="needs 8 GPUs, but only 2 are available"):
        check_tensor_parallel(8, "gpu", {"num_attention_heads": 8}, devices=2)
    check_tensor_parallel(2, "gpu", {"num_attention_heads": 8}, devices=2)  # fits: no error


QWEN_7B = {"num_attention_heads": 28, "num_key_value_heads": 4, "intermediate_size": 18944}


def test_tp_rule_has_heads_kv_heads_and_mlp_width():
    "Issue 12, finding 4: chat's rule checked attention heads only; now it is the planner's full rule."
    assert [tp for tp in range(1, 29) if not tp_problems(tp, QWEN_7B)] == [1, 2, 4]
    assert tp_problems(7, QWEN_7B) == ["neither divides the 4 KV heads nor is a multiple of them",
                                       "does not divide the MLP width 18944"]  # 7 divides the 28 heads
    with pytest.raises(ValueError, match="tensor_parallel_size=7 cannot shard this model: it neither divides the 4 KV"):
        check_tensor_parallel(7, "gpu", QWEN_7B)
    assert tp_problems(16, {"num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336}) == []
    assert tp_problems(3, {"num_attention_heads": 6}) == []  # fields a config lacks are not checked
    assert check_tensor_parallel(4, "gpu", QWEN_7B, devices=4) == 4


def test_bad_device():
    with pytest.raises(ValueError, match="device must be"):
        engine_kwargs(None, device="tpu")


@pytest.fixture(scope="module")
def llm():
    engine = make_llm(max_model_len=256)
    yield engine
    del engine


def test_parse_outputs_real(llm):
    from vllm import SamplingParams
    convs = [[{"role": "user", "content": f"the engine batches {i} tokens"}] for i in range(6)]
    # ignore_eos: every answer runs to max_tokens whatever this CPU's build of the tiny model would say
    outs = llm.chat(convs, SamplingParams(max_tokens=5, temperature=0, ignore_eos=True), use_tqdm=False)
    cols = parse_outputs(outs)
    assert set(cols) == {"generated_text", "finish_reason", "prompt_tokens", "output_tokens"}
    assert cols["finish_reason"] == ["length"] * 6 and cols["output_tokens"] == [5] * 6
    assert cols["prompt_tokens"] == [len(o.prompt_token_ids) for o in outs]
    assert all(p > 5 for p in cols["prompt_tokens"])
    assert cols["generated_text"] == [o.outputs[0].text for o in outs]


def test_parse_outputs_n_samples(llm):
    from vllm import SamplingParams
    outs = llm.chat([[{"role": "user", "content": "a user"}]] * 2, SamplingParams(n=3, max_tokens=6, temperature=1.0, seed=1),
                    use_tqdm=False)
    cols = parse_outputs(outs)
    assert [len(t) for t in cols["generated_texts"]] == [3, 3]
    assert cols["generated_text"] == [t[0] for t in cols["generated_texts"]]
    assert cols["output_tokens"] == [sum(len(c.token_ids) for c in o.outputs) for o in outs]
    assert all(set(r) <= {"stop", "length"} for r in cols["finish_reasons"])
    assert "generated_texts" not in parse_outputs(outs, all_samples=False)


def test_prompt_too_long_raises_clearly(llm):
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError
    with pytest.raises(VLLMValidationError, match="maximum (context|model) length (is|of) 256"):
        llm.chat([[{"role": "user", "content": "the engine " * 400}]], SamplingParams(max_tokens=4), use_tqdm=False)

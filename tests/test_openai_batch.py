"OpenAI Batch round trip on the real CPU engine, every output line read with the official `openai` package's types (issue 25)."
import json

import ray
from openai.types.chat import ChatCompletion

from ray_vllm_tutorial.models import CHAT_TEMPLATE, resolve_model, tiny_corpus
from ray_vllm_tutorial.pipeline import run_batch

URL = "/v1/chat/completions"
SHARDS = 422  # the tiny tokenizer's id of " shards" (checked below)


def _oa(cid, body):
    return {"custom_id": cid, "method": "POST", "url": URL, "body": body}


def _q(i):
    return [{"role": "user", "content": tiny_corpus()[i]}]


DEV = [{"role": "developer", "content": "answer in one line"}, *_q(0)]
PARTS = [{"role": "user", "content": [{"type": "text", "text": "the driver reads"}, {"type": "text", "text": "the prompts."}]}]
ROWS = [
    _oa("developer", {"model": "gpt-4.1-mini", "messages": DEV, "max_completion_tokens": 6, "temperature": 0}),
    _oa("parts", {"messages": PARTS, "max_tokens": 6, "temperature": 0}),
    _oa("n2", {"messages": _q(1), "n": 2, "temperature": 1.0, "top_p": 0.9, "seed": 7, "max_tokens": 6}),
    _oa("logprobs", {"messages": _q(2), "logprobs": True, "top_logprobs": 3, "max_tokens": 5, "temperature": 0}),
    _oa("penalties", {"messages": _q(3), "presence_penalty": 1.5, "frequency_penalty": 1.5, "max_tokens": 8,
                      "temperature": 0}),
    _oa("bias", {"messages": _q(4), "logit_bias": {str(SHARDS): 100}, "max_tokens": 3, "temperature": 0}),
    _oa("stop", {"messages": _q(4), "logit_bias": {str(SHARDS): 100}, "stop": [" shards"], "max_tokens": 3,
                 "temperature": 0}),
    _oa("image", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "cat.png"}}]}]}),
    _oa("tools", {"messages": _q(5), "tools": [{"type": "function", "function": {"name": "f"}}]}),
    _oa("empty", {"messages": [{"role": "user", "content": ""}]}),
]


def _read(path):
    "Every line of an OpenAI Batch output file: its envelope checked by hand, its body by `ChatCompletion`."
    out = {}
    for line in map(json.loads, open(path)):
        assert set(line) == {"id", "custom_id", "response", "error"} and line["id"].startswith("batch_req_")
        if line["response"] is None:
            assert set(line["error"]) == {"code", "message"} and line["error"]["code"] and line["error"]["message"]
            out[line["custom_id"]] = line["error"]
        else:
            r = line["response"]
            assert line["error"] is None and set(r) == {"status_code", "request_id", "body"}
            assert r["status_code"] == 200 and r["request_id"]
            out[line["custom_id"]] = ChatCompletion.model_validate(r["body"])
    return out


def _prompt_len(messages):
    "Tokens of `messages` through the tiny model's chat template, as the engine counts them."
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(resolve_model(None))
    assert tok.encode(" shards", add_special_tokens=False) == [SHARDS]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_openai_batch_file_read_by_the_official_client(tmp_path):
    inp = tmp_path / "batch.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    s = run_batch(inp, tmp_path / "o", device="cpu", progress=False)
    assert not ray.is_initialized()  # run_batch started its own Ray, so it shut it down (with its placement groups)
    got = _read(s.openai_output)
    assert list(got) == [r["custom_id"] for r in ROWS]  # every line, in input order
    ok = {k: v for k, v in got.items() if isinstance(v, ChatCompletion)}
    assert set(got) - set(ok) == {"image", "tools", "empty"}
    for r in ok.values():
        assert r.object == "chat.completion" and r.created > 1_700_000_000 and r.model == "tiny-chat"
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
        assert all(c.message.role == "assistant" and c.finish_reason in ("stop", "length") for c in r.choices)

    # developer: answered, and templated as system (the tiny template names no role)
    assert "developer" not in CHAT_TEMPLATE
    sys_msgs = [{**DEV[0], "role": "system"}, DEV[1]]
    assert ok["developer"].usage.prompt_tokens == _prompt_len(sys_msgs) != _prompt_len(DEV)
    assert ok["developer"].usage.completion_tokens <= 6  # max_completion_tokens
    # content parts: joined with a newline
    assert ok["parts"].usage.prompt_tokens == _prompt_len([{"role": "user", "content": "the driver reads\nthe prompts."}])
    # n=2: two choices in one body; usage counts both samples
    assert [c.index for c in ok["n2"].choices] == [0, 1]
    assert all(c.logprobs is None for c in ok["n2"].choices)
    # logprobs: one entry per generated token, 3 alternatives each; greedy: the chosen token is the top one
    lp = ok["logprobs"].choices[0].logprobs.content
    assert len(lp) == ok["logprobs"].usage.completion_tokens > 0
    assert [len(t.top_logprobs) for t in lp] == [3] * len(lp)
    assert all(t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == t.logprob for t in lp)
    assert all(t.logprob <= 0 and t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob
               for t in lp)
    assert "".join(t.token for t in lp) == ok["logprobs"].choices[0].message.content
    assert ok["penalties"].choices[0].message.content
    # logit_bias +100 on " shards": every token is " shards"; with stop " shards" the answer stops at once
    assert ok["bias"].choices[0].message.content.split() == ["shards"] * 3
    assert (ok["stop"].choices[0].message.content, ok["stop"].choices[0].finish_reason) == ("", "stop")
    # row errors that name what cannot be honoured
    assert got["image"] == {"code": "unsupported_content_part",
                            "message": "unsupported content part: message 0 part 0 is of type 'image_url' (only 'text' parts)"}
    assert got["tools"] == {"code": "unsupported_field",
                            "message": "unsupported field: body.tools (this job cannot honour it)"}
    assert got["empty"]["code"] == "empty_content"

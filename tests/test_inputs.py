"""Input formats, per-row sampling and bad input (ray_vllm_tutorial.inputs): no engine, fast.

Each test of a fix from issue 12 fails on the behaviour of the old `pipeline.normalize_requests`/`read_table`
(noted per test)."""
import json

import pandas as pd
import pytest

from ray_vllm_tutorial.inputs import PER_ROW_SAMPLING, InputError, normalize_requests, read_table, row_sampling

HI = [{"role": "user", "content": "hi"}]
URL = "/v1/chat/completions"


def _jsonl(path, rows):
    "Write rows (dicts, or raw bytes lines) as JSONL."
    path.write_bytes(b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows))
    return path


def _load(path):
    return normalize_requests(read_table(path))


def _oa(cid, body, **kw):
    return {"custom_id": cid, "method": "POST", "url": URL, "body": body, **kw}


def test_columns_contract(tmp_path):
    reqs, kind = _load(_jsonl(tmp_path / "a.jsonl", [{"id": "a", "messages": HI, "tag": 1}, {"prompt": "x"}]))
    assert kind == "messages"
    assert list(reqs.columns[:5]) == ["id", "messages", "sampling", "error", "input_row"] and "tag" in reqs
    assert reqs["error"].dtype == object and list(reqs["error"]) == [None, None]
    assert json.loads(reqs["messages"][0]) == HI and list(reqs["input_row"]) == [0, 1]
    assert list(reqs["sampling"]) == [None, None]
    assert set(PER_ROW_SAMPLING) == {"max_tokens", "temperature", "top_p", "n", "stop", "seed", "structured_outputs"}


@pytest.mark.parametrize("kind, row", [("messages", {"messages": HI}), ("prompt", {"prompt": "hi"})])
def test_per_row_sampling_is_used(tmp_path, kind, row):
    # finding 6: old code carried `max_tokens` along as an input column and never used it
    fields = {"max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "n": 2, "stop": ["."], "seed": 3}
    reqs, k = _load(_jsonl(tmp_path / "a.jsonl", [{**row, "sampling": fields}, row]))
    assert k == kind and list(reqs["error"]) == [None, None]
    assert row_sampling({"max_tokens": 256, "temperature": 0.0}, reqs["sampling"][0]) == fields
    assert row_sampling({"max_tokens": 256, "temperature": 0.0}, reqs["sampling"][1]) == {"max_tokens": 256,
                                                                                       "temperature": 0.0}
    assert "input_sampling" not in reqs  # used, not carried along


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_columns_named_like_sampling_fields_are_data(tmp_path, suffix):
    # issue 21: a CSV whose `n` numbers its rows asked for 500 samples on row 500
    rows = pd.DataFrame({"prompt": ["a", "b"], "n": [1, 500], "seed": [7, 8], "max_tokens": [3, 4]})
    p = tmp_path / f"a.{suffix}"
    rows.to_csv(p, index=False) if suffix == "csv" else _jsonl(p, rows.to_dict("records"))
    reqs, _ = _load(p)
    assert list(reqs["sampling"]) == [None, None] and list(reqs["error"]) == [None, None]
    assert [str(v) for v in reqs["n"]] == ["1", "500"] and reqs.attrs["like_sampling"] == ["max_tokens", "n", "seed"]


def test_per_row_sampling_from_parquet_struct(tmp_path):
    p = tmp_path / "a.parquet"
    pd.DataFrame({"prompt": ["a", "b"], "sampling": [{"max_tokens": 5, "seed": None}, None]}).to_parquet(p)
    reqs, _ = _load(p)
    assert json.loads(reqs["sampling"][0]) == {"max_tokens": 5} and reqs["sampling"][1] is None


def test_per_row_sampling_from_csv_text(tmp_path):
    (tmp_path / "a.csv").write_text('prompt,sampling\nhi,"{""max_tokens"": ""5"", ""stop"": ""END""}"\nyo,\n')
    reqs, _ = _load(tmp_path / "a.csv")
    assert json.loads(reqs["sampling"][0]) == {"max_tokens": 5, "stop": "END"} and reqs["sampling"][1] is None


@pytest.mark.parametrize("field, value, error", [
    ("max_tokens", -3, "bad max_tokens: must be at least 1, got -3"),
    ("max_tokens", 2.5, "bad max_tokens: must be an integer, got 2.5"),
    ("temperature", -1, "bad temperature: must be non-negative, got -1"),
    ("top_p", 0, "bad top_p: must be in (0, 1], got 0"),
    ("n", 0, "bad n: must be at least 1, got 0"),
    ("stop", 3, "bad stop: must be a string or list of strings, got 3"),
    ("seed", "x", "bad seed: must be an integer, got 'x'"),
])
def test_bad_per_row_sampling_is_that_rows_error(tmp_path, field, value, error):
    # finding 6: old code never looked at these fields on prompt rows
    reqs, _ = _load(_jsonl(tmp_path / "a.jsonl", [{"prompt": "ok"}, {"prompt": "bad", "sampling": {field: value}}]))
    assert list(reqs["error"]) == [None, error] and reqs["sampling"][1] is None


def test_malformed_openai_requests_are_row_errors(tmp_path):
    # finding 7: a body string that is not JSON raised JSONDecodeError out of normalize_requests (CLI exit 2)
    reqs, kind = _load(_jsonl(tmp_path / "b.jsonl", [
        _oa("good", {"messages": HI}), _oa("str", "{oops"), _oa("list", [1]), _oa(None, {"messages": HI}),
        _oa("nobody", None), _oa(5, {"messages": HI})]))
    assert kind == "openai" and reqs["error"][0] is None
    errs = list(reqs["error"][1:])
    assert errs[0].startswith("malformed OpenAI request: body is a string that is not JSON")
    assert errs[1] == "malformed OpenAI request: body is a JSON list, not an object"
    assert errs[2] == "malformed OpenAI request: missing custom_id"
    assert errs[3] == "malformed OpenAI request: body is missing, not an object"
    assert errs[4] == "malformed OpenAI request: custom_id must be a string, got 5"
    assert list(reqs["custom_id"]) == list(reqs["id"])


def test_openai_fields_honoured_or_rejected(tmp_path):
    # old code: /v1/embeddings was 'malformed messages'; n, top_p, stop, seed, tools, GET were silently ignored
    reqs, _ = _load(_jsonl(tmp_path / "b.jsonl", [
        _oa("all", {"model": "m", "messages": HI, "max_completion_tokens": 5, "n": 2, "top_p": 0.5, "stop": "x",
                    "seed": 1, "temperature": 0.7, "presence_penalty": 0.5, "logprobs": False, "user": "u"}),
        _oa("embed", {"input": "hi", "model": "e"}, url="/v1/embeddings"),
        _oa("get", {"messages": HI}, method="GET"),
        _oa("tools", {"messages": HI, "tools": [{"type": "function"}]}),
        _oa("fmt", {"messages": HI, "response_format": {"type": "json_object"}}),
        _oa("logprobs", {"messages": HI, "logprobs": True}),  # issue 25: honoured (was unsupported)
        _oa("both", {"messages": HI, "max_tokens": 3, "max_completion_tokens": 4}),
        _oa("badmax", {"messages": HI, "max_tokens": -3})]))
    assert reqs["error"][0] is None
    assert json.loads(reqs["sampling"][0]) == {"max_tokens": 5, "n": 2, "top_p": 0.5, "stop": "x", "seed": 1,
                                               "temperature": 0.7, "presence_penalty": 0.5}
    e = dict(zip(reqs["id"], reqs["error"]))
    assert e["embed"] == "unsupported url: '/v1/embeddings' (only /v1/chat/completions)"
    assert e["get"] == "unsupported method: 'GET' (only POST)"
    assert e["tools"].startswith("unsupported field: body.tools")
    assert e["fmt"] is None and json.loads(reqs["sampling"][4]) == {"structured_outputs": {"json_object": True}}
    assert e["logprobs"] is None and json.loads(reqs["sampling"][5]) == {"logprobs": 0}
    assert e["both"] == "malformed OpenAI request: max_tokens and max_completion_tokens differ"
    assert e["badmax"] == "bad max_tokens: must be at least 1, got -3"


def test_structured_outputs_per_row(tmp_path):
    "A row's own grammar: `structured_outputs` in a messages row's `sampling`, `response_format` in an OpenAI body;"
    " a grammar vLLM cannot build is that row's error, the other rows untouched."
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"]}
    fmt = lambda s: {"type": "json_schema", "json_schema": {"name": "v", "schema": s}}
    reqs, _ = _load(_jsonl(tmp_path / "o.jsonl", [
        _oa("schema", {"messages": HI, "response_format": fmt(schema)}),
        _oa("text", {"messages": HI, "response_format": {"type": "text"}}),
        _oa("nonsense", {"messages": HI, "response_format": fmt({"type": "nonsense"})}),
        _oa("noschema", {"messages": HI, "response_format": {"type": "json_schema", "json_schema": {"name": "v"}}}),
        _oa("xml", {"messages": HI, "response_format": {"type": "xml"}})]))
    e, s = dict(zip(reqs["id"], reqs["error"])), dict(zip(reqs["id"], reqs["sampling"]))
    assert json.loads(s["schema"]) == {"structured_outputs": {"json": schema}} and e["schema"] is None
    assert s["text"] is None and e["text"] is None  # text: no constraint
    assert e["nonsense"] == 'bad structured_outputs: Failed to transform json schema into a grammar: Unsupported type "nonsense"'
    assert e["noschema"].startswith("bad response_format: must be text, json_object, or json_schema with a schema")
    assert e["xml"].startswith("bad response_format: ")
    rows = [{"id": "re", "messages": HI, "sampling": {"structured_outputs": {"regex": "(yes|no)"}}},
            {"id": "choice", "messages": HI, "sampling": {"structured_outputs": {"choice": ["a", "b"]}, "max_tokens": 4}},
            {"id": "two", "messages": HI, "sampling": {"structured_outputs": {"choice": ["a"], "regex": "a"}}},
            {"id": "typo", "messages": HI, "sampling": {"structured_outputs": {"jsn": schema}}},
            {"id": "badre", "messages": HI, "sampling": {"structured_outputs": {"regex": "[a-"}}},
            {"id": "plain", "messages": HI}]
    reqs, _ = _load(_jsonl(tmp_path / "m.jsonl", rows))
    e, s = dict(zip(reqs["id"], reqs["error"])), dict(zip(reqs["id"], reqs["sampling"]))
    assert (e["re"], e["choice"], e["plain"]) == (None, None, None)
    assert json.loads(s["choice"]) == {"structured_outputs": {"choice": ["a", "b"]}, "max_tokens": 4}
    assert e["two"] == "bad structured_outputs: You can only use one kind of structured outputs constraint but multiple are specified"
    assert e["typo"].startswith("bad structured_outputs: unknown field(s) ['jsn']")
    assert e["badre"].startswith("bad structured_outputs: Failed to transform regex into a grammar")


def test_ids_keep_their_digits_when_some_are_missing(tmp_path):
    # finding 8: old code gave '1.0' and '1e+16'
    rows = [{"id": 1, "prompt": "a"}, {"prompt": "b"}, {"id": 10000000000000001, "prompt": "c"}]
    reqs, _ = _load(_jsonl(tmp_path / "a.jsonl", rows))
    assert [reqs["id"][0], reqs["id"][2]] == ["1", "10000000000000001"]
    pd.DataFrame({"id": pd.array([1, None, 10000000000000001], dtype="Int64"), "prompt": list("abc")}).to_parquet(
        tmp_path / "a.parquet")
    reqs, _ = _load(tmp_path / "a.parquet")
    assert [reqs["id"][0], reqs["id"][2]] == ["1", "10000000000000001"]


def test_generated_ids_come_from_content_not_position(tmp_path):
    # finding 8: old code gave row-N, so inserting a line moved every later result onto another prompt
    rows = [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "a"}]
    before, _ = _load(_jsonl(tmp_path / "a.jsonl", rows))
    after, _ = _load(_jsonl(tmp_path / "b.jsonl", [{"prompt": "new"}, *rows]))
    assert list(after["id"][1:]) == list(before["id"])
    a, b, a2 = before["id"]
    assert a.startswith("row-") and len(a) == len("row-") + 12 and a2 == f"{a}-2" and b != a
    with_sampling, _ = _load(_jsonl(tmp_path / "c.jsonl", [{"prompt": "a", "sampling": {"max_tokens": 5}}]))
    assert with_sampling["id"][0] != a  # a different request: a different id


def test_bom_keeps_first_row(tmp_path):
    # finding 8: old code made the first row of a BOM file an error row and lost its id
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": "first", "messages": HI}).encode() + b"\n")
    reqs, _ = _load(p)
    assert list(reqs["id"]) == ["first"] and reqs["error"][0] is None


def test_non_utf8_jsonl_line_is_that_rows_error(tmp_path):
    # finding 8: old code rejected the whole file without naming the line
    reqs, _ = _load(_jsonl(tmp_path / "a.jsonl", [{"prompt": "a"}, {"prompt": "b"}, b'{"prompt": "caf\xe9"}']))
    assert list(reqs["error"][:2]) == [None, None]
    assert reqs["error"][2] == "line 3 is not UTF-8 (byte 0xe9 at column 16)"


def test_non_utf8_csv_names_file_and_line(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"prompt\nok\ncaf\xe9\n")
    with pytest.raises(InputError, match=r"a\.csv: line 3 is not UTF-8"):
        read_table(tmp_path / "a.csv")


def test_folder_is_an_input_error(tmp_path):
    # finding 8 / tour: old code said 'unknown input format' or a raw IsADirectoryError
    (tmp_path / "in.jsonl").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        read_table(tmp_path / "in.jsonl")


def test_file_level_errors(tmp_path):
    with pytest.raises(InputError, match="input file not found"):
        read_table(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match="holds no rows"):
        read_table(tmp_path / "empty.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\x1f\x8b\x08\x00" + bytes(32))
    with pytest.raises(InputError, match="binary file"):
        read_table(tmp_path / "bin.jsonl")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="cannot read .*bad.parquet"):
        read_table(tmp_path / "bad.parquet")
    (tmp_path / "q.csv").write_text("question\nhello\n")
    with pytest.raises(InputError, match=r"no usable column.*found \['question'\]"):
        normalize_requests(read_table(tmp_path / "q.csv"))
    _jsonl(tmp_path / "dup.jsonl", [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}, {"id": "a", "prompt": "z"}])
    with pytest.raises(InputError, match=r"ids must be unique.*'a' \(lines 1, 3\)"):
        normalize_requests(read_table(tmp_path / "dup.jsonl"))


def test_bad_messages_are_row_errors():
    df = pd.DataFrame({"id": list("abcdefg"), "messages": [
        HI, [{"role": "wizard", "content": "x"}], [{"role": "user", "content": ""}],
        "not json", [{"role": "user"}], [{"role": "user", "content": 3}], None]})
    reqs, kind = normalize_requests(df)
    errs = [None if e is None else e.split(":")[0] for e in reqs["error"]]
    assert kind == "messages" and errs == [None, "unknown role", "empty content"] + ["malformed messages"] * 4


def test_openai_inputs_as_the_official_client_writes_them(tmp_path):
    # issue 25: `developer` was 'unknown role', text parts 'content of message 0 is not a string', logprobs/top_logprobs
    # and logit_bias 'unsupported field'
    parts = [{"type": "text", "text": "what is"}, {"type": "text", "text": "Ray?"}]
    reqs, _ = _load(_jsonl(tmp_path / "b.jsonl", [
        _oa("dev", {"messages": [{"role": "developer", "content": "be brief"}, *HI]}),
        _oa("parts", {"messages": [{"role": "user", "content": parts}]}),
        _oa("lp", {"messages": HI, "logprobs": True, "top_logprobs": 5, "n": 2, "logit_bias": {"50": -100},
                   "presence_penalty": 0.1, "frequency_penalty": 0.2, "max_completion_tokens": 4}),
        _oa("image", {"messages": [{"role": "user", "content": [parts[0], {"type": "image_url", "image_url": {}}]}]}),
        _oa("top-only", {"messages": HI, "top_logprobs": 2}),
        _oa("top-big", {"messages": HI, "logprobs": True, "top_logprobs": 21}),
        _oa("bias-word", {"messages": HI, "logit_bias": {"the": 5}}),
        _oa("audio", {"messages": HI, "modalities": ["audio"]})]))
    e = dict(zip(reqs["id"], reqs["error"]))
    assert [e["dev"], e["parts"], e["lp"]] == [None, None, None]
    assert json.loads(reqs["messages"][0])[0] == {"role": "developer", "content": "be brief"}  # mapped by the engine
    assert json.loads(reqs["messages"][1]) == [{"role": "user", "content": "what is\nRay?"}]
    assert json.loads(reqs["sampling"][2]) == {"logprobs": 5, "n": 2, "logit_bias": {"50": -100}, "presence_penalty": 0.1,
                                               "frequency_penalty": 0.2, "max_tokens": 4}
    assert row_sampling({}, reqs["sampling"][2])["logit_bias"] == {50: -100.0}
    assert e["image"] == "unsupported content part: message 0 part 1 is of type 'image_url' (only 'text' parts)"
    assert e["top-only"] == "bad top_logprobs: needs logprobs: true"
    assert e["top-big"] == "bad top_logprobs: must be from 0 to 20, got 21"
    assert e["bias-word"].startswith("bad logit_bias: must be an object of token ids to numbers")
    assert e["audio"] == "unsupported field: body.modalities (this job cannot honour it)"


def test_template_messages_maps_developer_only_for_templates_without_it():
    from ray_vllm_tutorial.inputs import template_messages
    from ray_vllm_tutorial.models import CHAT_TEMPLATE
    dev = [{"role": "developer", "content": "x"}, *HI]
    assert [m["role"] for m in template_messages(dev, CHAT_TEMPLATE)] == ["system", "user"]
    assert template_messages(dev, "{{ 'developer' }}") == dev


def test_the_inputs_own_columns_are_kept_never_overwritten(tmp_path):
    "A messages file's custom_id is kept; its own columns named like the job's (a reference answer in generated_text, a replica) ride along renamed."
    reqs, kind = _load(_jsonl(tmp_path / "own.jsonl", [
        {"custom_id": "c-1", "messages": [{"role": "user", "content": "hi"}], "generated_text": "a reference", "replica": 9}]))
    assert kind == "messages" and reqs["custom_id"][0] == "c-1"
    assert (reqs["input_generated_text"][0], reqs["input_replica"][0]) == ("a reference", 9)
    assert reqs.attrs["renamed"] == {"generated_text": "input_generated_text", "replica": "input_replica"}
    assert "generated_text" not in reqs and "replica" not in reqs  # left for the job's own answer

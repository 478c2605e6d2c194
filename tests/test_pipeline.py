"""End-to-end tests of ray_vllm_tutorial.pipeline on the embedded tiny model, on CPU."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import ray

from ray_vllm_tutorial.models import tiny_corpus
from ray_vllm_tutorial.cluster import init_ray, placement_groups
from ray_vllm_tutorial.inputs import InputError, normalize_requests
from ray_vllm_tutorial.outputs import MANIFEST_NAME, read_output
from ray_vllm_tutorial.engines import EchoEngine, EnginesDied
from ray_vllm_tutorial.pipeline import run_batch

SMALL = dict(max_tokens=8)


def _messages(i):
    return [{"role": "user", "content": tiny_corpus()[i]}]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _ids(out):
    return sorted(read_output(out)["id"])


def _kill_tree(proc, sig):
    "Send `sig` to the process we started and every process it started (by PID: nothing else is touched)."
    import psutil
    try:
        tree = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for pid in tree:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    proc.wait()


def _cli(inp, out, *args):
    "The `ray-vllm-batch` command line for `inp` -> `out` with more `args`."
    return [sys.executable, "-c", "from ray_vllm_tutorial.cli import main; raise SystemExit(main())", str(inp),
            str(out), *args]


def _sigint_default() -> None:
    """In a child before exec: SIGINT back to its default, so Python installs its Ctrl-C handler even when this test
    run was started in the background (a shell's background jobs ignore SIGINT, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ctrl_c(proc, timeout=120) -> str:
    "SIGINT to the job's process group, as a terminal sends it; its stderr once it ended (anything left: killed by PID)."
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        _kill_tree(proc, signal.SIGKILL)
    return err


def _assert_no_ray_left():
    assert not ray.is_initialized()  # run_batch started Ray, so it shut it down (with its placement groups)


def _assert_all_released(cpus: int, within: float = 20.0):
    "No live placement group and all `cpus` free again: Ray releases them asynchronously, so wait up to `within` s."
    deadline = time.monotonic() + within
    while True:
        live, free = placement_groups(), ray.available_resources().get("CPU")
        if (live == [] and free == cpus) or time.monotonic() > deadline: break
        time.sleep(0.5)
    assert live == [] and free == cpus, (live, free)


def test_input_errors_before_any_engine(tmp_path):
    with pytest.raises(InputError, match="input file not found"):
        run_batch(tmp_path / "missing.jsonl", tmp_path / "o")
    (tmp_path / "a.txt").write_text("hi")
    with pytest.raises(InputError, match="unknown input format '.txt'"):
        run_batch(tmp_path / "a.txt", tmp_path / "o")
    (tmp_path / "q.csv").write_text("question\nhello\n")
    with pytest.raises(InputError, match="no usable column.*found \\['question'\\]"):
        run_batch(tmp_path / "q.csv", tmp_path / "o")
    _write_jsonl(tmp_path / "dup.jsonl", [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])
    with pytest.raises(InputError, match="ids must be unique.*'a'"):
        run_batch(tmp_path / "dup.jsonl", tmp_path / "o")
    _write_jsonl(tmp_path / "ok.jsonl", [{"prompt": "x"}])
    with pytest.raises(ValueError, match="bad sampling parameters"):
        run_batch(tmp_path / "ok.jsonl", tmp_path / "o", sampling=dict(temperature=-1))
    assert not ray.is_initialized()


def test_bad_rows_are_reported_per_row():
    df = pd.DataFrame({"id": list("abcdef"), "messages": [
        _messages(0), [{"role": "wizard", "content": "x"}], [{"role": "user", "content": ""}],
        "not json", [{"role": "user"}], [{"role": "user", "content": 3}]]})
    reqs, kind = normalize_requests(df)
    assert kind == "messages" and list(reqs["id"]) == list("abcdef")
    errs = [None if pd.isna(e) else e.split(":")[0] for e in reqs["error"]]
    assert errs == [None, "unknown role", "empty content", "malformed messages", "malformed messages", "malformed messages"]


def test_formats_and_bad_rows_end_to_end(tmp_path):
    """JSONL (messages, mixed with bad rows), Parquet (prompt) and CSV (prompt, generated ids) in one Ray session."""
    good = [{"id": f"g{i}", "messages": _messages(i), "tag": i} for i in range(5)]
    bad = [{"id": "role", "messages": [{"role": "robot", "content": "x"}]},
           {"id": "empty", "messages": [{"role": "user", "content": " "}]},
           {"id": "long", "messages": [{"role": "user", "content": "the engine " * 1200}]}]
    jl = _write_jsonl(tmp_path / "in.jsonl", good + bad)
    pd.DataFrame({"id": [f"p{i}" for i in range(7)], "prompt": tiny_corpus()[:7]}).to_parquet(tmp_path / "in.parquet")
    pd.DataFrame({"prompt": tiny_corpus()[10:14], "lang": ["en"] * 4}).to_csv(tmp_path / "in.csv", index=False)
    from ray_vllm_tutorial.cluster import init_ray
    init_ray(num_cpus=3)
    try:
        s = run_batch(jl, tmp_path / "o1", sampling=SMALL, progress=False, output_format="jsonl")
        assert (s.rows, s.failed) == (8, 3)
        assert s.errors == {"unknown role": 1, "empty content": 1, "prompt too long": 1}
        r = read_output(tmp_path / "o1").set_index("id")
        assert sorted(r.index) == sorted(x["id"] for x in good + bad)
        assert r.loc["long", "error"].startswith("prompt too long: ") and pd.isna(r.loc["long", "generated_text"])
        assert set(r.loc[[f"g{i}" for i in range(5)], "finish_reason"]) <= {"stop", "length"}
        assert r.loc["g3", "tag"] == 3 and (r.loc[[f"g{i}" for i in range(5)], "output_tokens"] <= 8).all()
        assert list((tmp_path / "o1").glob("rvt-part-*.jsonl")), "jsonl output parts expected"

        s = run_batch(tmp_path / "in.parquet", tmp_path / "o2", sampling=SMALL, progress=False)
        assert (s.rows, s.failed) == (7, 0) and _ids(tmp_path / "o2") == [f"p{i}" for i in range(7)]
        s = run_batch(tmp_path / "in.csv", tmp_path / "o3", sampling=SMALL, progress=False)
        r3 = read_output(tmp_path / "o3")
        assert r3["id"].nunique() == 4 and set(r3["lang"]) == {"en"}  # ids derived from each row's content
        assert sorted(r3["prompt"]) == sorted(tiny_corpus()[10:14])
        assert ray.util.placement_group_table() == {} or all(
            v["state"] == "REMOVED" for v in ray.util.placement_group_table().values())
    finally:
        ray.shutdown()


def test_openai_batch_round_trip(tmp_path):
    reqs = [{"custom_id": f"task-{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "x", "messages": _messages(i), "max_tokens": 2 + i, "temperature": 0}} for i in range(4)]
    reqs.append({"custom_id": "broken", "method": "POST", "url": "/v1/chat/completions",
                 "body": {"messages": [{"role": "user", "content": ""}]}})
    s = run_batch(_write_jsonl(tmp_path / "batch.jsonl", reqs), tmp_path / "o", progress=False)
    _assert_no_ray_left()
    lines = [json.loads(x) for x in open(s.openai_output)]
    assert [x["custom_id"] for x in lines] == [r["custom_id"] for r in reqs]
    for i, x in enumerate(lines[:4]):
        body = x["response"]["body"]
        assert x["error"] is None and x["response"]["status_code"] == 200
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
        assert body["usage"]["completion_tokens"] <= 2 + i
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
        assert body["choices"][0]["finish_reason"] in ("stop", "length")
    assert lines[4]["response"] is None and lines[4]["error"]["code"] == "empty_content"


def test_placement_groups_removed_after_failure(tmp_path):
    from ray_vllm_tutorial.cluster import init_ray
    init_ray(num_cpus=3)
    try:
        with pytest.raises(RuntimeError, match="an engine failed to start"):
            run_batch(_write_jsonl(tmp_path / "in.jsonl", [{"prompt": "x"}]), tmp_path / "o",
                      model=str(tmp_path / "no-such-model"), progress=False)
        _assert_all_released(3)
    finally:
        ray.shutdown()


def test_not_enough_resources_is_clear(tmp_path):
    with pytest.raises(RuntimeError, match="2 replicas x tensor_parallel_size 2 = 4 GPUs needed, the cluster has 0"):
        run_batch(_write_jsonl(tmp_path / "in.jsonl", [{"prompt": "x"}]), tmp_path / "o", replicas=2,
                  tensor_parallel_size=2, device="gpu", progress=False)
    _assert_no_ray_left()


def test_resume_after_kill(tmp_path):
    """Kill a running CLI job for real, re-run it, and get every id exactly once."""
    rows = [{"id": f"k{i:03d}", "messages": _messages(i)} for i in range(240)]
    inp = _write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    cmd = _cli(inp, out, "--device", "cpu", "--max-tokens", "48", "--batch-size", "8", "--no-progress")
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_sigint_default, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 300 and len(list(out.glob("*.parquet"))) < 3:
        time.sleep(0.2)
    _kill_tree(proc, signal.SIGKILL)  # the driver and everything it started (Ray, engines)
    partial = read_output(out)
    assert 0 < len(partial) < len(rows), len(partial)  # killed halfway
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr == ""  # no Ray or vLLM line (not even Ray's C++ core) without --verbose
    assert "already done" in r.stdout
    final = read_output(out)
    assert sorted(final["id"]) == [x["id"] for x in rows]  # each id exactly once
    assert final["error"].isna().all()


def test_cli_failure_names_the_native_log(tmp_path):
    """An engine that cannot start: exit 2, one line that says so and names the file holding Ray's and vLLM's own
    messages (kept after a failure; a successful run deletes it)."""
    inp = _write_jsonl(tmp_path / "in.jsonl", [{"prompt": "x"}])
    r = subprocess.run(_cli(inp, tmp_path / "o", "--model", str(tmp_path / "no-such-model"), "--device", "cpu",
                            "--no-progress"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "an engine failed to start" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    log = Path(r.stderr.split("own messages: ")[1].split(")")[0])
    try:
        assert log.name.startswith("ray-vllm-batch-") and log.stat().st_size > 0
    finally:
        log.unlink(missing_ok=True)


def test_ctrl_c_exits_130_and_resumes(tmp_path):
    """Ctrl-C (SIGINT to the job's process group, as a terminal sends it) ends with 130 and a resume hint; the re-run
    finishes the job with every id exactly once."""
    rows = [{"id": f"c{i:03d}", "messages": _messages(i)} for i in range(160)]
    inp = _write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    cmd = _cli(inp, out, "--device", "cpu", "--max-tokens", "48", "--batch-size", "8", "--no-progress")
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_sigint_default, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while time.time() - t0 < 300 and not list(out.glob("*.parquet")):
        time.sleep(0.2)
    err = _ctrl_c(proc)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted; placement groups removed. Re-run the same command to resume." in err
    done = len(read_output(out))
    assert 0 < done < len(rows), done
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{done} already done" in r.stdout
    final = read_output(out)
    assert sorted(final["id"]) == [x["id"] for x in rows]


def test_progress_bar_shows_the_final_count(capsys):
    """A job that finishes between two looks of the bar still ends at rows/total with its real tokens/s."""
    import threading
    from ray_vllm_tutorial.cluster import init_ray
    from ray_vllm_tutorial.progress import ProgressCounter, progress_loop
    init_ray(num_cpus=1)
    try:
        counter = ProgressCounter.remote(1)
        stop = threading.Event()
        ray.get(counter.ready.remote(0, time.time() - 2.0))

        def finish():  # the whole job ends 0.2 s in, before the bar's next look
            time.sleep(0.2)
            ray.get(counter.add.remote(0, 64, 758, time.time()))
            stop.set()
        threading.Thread(target=finish).start()
        progress_loop(counter, 64, stop, time.time() - 2.0)
    finally:
        ray.shutdown()
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert "64/64" in last and " 0 tok/s" not in last and "r0 100%" in last, last
    assert 250 < int(last.split(" tok/s")[0].split()[-1]) <= 379, last  # 758 tokens over a little more than 2 s


# The engine stage with EchoEngine (no model): routing, faults and clean-up in seconds.
ECHO = dict(echo=dict(token_s=0.01))


def _echo_input(tmp_path, n=40):
    rows = [{"id": f"e{i:02d}", "messages": [{"role": "user", "content": " ".join(["w"] * (3 + i % 7))}]} for i in range(n)]
    return _write_jsonl(tmp_path / "echo.jsonl", rows), [r["id"] for r in rows]


def test_replicas_share_the_rows(tmp_path):
    """Engines are fed from the moment each is ready, so a short job's split depends on when each got ready; what
    holds in any order: rows only from engines that started, only once each was ready, and an engine ready while rows
    were still going in got some. With every engine started before the rows arrive, each gets its share."""
    inp, ids = _echo_input(tmp_path)
    s = run_batch(inp, tmp_path / "o", replicas=3, engine_cls=EchoEngine, engine_kwargs=ECHO, progress=False)
    _assert_no_ray_left()
    out = read_output(tmp_path / "o")
    assert sorted(out["id"]) == ids and s.failed == 0
    assert out.groupby("replica").size().to_dict() == {k: v["rows"] for k, v in s.replicas.items()}
    ready = {r: e["ready_at"] for r, e in s.engines.items()}
    assert set(s.replicas) <= set(ready) and all((g["started_at"] >= ready[r]).all() for r, g in out.groupby("replica"))
    assert [r for r, t in ready.items() if t < out["started_at"].max() - 0.5 and r not in s.replicas] == []
    from ray_vllm_tutorial.engines import engines_scope, start_engines
    from ray_vllm_tutorial.inputs import normalize_requests, read_table
    from ray_vllm_tutorial.pipeline import answer
    init_ray(num_cpus=4)
    try:
        with engines_scope(3, 1, "cpu", "echo", dict(max_tokens=8), ECHO, engine_cls=EchoEngine) as engines:
            done = answer(normalize_requests(read_table(inp))[0], engines, start_engines(engines)).to_pandas()
    finally:
        ray.shutdown()
    shares = done.groupby("replica").size()
    assert sorted(done["id"]) == ids and sorted(shares.index) == [0, 1, 2] and shares.min() >= 40 // 6  # batches of 7


def test_dead_engine_rows_go_to_the_others(tmp_path):
    inp, ids = _echo_input(tmp_path)
    s = run_batch(inp, tmp_path / "o", replicas=2, engine_cls=EchoEngine, progress=False,
                  engine_kwargs=dict(echo=dict(token_s=0.01, die_after={0: 10})))
    out = read_output(tmp_path / "o")
    assert sorted(out["id"]) == ids and s.failed == 0 and s.dead_engines == [0]
    assert (out["output_tokens"] == out["generated_text"].map(lambda t: len(t.split()))).all()


def test_all_engines_dead_stops_clearly_and_resumes(tmp_path):
    inp, ids = _echo_input(tmp_path)
    init_ray(num_cpus=4)
    try:
        with pytest.raises(EnginesDied, match="every engine died.*re-run the same command to resume"):
            run_batch(inp, tmp_path / "o", replicas=2, engine_cls=EchoEngine, progress=False, engine_restarts=0,
                      engine_kwargs=dict(echo=dict(die_after={0: 0, 1: 0})))
        _assert_all_released(4)
    finally:
        ray.shutdown()
    s = run_batch(inp, tmp_path / "o", replicas=2, engine_cls=EchoEngine, engine_kwargs=ECHO, progress=False)
    assert sorted(read_output(tmp_path / "o")["id"]) == ids and s.failed == 0


def test_a_dead_engine_is_replaced(tmp_path):
    "One engine, which dies after 10 rows: its replacement (same placement group) answers the rest; none left over."
    inp, ids = _echo_input(tmp_path)
    s = run_batch(inp, tmp_path / "o", replicas=1, engine_cls=EchoEngine, progress=False,
                  engine_kwargs=dict(echo=dict(token_s=0.01, die_after={0: 10})))
    out = read_output(tmp_path / "o")
    assert sorted(out["id"]) == ids and s.failed == 0
    assert (s.dead_engines, s.replaced, set(out["replica"])) == ([0], {0: 1}, {0})
    _assert_no_ray_left()
    with pytest.raises(ValueError, match="engine_restarts must be an integer >= 0, got -1"):
        run_batch(inp, tmp_path / "o2", engine_cls=EchoEngine, engine_restarts=-1, progress=False)


def test_a_poison_row_is_isolated_and_its_neighbours_answered(tmp_path):
    "A row that kills every engine it reaches: tried apart until alone, it becomes that row's error; the other 39 are answered."
    rows = [{"id": f"p{i:02d}", "messages": [{"role": "user", "content": " ".join(["w"] * (3 + i % 7) + ["POISON"] * (i == 17))}]}
            for i in range(40)]
    inp = _write_jsonl(tmp_path / "poison.jsonl", rows)
    s = run_batch(inp, tmp_path / "o", replicas=2, engine_cls=EchoEngine, progress=False, rows_in_flight=4, batch_size=4,
                  engine_kwargs=dict(echo=dict(token_s=0.01, poison="POISON")))
    out = read_output(tmp_path / "o").set_index("id")
    assert sorted(out.index) == [r["id"] for r in rows] and (s.failed, s.errors) == (1, {"killed the engine": 1})
    assert out.loc["p17", "error"].startswith("killed the engine: an engine died each time this row was in flight")
    good = out.drop(index="p17")
    assert good["error"].isna().all() and (good["output_tokens"] == [3 + int(i[1:]) % 7 for i in good.index]).all()
    assert len(s.dead_engines) >= 3 and sum(s.replaced.values()) >= 1  # 2 deaths among others, then at least one alone


def test_resume_runs_again_what_a_new_try_may_fix(tmp_path):
    "An `engine error` row runs again on resume (its earlier error kept); `killed the engine` rows only with retry_failed."
    inp, ids = _echo_input(tmp_path, n=10)
    rows = [json.loads(l) for l in inp.read_text().splitlines()]
    rows[3]["messages"][0]["content"] += " FLAKY"
    _write_jsonl(inp, rows)
    first = run_batch(inp, tmp_path / "o", engine_cls=EchoEngine, progress=False, engine_kwargs=dict(echo=dict(flaky="FLAKY")))
    assert (first.failed, first.errors) == (1, {"engine error": 1})
    again = run_batch(inp, tmp_path / "o", engine_cls=EchoEngine, progress=False, engine_kwargs=ECHO)
    out = read_output(tmp_path / "o").set_index("id")
    assert (again.new_rows, again.rerun, again.skipped, again.failed) == (1, 1, 9, 0)
    assert out.loc["e03", "error"] is None and out.loc["e03", "earlier_error"].startswith("engine error: ")
    assert sorted(out.index) == ids and out.attrs["duplicate_ids"] == 1  # the old error row is superseded


def test_a_fixed_input_row_runs_again_and_changed_settings_are_refused(tmp_path):
    from ray_vllm_tutorial.outputs import OutputFolderError
    inp, ids = _echo_input(tmp_path, n=10)
    rows = [json.loads(l) for l in inp.read_text().splitlines()]
    rows[5]["messages"][0]["role"] = "robot"
    _write_jsonl(inp, rows)
    first = run_batch(inp, tmp_path / "o", engine_cls=EchoEngine, progress=False, engine_kwargs=ECHO)
    assert first.errors == {"unknown role": 1}
    rows[5]["messages"][0]["role"] = "user"  # the user fixes the bad line
    _write_jsonl(inp, rows)
    with pytest.raises(OutputFolderError, match=r"accept_changed_input=True \(--accept-changed-input\)"):
        run_batch(inp, tmp_path / "o", engine_cls=EchoEngine, progress=False, engine_kwargs=ECHO)
    fixed = run_batch(inp, tmp_path / "o", engine_cls=EchoEngine, progress=False, engine_kwargs=ECHO,
                      accept_changed_input=True)
    assert (fixed.new_rows, fixed.rerun, fixed.skipped, fixed.failed) == (1, 1, 9, 0)
    with pytest.raises(OutputFolderError, match=r"other settings \(sampling: .*max_tokens.*accept_changed_settings=True"):
        run_batch(inp, tmp_path / "o", engine_cls=EchoEngine, progress=False, engine_kwargs=ECHO, sampling=dict(max_tokens=4))
    manifest = json.loads((tmp_path / "o" / MANIFEST_NAME).read_text())
    assert manifest["settings"] == dict(model="tiny-chat", sampling=dict(max_tokens=256, temperature=0.0), engine_kwargs={})
    assert [r["status"] for r in manifest["runs"]] == ["done", "done"]  # a refused resume records no run


def test_ctrl_c_removes_placement_groups(tmp_path):
    import _thread
    import threading
    inp, _ = _echo_input(tmp_path)
    init_ray(num_cpus=4)
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)  # interrupt_main does nothing if SIGINT is ignored
    try:
        threading.Timer(3.0, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt):
            run_batch(inp, tmp_path / "o", replicas=2, engine_cls=EchoEngine, progress=False,
                      engine_kwargs=dict(echo=dict(hang=True)))
        _assert_all_released(4)
    finally:
        signal.signal(signal.SIGINT, handler)
        ray.shutdown()


def test_no_deprecated_ray_api(tmp_path):
    import warnings
    from ray.util.annotations import RayDeprecationWarning
    inp, ids = _echo_input(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RayDeprecationWarning)
        s = run_batch(inp, tmp_path / "o", replicas=2, engine_cls=EchoEngine, engine_kwargs=ECHO, progress=False)
    assert s.rows == 40


@pytest.mark.parametrize("kind", ["messages", "prompt", "openai"])
def test_resume_every_input_kind(tmp_path, kind):
    """A finished job re-run on the same folder answers nothing again; a half-done one (parts removed) finishes:
    every id once, for each input kind. OpenAI input: its response file is rewritten, never read back as results."""
    texts = [" ".join(["w"] * (2 + i % 5)) for i in range(12)]
    if kind == "messages":
        rows = [{"id": i, "messages": [{"role": "user", "content": t}]} for i, t in enumerate(texts)]
    elif kind == "prompt":
        rows = [{"prompt": t, "max_tokens": 3} for t in texts]  # no ids: derived from each row's content
    else:
        rows = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                 "body": {"messages": [{"role": "user", "content": t}], "max_tokens": 3}} for i, t in enumerate(texts)]
    inp, out = _write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "o"
    run = lambda: run_batch(inp, out, replicas=2, engine_cls=EchoEngine, engine_kwargs=ECHO, progress=False)
    first = run()
    ids = sorted(read_output(out)["id"])
    assert (first.rows, first.new_rows, len(set(ids))) == (12, 12, 12)
    again = run()
    assert (again.rows, again.new_rows, again.skipped) == (12, 0, 12)
    for part in sorted(out.glob("rvt-part-*"))[::2]:  # as if the job had been killed before these parts were written
        part.unlink()
    resumed = run()
    assert sorted(read_output(out)["id"]) == ids and resumed.rows == 12 and 0 < resumed.new_rows < 12
    if kind == "messages":
        assert ids == sorted(str(i) for i in range(12))  # ids keep their digits ("1", not "1.0")
    if kind == "openai":
        lines = [json.loads(x) for x in open(resumed.openai_output)]
        assert [x["custom_id"] for x in lines] == [f"r{i}" for i in range(12)]  # one line each, input order


def _dry_run(token_s: float = 0.05) -> list[str]:
    "CLI arguments of a dry run (EchoEngine): `token_s` seconds per word, slow enough that a job can be stopped halfway."
    return ["--dry-run", "--engine-arg", f'echo={{"token_s": {token_s}}}', "--batch-size", "4", "--rows-in-flight", "4",
            "--no-progress"]


def _rows_of_kind(kind, n):
    texts = [" ".join(["w"] * (3 + i % 4)) for i in range(n)]
    if kind == "prompt":
        return [{"prompt": f"{i} {t}"} for i, t in enumerate(texts)]  # no ids: derived from the content
    return [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"messages": [{"role": "user", "content": t}], "max_tokens": 6}} for i, t in enumerate(texts)]


@pytest.mark.parametrize("kind, how", [("prompt", "SIGKILL"), ("openai", "Ctrl-C")])  # messages: the real-engine tests
def test_cli_dry_run_resumes_after_kill_for_every_kind(tmp_path, kind, how):
    """`ray-vllm-batch --dry-run` (EchoEngine, no model) killed mid-job, then re-run: every id exactly once."""
    inp, out = _write_jsonl(tmp_path / "in.jsonl", _rows_of_kind(kind, 120)), tmp_path / "out"
    cmd = _cli(inp, out, *_dry_run())
    rerun = _cli(inp, out, *_dry_run(token_s=0.002))  # the same job (same input), a faster echo
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_sigint_default, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while time.time() - t0 < 120 and len(list(out.glob("rvt-part-*"))) < 2:
        time.sleep(0.1)
    if how == "SIGKILL":
        _kill_tree(proc, signal.SIGKILL)
    else:
        err = _ctrl_c(proc)
        assert proc.returncode == 130, err[-2000:]
    done = len(read_output(out))
    assert 0 < done < 120, done
    r = subprocess.run(rerun, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr == ""  # --no-progress and no --verbose: nothing from Ray's C++ core either
    assert f"{done} already done" in r.stdout
    final = read_output(out)
    assert final["id"].nunique() == len(final) == 120 and final["error"].isna().all()
    if kind == "openai":
        lines = [json.loads(x) for x in open(out / "openai_batch_output.jsonl")]
        assert [x["custom_id"] for x in lines] == [f"r{i}" for i in range(120)]


def test_sigkill_of_the_cli_leaves_no_ray_process(tmp_path):
    """SIGKILL of the CLI's own process only (no process group): what it started (its private Ray, the engines)
    is gone within seconds, not minutes; only PIDs we saw it start are checked and, at the end, killed."""
    import psutil
    inp, out = _write_jsonl(tmp_path / "in.jsonl", _rows_of_kind("prompt", 120)), tmp_path / "out"
    cmd = _cli(inp, out, *_dry_run())
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_sigint_default, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120 and not list(out.glob("rvt-part-*")):
        time.sleep(0.1)
    started = [p for p in psutil.Process(proc.pid).children(recursive=True)]
    assert len(started) >= 3, started  # Ray's own processes, the engines, the watchdog
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    alive = started
    while time.time() < deadline and alive:
        time.sleep(0.5)
        alive = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in alive:  # clean up what the check found, by PID, before failing
        p.kill()
    assert not alive, [(p.pid, p.name()) for p in alive]


def test_a_failed_or_hung_start_drops_only_that_engine(tmp_path):
    """Engine 1 fails in `start`, engine 2 never gets ready: engine 0 answers every row; both are named with why."""
    inp, ids = _echo_input(tmp_path)
    s = run_batch(inp, tmp_path / "o", replicas=3, engine_cls=EchoEngine, progress=False, rows_in_flight=4,
                  start_timeout_s=2, engine_kwargs=dict(echo=dict(token_s=0.05, start={1: "fail", 2: "hang"})))
    _assert_no_ray_left()
    assert sorted(read_output(tmp_path / "o")["id"]) == ids and s.failed == 0
    assert sorted(s.replicas) == [0] and s.dead_engines == []
    assert s.start_failures == {1: "an engine failed to start: RuntimeError: echo engine 1 was told to fail",
                                2: "engine 2 did not start within 2 s"}


def test_no_engine_started_names_each_failure(tmp_path):
    inp, _ = _echo_input(tmp_path)
    with pytest.raises(RuntimeError, match="^no engine started: engine 0: an engine failed to start: RuntimeError: "
                                           "echo engine 0 was told to fail; engine 1: .*echo engine 1 was told to fail$"):
        run_batch(inp, tmp_path / "o", replicas=2, engine_cls=EchoEngine, progress=False,
                  engine_kwargs=dict(echo=dict(start={0: "fail", 1: "fail"})))
    _assert_no_ray_left()


def _alive(processes) -> list[int]:
    "Those of an engine's reported processes (pid + start time) still running."
    import psutil
    alive = []
    for p in processes:
        try:
            q = psutil.Process(p["pid"])
            if abs(q.create_time() - p["created"]) < 1e-3 and q.status() != psutil.STATUS_ZOMBIE:
                alive.append(p["pid"])
        except psutil.NoSuchProcess:
            pass
    return alive


def test_no_engine_process_outlives_the_job(tmp_path):
    """Each engine runs a child process (as vLLM's engine core is one); engine 0 crashes mid-job (its child is left
    running, as vLLM's is), engine 1 ends normally: after `run_batch` returns, neither child is alive. Rows answered
    before the crash are kept, the rest go to engine 1: every id once, row by row."""
    inp, ids = _echo_input(tmp_path)
    init_ray(num_cpus=4)  # the caller's own Ray: nothing is cleaned up by shutting it down
    try:
        s = run_batch(inp, tmp_path / "o", replicas=2, engine_cls=EchoEngine, progress=False,
                      engine_kwargs=dict(echo=dict(token_s=0.01, child=True, die_after={0: 10})))
        procs = [p for v in s.engines.values() for p in v["processes"]]
        assert len(procs) == 2 and s.dead_engines == [0], (procs, s.dead_engines)
        assert _alive(procs) == []
        assert sorted(read_output(tmp_path / "o")["id"]) == ids and s.failed == 0
    finally:
        ray.shutdown()


def test_sigterm_stops_like_ctrl_c_and_exits_143(tmp_path):
    """SIGTERM to the CLI (as Slurm, Kubernetes or `timeout` send it, to the process only): exit 143 with a resume
    hint, the run recorded as interrupted, no engine process left, no log file left behind; a re-run finishes."""
    import psutil
    inp, out = _write_jsonl(tmp_path / "in.jsonl", _rows_of_kind("prompt", 120)), tmp_path / "out"
    cmd = _cli(inp, out, *_dry_run(), "--engine-arg", 'echo={"token_s": 0.05, "child": true}')
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while time.time() - t0 < 120 and not list(out.glob("rvt-part-*")):
        time.sleep(0.1)
    children = [p for p in psutil.Process(proc.pid).children(recursive=True) if "time.sleep(3600)" in " ".join(p.cmdline())]
    assert len(children) == 1, children  # the one engine's stand-in engine core
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        _kill_tree(proc, signal.SIGKILL)
    assert proc.returncode == 143, err[-3000:]
    assert "terminated (SIGTERM)" in err and "own messages" not in err, err
    assert json.loads((out / MANIFEST_NAME).read_text())["runs"][-1]["status"] == "interrupted"
    assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    done = len(read_output(out))
    assert 0 < done < 120, done

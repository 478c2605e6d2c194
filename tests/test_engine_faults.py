"""The engine stage with `EchoEngine` (no model): routing, faults, resume and clean-up, all jobs in one Ray.

Each test runs `run_batch` inside the caller's Ray, as a notebook or a service does: one Ray start for the whole
module (a private one per job costs 15-20 s on 2 cores), and after every test the check that the job gave back
everything it held (no placement group left, every CPU free). `test_pipeline.py` checks the private-Ray path."""
import json
import signal
import time

import pandas as pd
import pytest
import ray

from ray_vllm_tutorial.cluster import init_ray
from ray_vllm_tutorial.engines import EchoEngine, EnginesDied
from ray_vllm_tutorial.models import tiny_corpus
from ray_vllm_tutorial.outputs import MANIFEST_NAME, read_output
from ray_vllm_tutorial.pipeline import run_batch

from jobs import ECHO, _assert_all_released, _echo_input, _write_jsonl

CPUS = 8  # logical CPUs of the shared Ray: enough for 3 replicas and Ray Data's tasks


@pytest.fixture(scope="module", autouse=True)
def shared_ray():
    init_ray(num_cpus=CPUS, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def gives_everything_back():
    yield
    _assert_all_released(CPUS)


def test_progress_bar_shows_the_final_count(capsys):
    """A job that finishes between two looks of the bar still ends at rows/total with its real tokens/s."""
    import threading
    from ray_vllm_tutorial.progress import ProgressCounter, progress_loop
    counter = ProgressCounter.remote(1)
    stop = threading.Event()
    ray.get(counter.ready.remote(0, time.time() - 2.0))

    def finish():  # the whole job ends 0.2 s in, before the bar's next look
        time.sleep(0.2)
        ray.get(counter.add.remote(0, 64, 758, time.time()))
        stop.set()
    threading.Thread(target=finish).start()
    progress_loop(counter, 64, stop, time.time() - 2.0)
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert "64/64" in last and " 0 tok/s" not in last and "r0 100%" in last, last
    assert 250 < int(last.split(" tok/s")[0].split()[-1]) <= 379, last  # 758 tokens over a little more than 2 s


def test_replicas_share_the_rows(tmp_path):
    """Engines are fed from the moment each is ready: engine 0 is ready at once, engines 1 and 2 a second later, and
    each may hold 7 rows (one batch) while engine 0 needs about 5 s for all 40 alone, so rows still waiting when 1 and
    2 are ready go to them too. Rows come only from engines that started, and only once each was ready. (Timing each
    row against the engines' ready times instead is not a rule: an engine's clock says when it began a row, not when
    the dispatcher handed it over, and a busy machine can put a second between the two.) With every engine started
    before the rows arrive, each gets its share."""
    inp, ids = _echo_input(tmp_path)
    s = run_batch(inp, tmp_path / "o", replicas=3, engine_cls=EchoEngine, rows_in_flight=7, progress=False,
                  engine_kwargs=dict(echo=dict(token_s=0.1, start={1: 1.0, 2: 1.0})))
    out = read_output(tmp_path / "o")
    assert sorted(out["id"]) == ids and s.failed == 0
    assert out.groupby("replica").size().to_dict() == {k: v["rows"] for k, v in s.replicas.items()}
    ready = {r: e["ready_at"] for r, e in s.engines.items()}
    assert set(s.replicas) == set(ready) == {0, 1, 2}, (s.replicas, ready)
    assert all((g["started_at"] >= ready[r]).all() for r, g in out.groupby("replica"))
    from ray_vllm_tutorial.engines import engines_scope, start_engines
    from ray_vllm_tutorial.inputs import normalize_requests, read_table
    from ray_vllm_tutorial.pipeline import answer
    with engines_scope(3, 1, "cpu", "echo", dict(max_tokens=8), ECHO, engine_cls=EchoEngine) as engines:
        done = answer(normalize_requests(read_table(inp))[0], engines, start_engines(engines)).to_pandas()
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
    with pytest.raises(EnginesDied, match="every engine died.*re-run the same command to resume"):
        run_batch(inp, tmp_path / "o", replicas=2, engine_cls=EchoEngine, progress=False, engine_restarts=0,
                  engine_kwargs=dict(echo=dict(die_after={0: 0, 1: 0})))
    _assert_all_released(CPUS)
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
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)  # interrupt_main does nothing if SIGINT is ignored
    try:
        threading.Timer(3.0, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt):
            run_batch(inp, tmp_path / "o", replicas=2, engine_cls=EchoEngine, progress=False,
                      engine_kwargs=dict(echo=dict(hang=True)))
        _assert_all_released(CPUS)
    finally:
        signal.signal(signal.SIGINT, handler)


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
        rows = [{"prompt": t, "sampling": {"max_tokens": 3}} for t in texts]  # no ids: derived from each row's content
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


def test_a_failed_or_hung_start_drops_only_that_engine(tmp_path):
    """Engine 1 fails in `start`, engine 2 never gets ready: engine 0 answers every row; both are named with why."""
    inp, ids = _echo_input(tmp_path)
    s = run_batch(inp, tmp_path / "o", replicas=3, engine_cls=EchoEngine, progress=False, rows_in_flight=4,
                  start_timeout_s=2, engine_kwargs=dict(echo=dict(token_s=0.05, start={1: "fail", 2: "hang"})))
    assert sorted(read_output(tmp_path / "o")["id"]) == ids and s.failed == 0
    assert sorted(s.replicas) == [0] and s.dead_engines == []
    assert s.start_failures == {1: "an engine failed to start: RuntimeError: echo engine 1 was told to fail",
                                2: "engine 2 did not start within 2 s"}


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
    s = run_batch(inp, tmp_path / "o", replicas=2, engine_cls=EchoEngine, progress=False,  # in the caller's Ray:
                  engine_kwargs=dict(echo=dict(token_s=0.01, child=True, die_after={0: 10})))  # no shutdown cleans up
    procs = [p for v in s.engines.values() for p in v["processes"]]
    assert len(procs) == 2 and s.dead_engines == [0], (procs, s.dead_engines)
    assert _alive(procs) == []
    assert sorted(read_output(tmp_path / "o")["id"]) == ids and s.failed == 0


def test_parquet_and_csv_inputs(tmp_path):
    """Parquet (prompt, given ids) and CSV (prompt, ids derived from each row's content, an extra column kept)."""
    pd.DataFrame({"id": [f"p{i}" for i in range(7)], "prompt": tiny_corpus()[:7]}).to_parquet(tmp_path / "in.parquet")
    pd.DataFrame({"prompt": tiny_corpus()[10:14], "lang": ["en"] * 4}).to_csv(tmp_path / "in.csv", index=False)
    s = run_batch(tmp_path / "in.parquet", tmp_path / "o2", engine_cls=EchoEngine, engine_kwargs=ECHO, progress=False)
    assert (s.rows, s.failed) == (7, 0) and sorted(read_output(tmp_path / "o2")["id"]) == [f"p{i}" for i in range(7)]
    s = run_batch(tmp_path / "in.csv", tmp_path / "o3", engine_cls=EchoEngine, engine_kwargs=ECHO, progress=False)
    r3 = read_output(tmp_path / "o3")
    assert r3["id"].nunique() == 4 and set(r3["lang"]) == {"en"} and s.rows == 4
    assert sorted(r3["prompt"]) == sorted(tiny_corpus()[10:14])


def test_a_replacement_that_fails_to_start_is_told_apart(tmp_path):
    """Engine 0 dies after 5 rows and the engine meant to replace it fails to start: the summary says engine 0 died
    and its replacement did not start (not that engine 0 never started); engine 1 answers the rest, slowly enough
    (2 rows at a time) for the replacement's start to fail before the job ends."""
    inp, ids = _echo_input(tmp_path)
    s = run_batch(inp, tmp_path / "o", replicas=2, engine_cls=EchoEngine, progress=False, rows_in_flight=2,
                  engine_kwargs=dict(echo=dict(token_s=0.05, die_after={0: 5}, replacement_start={0: "fail"})))
    assert sorted(read_output(tmp_path / "o")["id"]) == ids and s.failed == 0
    assert (s.dead_engines, s.start_failures) == ([0], {})
    assert s.replacement_failures == {0: "an engine failed to start: RuntimeError: echo engine 0 was told to fail"}
    assert "replacements that did not start (the others finished the rows): {0: " in str(s)


def test_a_folder_of_shards_streams_and_resumes(tmp_path):
    """A folder of JSONL shards (and a hidden file and a `_SUCCESS` marker it skips) streams through Ray Data: every
    row once, `input_row` counting across the files in order, a bad row that row's error, a content id repeated
    across two files numbered, the summary's counts from the output alone; a re-run has nothing left to do."""
    shards = tmp_path / "in"
    shards.mkdir()
    _write_jsonl(shards / "a.jsonl", [{"id": f"a{i}", "prompt": f"first file row {i}"} for i in range(30)]
                 + [{"prompt": "same words"}])
    _write_jsonl(shards / "b.jsonl", [{"prompt": "same words"}, {"id": "bad", "messages": [{"role": "robot", "content": "x"}]}]
                 + [{"id": f"b{i}", "prompt": f"second file row {i}"} for i in range(20)])
    (shards / "_SUCCESS").write_text("")
    (shards / ".hidden.jsonl").write_text('{"id": "hidden", "prompt": "never read"}\n')
    s = run_batch(shards, tmp_path / "o", engine_cls=EchoEngine, engine_kwargs=ECHO, progress=False, replicas=2)
    out = read_output(tmp_path / "o").sort_values("input_row")
    assert (s.rows, s.new_rows, s.failed, s.errors) == (53, 53, 1, {"unknown role": 1}), s
    assert list(out["input_row"]) == list(range(53)) and out["id"].is_unique and "hidden" not in set(out["id"])
    same = list(out["id"][out["prompt"] == "same words"])
    assert len(same) == 2 and same[1] == same[0] + "-2", same
    assert list(out["id"][:2]) == ["a0", "a1"] and list(out["id"][-1:]) == ["b19"]
    again = run_batch(shards, tmp_path / "o", engine_cls=EchoEngine, engine_kwargs=ECHO, progress=False, replicas=2)
    assert (again.new_rows, again.skipped, again.rows) == (0, 53, 53)


def test_a_big_file_streams_like_a_small_one(tmp_path, monkeypatch):
    """The same file read in the driver and, above the size limit (set to 0 here), by Ray Data gives the same rows;
    ids repeated across blocks of the stream are still refused before any engine starts."""
    import ray_vllm_tutorial.pipeline as pipeline
    from ray_vllm_tutorial.inputs import InputError
    inp = _write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"row {i}"} for i in range(50)] + [{"prompt": "row 3"}])
    small = run_batch(inp, tmp_path / "small", engine_cls=EchoEngine, engine_kwargs=ECHO, progress=False)
    import ray_vllm_tutorial.inputs as inputs
    streamed, read_in_ray = [], inputs._read_in_ray
    monkeypatch.setattr(inputs, "_read_in_ray", lambda *a, **k: streamed.append(1) or read_in_ray(*a, **k))
    monkeypatch.setattr(pipeline, "DRIVER_READ_BYTES", 0)
    big = run_batch(inp, tmp_path / "big", engine_cls=EchoEngine, engine_kwargs=ECHO, progress=False)
    assert streamed == [1]  # read by Ray Data, not in the driver
    cols = ["id", "input_row", "generated_text", "error"]
    a, b = (read_output(tmp_path / o)[cols].sort_values("input_row").reset_index(drop=True) for o in ("small", "big"))
    assert (small.rows, big.rows) == (51, 51) and a.equals(b)
    dup = _write_jsonl(tmp_path / "dup.jsonl", [{"id": f"r{i}", "prompt": "x"} for i in range(5000)] + [{"id": "r7", "prompt": "y"}])
    with pytest.raises(InputError, match=r"repeated: 'r7' \(lines 8, 5001\)"):
        run_batch(dup, tmp_path / "dup", engine_cls=EchoEngine, engine_kwargs=ECHO, progress=False)
    assert not (tmp_path / "dup").exists()  # refused before the output folder was claimed

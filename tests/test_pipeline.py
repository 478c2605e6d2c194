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

from ray_vllm_tutorial.cluster import init_ray
from ray_vllm_tutorial.inputs import InputError, normalize_requests
from ray_vllm_tutorial.outputs import MANIFEST_NAME, read_output
from ray_vllm_tutorial.engines import EchoEngine
from ray_vllm_tutorial.pipeline import run_batch

from jobs import _assert_all_released, _echo_input, _messages, _write_jsonl

SMALL = dict(max_tokens=8)


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


def test_bad_rows_end_to_end_on_the_real_engine(tmp_path, capsys):
    """JSONL messages mixed with bad rows, on the tiny model, through the command line: the good rows answered within
    max_tokens, each bad one its error (a prompt longer than the engine's context is found by the engine; a grammar
    vLLM cannot build, before any engine starts); a row's JSON schema or choices shape its answer; JSONL result files."""
    from ray_vllm_tutorial.cli import main
    good = [{"id": f"g{i}", "messages": _messages(i), "tag": i} for i in range(5)]
    verdict = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
               "additionalProperties": False}
    shaped = [{"id": "json", "messages": _messages(5), "sampling": {"structured_outputs": {"json": verdict}, "max_tokens": 16}},
              {"id": "choice", "messages": _messages(6), "sampling": {"structured_outputs": {"choice": ["batch", "stream"]}}}]
    bad = [{"id": "role", "messages": [{"role": "robot", "content": "x"}]},
           {"id": "empty", "messages": [{"role": "user", "content": " "}]},
           {"id": "long", "messages": [{"role": "user", "content": "the engine " * 1200}]},
           {"id": "schema", "messages": _messages(7), "sampling": {"structured_outputs": {"json": {"type": "nonsense"}}}}]
    jl = _write_jsonl(tmp_path / "in.jsonl", good + shaped + bad)
    assert main([str(jl), str(tmp_path / "o1"), "--max-tokens", "8", "--no-progress", "--output-format", "jsonl",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "rows: 11 in" in out and "failed: 4 {" in out, out
    assert all(f"'{k}': 1" in out for k in ("unknown role", "empty content", "bad structured_outputs", "prompt too long")), out
    r = read_output(tmp_path / "o1").set_index("id")
    assert sorted(r.index) == sorted(x["id"] for x in good + shaped + bad)
    assert r.loc["long", "error"].startswith("prompt too long: ") and pd.isna(r.loc["long", "generated_text"])
    assert r.loc["schema", "error"].startswith("bad structured_outputs: Failed to transform json schema")
    assert set(r.loc[[f"g{i}" for i in range(5)], "finish_reason"]) <= {"stop", "length"}
    assert r.loc["g3", "tag"] == 3 and (r.loc[[f"g{i}" for i in range(5)], "output_tokens"] <= 8).all()
    assert json.loads(r.loc["json", "generated_text"])["answer"] in ("yes", "no")  # the schema shaped the answer
    assert r.loc["choice", "generated_text"] in ("batch", "stream")
    assert list((tmp_path / "o1").glob("rvt-part-*.jsonl")), "jsonl output parts expected"
    assert not ray.is_initialized()  # its private Ray stopped, with its placement groups


def test_placement_groups_removed_after_failure(tmp_path):
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


def test_killed_then_resumed(tmp_path):
    """A real CLI job on the tiny model, SIGKILLed with its whole process group (nothing of ours runs to clean up),
    then re-run: every id exactly once, no line on stderr. (Ctrl-C and SIGTERM of the CLI: the dry-run tests.)"""
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
    done = len(read_output(out))
    assert 0 < done < len(rows), done  # killed halfway
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr == ""  # no Ray or vLLM line (not even Ray's C++ core) without --verbose
    assert f"{done} already done" in r.stdout
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


def test_no_engine_started_names_each_failure(tmp_path):
    inp, _ = _echo_input(tmp_path)
    with pytest.raises(RuntimeError, match="^no engine started: engine 0: an engine failed to start: RuntimeError: "
                                           "echo engine 0 was told to fail; engine 1: .*echo engine 1 was told to fail$"):
        run_batch(inp, tmp_path / "o", replicas=2, engine_cls=EchoEngine, progress=False,
                  engine_kwargs=dict(echo=dict(start={0: "fail", 1: "fail"})))
    _assert_no_ray_left()


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

"""The `ray-vllm-batch` command line: options generated from `run_batch`, both input/output forms, pass-through of
engine and sampling arguments, exit statuses. Fast: `run_batch` is replaced where no job needs to run."""
import functools
import inspect

import pytest
import ray
from fastcore.docments import docments

from ray_vllm_tutorial import cli
from ray_vllm_tutorial.engines import EchoEngine
from ray_vllm_tutorial.pipeline import run_batch


@pytest.fixture
def calls(monkeypatch):
    "Replace `run_batch` in the CLI by a recorder; the list of its calls' arguments."
    seen = []

    class Done:
        failed, rows = 0, 1
        def __str__(self):
            return "summary"

    @functools.wraps(run_batch)  # the parser is still built from run_batch's signature and comments
    def fake(input, output, **kw):
        seen.append(dict(input=str(input), output=str(output), **kw))
        return Done()
    monkeypatch.setattr(cli, "run_batch", fake)
    return seen


def test_every_run_batch_parameter_is_an_option_with_its_default():
    parser = cli.build_parser()
    actions = {a.dest: a for a in parser._actions}
    sig = inspect.signature(run_batch)
    for name, p in sig.parameters.items():
        if name in cli.BY_HAND:
            continue
        assert name in actions, name
        assert actions[name].default == p.default, name
        assert docments(run_batch)[name] in actions[name].help, name  # the parameter's comment is the help
    assert actions["device"].choices == ("auto", "gpu", "cpu")
    assert actions["output_format"].choices == ("parquet", "jsonl")


def test_positional_and_option_forms_run_the_same_job(calls):
    assert cli.main(["in.jsonl", "out", "--no-progress"]) == 0
    assert cli.main(["-i", "in.jsonl", "-o", "out", "--no-progress"]) == 0
    assert cli.main(["--input-file", "in.jsonl", "--output", "out", "--no-progress"]) == 0
    assert calls[0] == calls[1] == calls[2]
    assert (calls[0]["input"], calls[0]["output"], calls[0]["progress"]) == ("in.jsonl", "out", False)


def test_defaults_sample_prompts_and_out_batch(calls):
    assert cli.main([""]) == 0  # `make demo` passes "" for the input
    assert calls[0]["input"].endswith("sample_prompts.jsonl") and calls[0]["output"] == "out/batch"


def test_engine_and_sampling_arguments_pass_through(calls):
    assert cli.main(["in.jsonl", "out", "--engine-arg", "max_num_seqs=256", "--engine-arg", "enforce_eager=true",
                     "--engine-arg", "load_format=dummy", "--engine-arg", "max-model-len=4096", "--max-tokens", "7",
                     "--seed", "3", "--stop", '["\\n"]', "--ignore-eos", "--sampling-arg", "min_tokens=2",
                     "--tp", "2", "--dp", "3", "--device", "cpu", "--output-format", "jsonl", "-v"]) == 0
    c = calls[0]
    assert c["engine_kwargs"] == dict(max_num_seqs=256, enforce_eager=True, load_format="dummy", max_model_len=4096)
    assert c["sampling"] == dict(max_tokens=7, seed=3, stop=["\n"], ignore_eos=True, min_tokens=2)
    assert (c["tensor_parallel_size"], c["replicas"], c["device"], c["output_format"], c["verbose"]) == (2, 3, "cpu", "jsonl", True)
    assert "engine_cls" not in c


def test_dry_run_uses_the_echo_engine_on_cpu(calls):
    assert cli.main(["in.jsonl", "out", "--dry-run", "--device", "gpu"]) == 0
    assert (calls[0]["engine_cls"], calls[0]["device"]) == (EchoEngine, "cpu")


@pytest.mark.parametrize("argv, message", [
    (["in.jsonl", "out", "--engine-arg", "max_model_len"], "--engine-arg expects KEY=VALUE, got 'max_model_len'"),
    (["a.jsonl", "-i", "b.jsonl"], "the input is given twice: 'a.jsonl' and 'b.jsonl'"),
    (["a.jsonl", "out1", "-o", "out2"], "the output folder is given twice"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
    (["--replicas", "two"], "invalid int value: 'two'"),
])
def test_usage_errors_exit_2(calls, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert calls == []


def test_missing_input_exits_2_before_any_engine(tmp_path, capsys):
    assert cli.main([str(tmp_path / "nope.csv"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ray-vllm-batch: error: ") and "input file not found" in err
    assert not (tmp_path / "out").exists()


def test_plan_prints_the_layout(capsys):
    assert cli.main(["--plan", "--model", "Llama-3.1-70B", "--gpus", "16", "--gpus-per-node", "8",
                     "--gpu-memory-gb", "80"]) == 0
    assert "--replicas 4 --tensor-parallel-size 4" in capsys.readouterr().out


def test_help_is_complete(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    text = cli.build_parser().format_help()
    for flag in ["--input-file", "--output-dir", "--tensor-parallel-size", "--tp", "--replicas", "--dp", "--engine-arg",
                 "--sampling-arg", "--no-progress", "--summary-plot", "--dry-run", "--plan", "--show", "--max-tokens"]:
        assert flag in text, flag
    assert text.rstrip().endswith("print this many result rows at the end")


def test_the_console_script_points_at_cli_main():
    import tomllib
    from pathlib import Path
    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["ray-vllm-batch"] == "ray_vllm_tutorial.cli:main"


def _echo_file(tmp_path, n=12):
    import json
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"c{i}", "messages": [{"role": "user", "content": "a b c"}]}) + "\n"
                           for i in range(n)))
    return inp


def test_the_command_runs_in_a_process_of_its_own(tmp_path):
    "The installed console script, as a user runs it: a dry run answers every row (exit 0), bad input exits 2."
    import subprocess
    import sys
    from pathlib import Path
    from ray_vllm_tutorial.outputs import read_output
    exe, inp, out = str(Path(sys.executable).with_name("ray-vllm-batch")), _echo_file(tmp_path), tmp_path / "out"
    first = subprocess.run([exe, str(inp), str(out), "--dry-run"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "rows: 12 in" in first.stdout and sorted(read_output(out)["id"]) == sorted(f"c{i}" for i in range(12))
    bad = subprocess.run([exe, str(tmp_path / "missing.jsonl"), str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "input file not found" in bad.stderr


def _open_files() -> set:
    "What this process's file descriptors point to, but Ray's own (its sockets and its session's log files)."
    import os
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if not (target.startswith("socket:") or target.startswith("/tmp/ray/")):
            out.add(target)
    return out


def test_main_leaves_its_caller_as_it_was(tmp_path):
    "In the caller's own process: the environment and vLLM's logger level are as before, and no file of ours stays open (its temporary log file included)."
    import logging
    import os
    inp = _echo_file(tmp_path)
    from ray_vllm_tutorial.cluster import init_ray
    init_ray(num_cpus=1)  # Ray's first start in a process sets RAY_AUTH_MODE and keeps a few files of its own
    ray.shutdown()
    env, level, files = dict(os.environ), logging.getLogger("vllm").level, _open_files()
    assert cli.main([str(inp), str(tmp_path / "out"), "--dry-run"]) == 0
    assert dict(os.environ) == env and logging.getLogger("vllm").level == level
    assert _open_files() <= files, _open_files() - files

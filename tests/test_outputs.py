"""The output folder is the job's record (issue 12): only the job's own parts are results, nothing else is deleted,
one job per folder, a changed input is refused, the folder is checked before anything runs."""
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ray_vllm_tutorial import outputs
from ray_vllm_tutorial.outputs import (LOCK_NAME, MANIFEST_NAME, RESULT_COLUMNS, OutputFolderError, claim_output,
                                       input_fingerprint, is_part_file, part_filename_provider, quarantined,
                                       read_output, write_openai_output)

RUN = "20250101T120000-abcdef"


def _part(folder: Path, n: int, suffix: str = "parquet", run: str = RUN) -> Path:
    return folder / f"rvt-part-{run}-{'0' * 32}-{n:06d}-0.{suffix}"


def _write_part(folder: Path, ids: list, n: int = 0, suffix: str = "parquet", **cols) -> Path:
    df = pd.DataFrame({"id": ids, "generated_text": [f"text {i}" for i in ids], "finish_reason": "stop",
                       "prompt_tokens": 3, "output_tokens": 2, "error": None, **cols})
    f = _part(folder, n, suffix)
    if suffix == "parquet":
        df.to_parquet(f)
    else:
        df.to_json(f, orient="records", lines=True)
    return f


def _hold_in_child(folder: Path, fingerprint: str = "fp") -> subprocess.Popen:
    "A child process that claims `folder` and sleeps; returns once the claim is held."
    code = ("import time\nfrom ray_vllm_tutorial.outputs import claim_output\n"
            f"with claim_output({str(folder)!r}, {fingerprint!r}, 'messages'):\n"
            "    print('held', flush=True)\n    time.sleep(120)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def _kill(child: subprocess.Popen) -> None:
    if child.poll() is None:
        os.kill(child.pid, signal.SIGKILL)  # only the process this test started, by its PID
    child.wait(timeout=30)


# --- which files are results ----------------------------------------------------------------------------------------

def test_empty_or_missing_folder_gives_result_columns(tmp_path):
    for folder in (tmp_path, tmp_path / "missing"):
        df = read_output(folder)
        assert len(df) == 0 and list(df.columns) == RESULT_COLUMNS


def test_foreign_parquet_with_ids_survives_and_is_not_counted(tmp_path):
    _write_part(tmp_path, ["1", "2"])
    mine = tmp_path / "results.parquet"
    pd.DataFrame({"id": ["3", "4"], "generated_text": ["mine", "mine"]}).to_parquet(mine)
    before = mine.read_bytes()
    assert sorted(read_output(tmp_path)["id"]) == ["1", "2"]  # old read_output: 4 rows, ids 3 and 4 skipped on resume
    assert mine.read_bytes() == before


def test_unparseable_foreign_files_are_neither_deleted_nor_renamed(tmp_path):
    _write_part(tmp_path, ["1"])
    for name in ("notes.jsonl", "data.json", "broken.parquet"):
        (tmp_path / name).write_text("not json, not parquet")
    read_output(tmp_path)  # old read_output unlinked all three
    assert sorted(p.name for p in tmp_path.iterdir() if not is_part_file(p)) == ["broken.parquet", "data.json", "notes.jsonl"]
    assert quarantined(tmp_path) == []


def test_openai_output_written_into_the_folder_is_not_read_back(tmp_path):
    ids = [f"req-{i}" for i in range(64)]
    _write_part(tmp_path, ids, input_row=list(range(64)))
    for _ in range(3):  # each re-run rewrites the OpenAI file from what it reads (old: 64 -> 128 rows)
        res = read_output(tmp_path)
        assert len(res) == 64
        write_openai_output(res, tmp_path / "openai_batch_output.jsonl", "tiny-chat")
    lines = (tmp_path / "openai_batch_output.jsonl").read_text().splitlines()
    assert [json.loads(l)["custom_id"] for l in lines] == ids


def test_torn_parts_are_renamed_not_deleted_and_not_counted(tmp_path):
    good = _write_part(tmp_path, ["1", "2"])
    torn_pq = _write_part(tmp_path, ["3"], n=1)
    torn_pq.write_bytes(torn_pq.read_bytes()[:40])  # a Parquet write killed part way
    torn_jl = _part(tmp_path, 2, "jsonl")
    torn_jl.write_text('{"id": "4", "generated_text": "x"}\n{"id": "5", "generat')
    res = read_output(tmp_path)
    assert sorted(res["id"]) == ["1", "2"]
    assert good.exists() and not torn_pq.exists() and not torn_jl.exists()
    assert quarantined(tmp_path) == sorted([torn_pq.with_name(torn_pq.name + ".torn"),
                                            torn_jl.with_name(torn_jl.name + ".torn")])
    assert sorted(read_output(tmp_path)["id"]) == ["1", "2"]  # .torn files are not parts: not read again


def test_torn_part_left_alone_while_another_process_holds_the_folder(tmp_path):
    (tmp_path / "fp.txt").write_text("x")
    child = _hold_in_child(tmp_path)
    try:
        writing = _part(tmp_path, 7)
        writing.write_bytes(b"PAR1")  # looks torn, but the running job may still be writing it
        assert len(read_output(tmp_path)) == 0
        assert writing.exists() and quarantined(tmp_path) == []
    finally:
        _kill(child)
    read_output(tmp_path)  # nobody holds the folder now: the torn part is set aside
    assert not writing.exists() and len(quarantined(tmp_path)) == 1


def test_an_id_in_two_parts_is_kept_once_and_counted(tmp_path):
    _write_part(tmp_path, ["1", "2"], n=0)
    _write_part(tmp_path, ["2", "3"], n=1, suffix="jsonl")
    res = read_output(tmp_path)
    assert list(res["id"]) == ["1", "2", "3"]
    assert res.attrs["duplicate_ids"] == 1


@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_ids_stay_strings_with_their_digits(tmp_path, suffix):
    ids = ["007", "10000000000000001", "1", "1.0", "x"]
    _write_part(tmp_path, ids, suffix=suffix)
    assert list(read_output(tmp_path)["id"]) == ids  # guards the reader: pandas.read_json without dtype=False makes "007" 7


def test_ray_data_writes_parts_with_our_names(tmp_path):
    import ray
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rows = pd.DataFrame({"id": ["007", "10000000000000001", "c"], "generated_text": ["a", "b", "c"]})
        ds = ray.data.from_pandas([rows.iloc[:2], rows.iloc[2:]])
        ds.write_parquet(str(tmp_path / "pq"), filename_provider=part_filename_provider(RUN, "parquet"))
        ds.write_json(str(tmp_path / "jl"), filename_provider=part_filename_provider(RUN, "jsonl"))
    finally:
        ray.shutdown()
    for sub, ext in (("pq", ".parquet"), ("jl", ".jsonl")):
        names = [p.name for p in (tmp_path / sub).iterdir()]
        assert names and all(is_part_file(n) and n.startswith(f"rvt-part-{RUN}-") and n.endswith(ext) for n in names)
        assert sorted(read_output(tmp_path / sub)["id"]) == ["007", "10000000000000001", "c"]


def test_part_filename_provider_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'parquet' or 'jsonl'"):
        part_filename_provider(RUN, "csv")
    with pytest.raises(ValueError, match="without dots or slashes"):
        part_filename_provider("../x", "parquet")


# --- claiming the folder ------------------------------------------------------------------------------------------

def test_claim_creates_folder_and_manifest(tmp_path):
    out = tmp_path / "a" / "b"
    with claim_output(out, "fp1", "messages") as claim:
        assert out.is_dir() and (out / LOCK_NAME).exists()
    m = json.loads((out / MANIFEST_NAME).read_text())
    assert (m["input_fingerprint"], m["input_kind"], m["version"]) == ("fp1", "messages", "0.1.0")
    assert [(r["run_id"], r["status"]) for r in m["runs"]] == [(claim.run_id, "done")]


def test_manifest_records_how_a_run_ended(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with claim_output(tmp_path, "fp", "prompt"):
            1 / 0
    with pytest.raises(KeyboardInterrupt):
        with claim_output(tmp_path, "fp", "prompt"):
            raise KeyboardInterrupt
    runs = json.loads((tmp_path / MANIFEST_NAME).read_text())["runs"]
    assert [r["status"] for r in runs] == ["failed", "interrupted"]


def test_second_claim_in_the_same_process_is_refused(tmp_path):
    with claim_output(tmp_path, "fp", "messages"):
        with pytest.raises(OutputFolderError, match=f"{tmp_path} is in use by another job \\(PID {os.getpid()} "):
            with claim_output(tmp_path, "fp", "messages"):
                pytest.fail("the second claim ran")
    with claim_output(tmp_path, "fp", "messages"):  # released on exit
        pass


def test_claim_is_refused_while_another_process_holds_it_and_freed_by_sigkill(tmp_path):
    child = _hold_in_child(tmp_path)
    try:
        with pytest.raises(OutputFolderError, match=f"in use by another job \\(PID {child.pid} "):
            with claim_output(tmp_path, "fp", "messages"):
                pytest.fail("two jobs ran on one folder")
    finally:
        _kill(child)
    with claim_output(tmp_path, "fp", "messages"):  # the kernel released the dead process's lock
        pass
    runs = json.loads((tmp_path / MANIFEST_NAME).read_text())["runs"]
    assert [r["status"] for r in runs] == ["running", "done"]  # the killed run never finished


def test_output_path_that_is_a_file_is_refused_before_anything(tmp_path):
    f = tmp_path / "out"
    f.write_text("mine")
    with pytest.raises(OutputFolderError, match="is a file, not a folder"):  # old: FileExistsError traceback
        with claim_output(f, "fp", "messages"):
            pytest.fail("the job ran")
    assert f.read_text() == "mine"


def test_unwritable_folder_is_refused_before_anything(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.geteuid() == 0:  # root ignores permission bits; /sys refuses new files even to root
            probe = Path("/sys/rvt-probe")
            try:
                probe.write_bytes(b"")
            except OSError:
                ro = Path("/sys")
            else:
                probe.unlink()
                pytest.skip("no folder here that root cannot write (see the monkeypatched test)")
        with pytest.raises(OutputFolderError, match="is not writable"):
            with claim_output(ro, "fp", "messages"):
                pytest.fail("the job ran")
        assert not (ro / LOCK_NAME).exists() and not (ro / MANIFEST_NAME).exists()
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_failed_probe_write_is_refused_before_the_lock(tmp_path, monkeypatch):
    real = Path.write_bytes

    def refuse(self, data):
        if self.name.startswith(".rvt-probe-"):
            raise OSError(30, "Read-only file system")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", refuse)
    with pytest.raises(OutputFolderError, match=r"is not writable \(Read-only file system\)"):
        with claim_output(tmp_path, "fp", "messages"):
            pytest.fail("the job ran")
    assert not (tmp_path / LOCK_NAME).exists()


def test_folder_that_cannot_be_created_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="cannot create output folder"):
        with claim_output(tmp_path / "file" / "out", "fp", "messages"):
            pytest.fail("the job ran")


def test_resume_with_a_changed_input_is_refused_then_accepted_when_asked(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": "1", "prompt": "a"}\n')
    out = tmp_path / "out"
    with claim_output(out, input_fingerprint(inp), "prompt"):
        pass
    inp.write_text('{"id": "1", "prompt": "b"}\n')
    with pytest.raises(OutputFolderError, match="holds results of a different input") as e:
        with claim_output(out, input_fingerprint(inp), "prompt"):
            pytest.fail("resumed against a changed input")
    assert "new output folder" in str(e.value) and "accept_changed_input=True" in str(e.value)
    with claim_output(out, input_fingerprint(inp), "prompt", accept_changed_input=True):
        pass
    assert json.loads((out / MANIFEST_NAME).read_text())["input_fingerprint"] == input_fingerprint(inp)
    with claim_output(out, input_fingerprint(inp), "prompt"):  # the new input is now the folder's input
        pass


def test_unreadable_manifest_is_refused_not_overwritten(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(OutputFolderError, match="restore it, or use a new output folder"):
        with claim_output(tmp_path, "fp", "messages"):
            pytest.fail("the job ran")
    assert (tmp_path / MANIFEST_NAME).read_text() == "{not json"


def test_input_fingerprint_is_the_streamed_sha256(tmp_path):
    f = tmp_path / "in.bin"
    f.write_bytes(os.urandom(100_000))
    assert input_fingerprint(f) == input_fingerprint(f, chunk=7) == hashlib.sha256(f.read_bytes()).hexdigest()


# --- OpenAI Batch output ------------------------------------------------------------------------------------------

def test_openai_output_survives_missing_numbers_and_error_rows(tmp_path):
    res = pd.DataFrame({"id": ["b", "a", "c"], "input_row": [1, 0, 2], "generated_text": ["x", None, "z"],
                        "finish_reason": ["stop", None, "length"], "prompt_tokens": [3.0, float("nan"), float("nan")],
                        "output_tokens": [2.0, float("nan"), 5.0], "error": [None, "unknown role: 'robot'", None]})
    lines = [json.loads(l) for l in write_openai_output(res, tmp_path / "o.jsonl", "m").read_text().splitlines()]
    assert [l["custom_id"] for l in lines] == ["a", "b", "c"]  # input order
    assert lines[0]["response"] is None
    assert lines[0]["error"] == {"code": "unknown_role", "message": "unknown role: 'robot'"}
    assert lines[1]["response"]["body"]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert lines[2]["response"]["body"]["usage"] == {"prompt_tokens": 0, "completion_tokens": 5, "total_tokens": 5}
    assert not (tmp_path / "o.jsonl.tmp").exists()


def test_error_kind_accepts_any_value():
    assert outputs._error_kind("prompt too long: 9 tokens") == "prompt too long"
    assert outputs._error_kind({"code": "x", "message": "y"})  # old: AttributeError on a dict


def test_openai_output_lines_validate_with_the_official_client(tmp_path):
    # issue 25: no body had `created` (a required field of ChatCompletion), so the official type rejected every line
    from openai.types.chat import ChatCompletion
    lp = {"content": [{"token": " a", "logprob": -0.5, "bytes": [32, 97],
                       "top_logprobs": [{"token": " a", "logprob": -0.5, "bytes": [32, 97]}]}], "refusal": None}
    res = pd.DataFrame({"id": ["one", "two", "bad"], "input_row": [0, 1, 2],
                        "generated_text": ["a", "b", None], "finish_reason": ["stop", "length", None],
                        "generated_texts": [["a"], ["b", "c"], None], "finish_reasons": [["stop"], ["length", "stop"], None],
                        "prompt_tokens": [3, 4, 0], "output_tokens": [1, 2, 0],
                        "logprobs": [json.dumps([lp]), None, None], "started_at": [1_750_000_000.5, float("nan"), None],
                        "error": [None, None, "unsupported field: body.tools (this job cannot honour it)"]})
    lines = [json.loads(l) for l in write_openai_output(res, tmp_path / "o.jsonl", "tiny-chat").read_text().splitlines()]
    bodies = [ChatCompletion.model_validate(l["response"]["body"]) for l in lines[:2]]
    assert bodies[0].created == 1_750_000_000 and bodies[1].created > 1_750_000_000  # no start time: when written
    assert bodies[0].choices[0].logprobs.content[0].token == " a" and bodies[1].choices[0].logprobs is None
    assert [(c.index, c.message.content, c.finish_reason) for c in bodies[1].choices] == [(0, "b", "length"), (1, "c", "stop")]
    assert all(set(l) == {"id", "custom_id", "response", "error"} for l in lines)
    assert lines[2]["response"] is None and lines[2]["error"]["code"] == "unsupported_field"

"""tools/run_cuda_cells.py runs only the `#| cuda` cells, keeps other outputs, and writes nothing on failure."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "run_cuda_cells.py"


def _nb(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nbformat.write(nb, path)


def test_runs_only_cuda_cells(tmp_path):
    cpu = nbformat.v4.new_code_cell("raise RuntimeError('a CPU-only cell must not run')")
    cpu.outputs = [nbformat.v4.new_output("stream", name="stdout", text="saved CPU output\n")]
    _nb(tmp_path / "x.ipynb", [cpu, nbformat.v4.new_code_cell("#| cuda\nimport math\nprint('gpu', 6 * 7)"),
                               nbformat.v4.new_markdown_cell("prose"), nbformat.v4.new_code_cell("#| cuda\nmath.pi > 3")])
    r = subprocess.run([sys.executable, str(TOOL), str(tmp_path / "x.ipynb"), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cells = json.loads((tmp_path / "out" / "x.ipynb").read_text())["cells"]
    assert cells[0]["outputs"][0]["text"] in ("saved CPU output\n", ["saved CPU output\n"])  # untouched
    assert "".join(cells[1]["outputs"][0]["text"]) == "gpu 42\n"
    assert cells[3]["outputs"][0]["data"]["text/plain"] in ("True", ["True"])  # state carried between cuda cells


def test_cpu_mode_runs_the_others_and_keeps_gpu_outputs(tmp_path):
    gpu = nbformat.v4.new_code_cell("#| cuda\nraise RuntimeError('a cuda cell must not run')")
    gpu.outputs = [nbformat.v4.new_output("stream", name="stdout", text="saved GPU output\n")]
    _nb(tmp_path / "z.ipynb", [nbformat.v4.new_code_cell("x = 6"), gpu, nbformat.v4.new_code_cell("print('cpu', x * 7)")])
    r = subprocess.run([sys.executable, str(TOOL), "--cells", "cpu", str(tmp_path / "z.ipynb"), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cells = json.loads((tmp_path / "out" / "z.ipynb").read_text())["cells"]
    assert "".join(cells[1]["outputs"][0]["text"]) == "saved GPU output\n"  # untouched
    assert "".join(cells[2]["outputs"][0]["text"]) == "cpu 42\n"  # state carried from the first cell


def test_failure_writes_nothing(tmp_path):
    _nb(tmp_path / "y.ipynb", [nbformat.v4.new_code_cell("#| cuda\nassert 1 == 2, 'boom'")])
    r = subprocess.run([sys.executable, str(TOOL), str(tmp_path / "y.ipynb"), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "boom" in r.stderr
    assert not (tmp_path / "out" / "y.ipynb").exists()


def test_trim_logs_keeps_the_cells_own_output():
    sys.path.insert(0, str(TOOL.parent))
    from run_cuda_cells import trim_logs
    cell = {"outputs": [
        {"output_type": "stream", "name": "stdout", "text": "INFO 11-25 [core.py:1] engine up\nrows: 64\n"
                                                           "\x1b[36m(MapWorker(MapBatches(P)) pid=1)\x1b[0m \r\n"
                                                           "Capturing CUDA graphs: 51/51 [00:02, 20.1it/s]\nfailed: 0\n"},
        {"output_type": "stream", "name": "stderr", "text": "2026-11-25 WARNING util.py:650 -- deprecated\n"},
        {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {}, "execution_count": 1}]}
    trim_logs(cell)
    assert [o["output_type"] for o in cell["outputs"]] == ["stream", "execute_result"]  # empty stderr dropped
    assert cell["outputs"][0]["text"] == "rows: 64\nfailed: 0\n"

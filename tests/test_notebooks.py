"""Run every lesson notebook as one pytest test, each in its own process, so CI prints "N passed"."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p.name for p in (ROOT / "nbs").glob("[0-9]*.ipynb"))


def _error_lines(text: str, keep: int = 15) -> str:
    "The distinct lines that name an exception (worker processes log their root cause far above the final error)."
    seen = dict.fromkeys(l.strip()[-300:] for l in text.splitlines() if "Error:" in l or "Exception:" in l)
    return "\n".join(list(seen)[-keep:])


@pytest.mark.parametrize("nb", NBS)
def test_notebook(nb):
    nbdev_test = Path(sys.executable).with_name("nbdev-test")
    r = subprocess.run([str(nbdev_test), f"nbs/{nb}", "--n-workers", "0"], cwd=ROOT, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, (f"{nb} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}\n"
                               f"== lines naming an exception:\n{_error_lines(r.stdout + r.stderr)}")


def test_index_notebook_runs():
    nbdev_test = Path(sys.executable).with_name("nbdev-test")
    r = subprocess.run([str(nbdev_test), "nbs/index.ipynb", "--n-workers", "0"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


def test_export_is_current(tmp_path):
    """The exported module equals what the notebooks say (nbdev-export leaves no diff)."""
    import shutil
    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "_docs", "_proc", "__pycache__", "docs-shots"))
    r = subprocess.run([str(Path(sys.executable).with_name("nbdev-export"))], cwd=copy, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for f in sorted((ROOT / "ray_vllm_tutorial").glob("*.py")):
        assert (copy / "ray_vllm_tutorial" / f.name).read_text() == f.read_text(), f"{f.name} is stale: run nbdev-export"

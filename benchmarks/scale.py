"""The job's plumbing at scale: the dry run (`EchoEngine`, no model, answers at once) over growing inputs.

Each size runs the command a user runs, `ray-vllm-batch --dry-run`, in a process of its own on a fresh output folder,
with the echo's per-word time at 0, so what is measured is everything but the model: reading and checking the input,
Ray and Ray Data, the dispatcher, the engines' hand-offs, writing the part files, the summary. Recorded per size: wall
time, rows/s, and the driver's peak memory (the RSS of the command's own process, sampled every 0.1 s; Ray's
processes are not counted). Results: `<out>/scale-<label>.json` and `.md`; `--plot` draws every label found there.

    python benchmarks/scale.py --rows 20000 200000 --label before
    python benchmarks/scale.py --plot                      # rows/s and driver memory by input size, every label
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil


def _peak_rss(pid: int, peak: list, every_s: float = 0.1) -> None:
    "Keep the largest RSS (bytes) of process `pid` in `peak[0]` until it ends."
    try:
        p = psutil.Process(pid)
        while p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
            peak[0] = max(peak[0], p.memory_info().rss)
            time.sleep(every_s)
    except psutil.Error:
        pass


def _input(path: Path, n: int) -> Path:
    "`n` prompt rows with ids, a few words each (what the dry run echoes back)."
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"r{i:07d}", "prompt": f"row {i} of the scale benchmark"}) + "\n")
    return path


def run(n: int, replicas: int, tmp: Path) -> dict:
    "One dry run of `n` rows on `replicas` echo engines: wall time, rows/s, the driver's peak RSS, its exit status."
    inp, out = _input(tmp / f"in-{n}.jsonl", n), tmp / f"out-{n}"
    cmd = [str(Path(sys.executable).with_name("ray-vllm-batch")), str(inp), str(out), "--dry-run", "--replicas",
           str(replicas), "--engine-arg", 'echo={"token_s": 0}', "--no-progress"]
    t0, peak = time.time(), [0]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watcher = threading.Thread(target=_peak_rss, args=(proc.pid, peak), daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    wall = time.time() - t0
    watcher.join(1)
    rows_line = next((l for l in stdout.splitlines() if l.startswith("rows: ")), "")
    return dict(rows=n, replicas=replicas, wall_s=round(wall, 1), rows_per_s=round(n / wall, 1),
                driver_peak_rss_mb=round(peak[0] / 2**20), exit=proc.returncode, summary=rows_line,
                error=stderr[-1000:] if proc.returncode else "")


def _markdown(res: dict) -> str:
    head = (f"# Scale of the dry run: {res['label']}\n\n`{res['command']}` on {res['machine']} "
            f"(commit {res['commit']}, {res['date']})\n\n| rows | wall s | rows/s | driver peak RSS MB | exit |\n|---|---|---|---|---|\n")
    return head + "".join(f"| {r['rows']} | {r['wall_s']} | {r['rows_per_s']} | {r['driver_peak_rss_mb']} | {r['exit']} |\n"
                          for r in res["runs"])


def plot(folder: Path, png: Path) -> Path:
    "Rows/s and the driver's peak RSS by input size, one line per label found in `folder`."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for f in sorted(folder.glob("scale-*.json")):
        res = json.loads(f.read_text())
        runs = [r for r in res["runs"] if r["exit"] == 0]
        a.plot([r["rows"] for r in runs], [r["rows_per_s"] for r in runs], "o-", label=res["label"])
        b.plot([r["rows"] for r in runs], [r["driver_peak_rss_mb"] for r in runs], "o-", label=res["label"])
    for ax, title in ((a, "rows/s (dry run, no model)"), (b, "driver peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_ylim(0, None)
        ax.set_xlabel("input rows")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    return png


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000], help="input sizes, one run each")
    a.add_argument("--replicas", type=int, default=2, help="echo engines")
    a.add_argument("--out", default="benchmarks/results/cpu-scale", help="results folder")
    a.add_argument("--label", default="", help="a name for this code version, stored with the results")
    a.add_argument("--plot", action="store_true", help="only draw the results already in --out")
    args = a.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.plot:
        print(plot(out, out / "scale.png"))
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    res = dict(label=args.label or commit, commit=commit, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               machine=f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB",
               command=" ".join(["python benchmarks/scale.py", *sys.argv[1:]]), runs=[])
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        for n in args.rows:
            r = run(n, args.replicas, Path(tmp))
            print(r, flush=True)
            res["runs"].append(r)
    name = f"scale-{res['label']}"
    (out / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / f"{name}.md").write_text(_markdown(res))
    print(_markdown(res))


if __name__ == "__main__":
    main()

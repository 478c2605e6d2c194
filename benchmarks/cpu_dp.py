"""Data parallelism on CPU, measured: `run_batch` with DP=1 and DP=2 on the same input, interleaved, in one run.

Each run answers `--n` rows of the embedded tiny model with exactly `--max-tokens` tokens each (`ignore_eos`), and
records generation tokens/s (output tokens / the time from the first engine ready to the last row done), engine start,
the cores each engine's most tightly bound process may run on, and how many of the machine's cores were busy during
generation (from the system's CPU times, sampled every 0.2 s): DP=2 can only gain what DP=1 leaves idle. Results:
`<out>/cpu_dp.json` and `cpu_dp.md`.

    python benchmarks/cpu_dp.py                       # 1024 rows x 64 tokens, DP=1 and DP=2, 2 repeats
    python benchmarks/cpu_dp.py --n 256 --repeats 1   # quicker
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil


def _busy_cores(samples: list, start: float, end: float) -> float:
    "Mean busy cores between `start` and `end` from `(time, busy CPU seconds)` samples of the whole machine."
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return float("nan")
    (t0, b0), (t1, b1) = inside[0], inside[-1]
    return (b1 - b0) / (t1 - t0)


def _sample(samples: list, stop: threading.Event, every_s: float = 0.2) -> None:
    "Append `(time, busy CPU seconds of the machine)` every `every_s` until `stop` is set."
    while not stop.is_set():
        c = psutil.cpu_times()
        samples.append((time.time(), c.user + c.nice + c.system + getattr(c, "irq", 0.0) + getattr(c, "softirq", 0.0)))
        stop.wait(every_s)


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--n", type=int, default=1024, help="rows")
    a.add_argument("--max-tokens", type=int, default=64, help="output tokens per row")
    a.add_argument("--repeats", type=int, default=2, help="runs of each layout, interleaved (1, 2, 1, 2, ...)")
    a.add_argument("--out", default="benchmarks/results/cpu-dp", help="results folder")
    a.add_argument("--label", default="", help="a name for this code version, stored with the results")
    args = a.parse_args()
    from ray_vllm_tutorial.models import tiny_corpus
    from ray_vllm_tutorial.pipeline import run_batch
    tmp = Path(tempfile.mkdtemp(prefix="cpu-dp-"))
    corpus = tiny_corpus()
    inp = tmp / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "messages": [{"role": "user", "content": corpus[i % len(corpus)]}]}) + "\n"
                           for i in range(args.n)))
    runs = []
    for rep in range(args.repeats):
        for dp in (1, 2):
            t, samples, stop = time.time(), [], threading.Event()
            sampler = threading.Thread(target=_sample, args=(samples, stop), daemon=True)
            sampler.start()
            s = run_batch(inp, tmp / f"dp{dp}-{rep}", replicas=dp, tensor_parallel_size=1, device="cpu", progress=False,
                          sampling=dict(max_tokens=args.max_tokens, ignore_eos=True))
            stop.set()
            sampler.join()
            assert s.rows == args.n and s.failed == 0, s
            first_ready = min(e["ready_at"] for e in s.engines.values())
            runs.append(dict(dp=dp, repeat=rep, generation_tokens_per_s=s.generation_tokens_per_s,
                             generation_s=s.generation_s, engine_start_s=s.engine_start_s, wall_s=time.time() - t,
                             output_tokens=s.output_tokens, cores={k: v["cores"] for k, v in s.engines.items()},
                             busy_cores=_busy_cores(samples, first_ready, first_ready + s.generation_s),
                             machine_cores=psutil.cpu_count()))
            print(json.dumps(runs[-1]), flush=True)
    med = {dp: statistics.median(r["generation_tokens_per_s"] for r in runs if r["dp"] == dp) for dp in (1, 2)}
    result = dict(label=args.label, n=args.n, max_tokens=args.max_tokens, runs=runs, median_tokens_per_s=med,
                  dp2_over_dp1=med[2] / med[1])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"cpu_dp{'-' + args.label if args.label else ''}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    rows = "\n".join(f"| {r['dp']} | {r['repeat']} | {r['generation_tokens_per_s']:.0f} | {r['engine_start_s']:.1f} | "
                     f"{r['cores']} | {r['busy_cores']:.2f} of {r['machine_cores']} |" for r in runs)
    (out / f"{name}.md").write_text(
        f"{args.n} rows x {args.max_tokens} tokens, embedded tiny model, CPU ({args.label or 'this code'})\n\n"
        "| DP | repeat | generation tokens/s | engine start s | cores per engine | cores busy in generation |\n"
        "|---|---|---|---|---|---|\n"
        f"{rows}\n\nmedian DP=1 {med[1]:.0f}, DP=2 {med[2]:.0f} tokens/s: DP=2 / DP=1 = {med[2] / med[1]:.2f}x\n")
    print(f"DP=2 / DP=1 = {med[2] / med[1]:.2f}x (median generation tokens/s {med[2]:.0f} / {med[1]:.0f})")


if __name__ == "__main__":
    main()

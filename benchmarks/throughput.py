"""Throughput benchmark: one LLM.chat (the ceiling) vs the seed recipe vs `run_batch`, same prompts, one run.

Each variant runs in its own process (so one engine's memory never overlaps another's) and reports output tokens
per second of generation only; engine start is reported separately. Results: a Markdown table and a PNG bar chart.

    python benchmarks/throughput.py                          # CPU, embedded tiny model
    python benchmarks/throughput.py --qwen-1.5b-dummy        # GPU, Qwen2.5-1.5B shapes with random weights
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

def prompts(n: int) -> list[list[dict]]:
    from ray_vllm_tutorial.models import tiny_corpus
    c = tiny_corpus()
    return [[{"role": "user", "content": f"{c[i % len(c)]} {c[(i * 7) % len(c)]}"}] for i in range(n)]


def warm_up(llm) -> None:
    "One tiny request, as run_batch's actors do, so lazy kernel compilation is not timed as generation."
    from vllm import SamplingParams
    llm.chat([[{"role": "user", "content": "warm up"}]], SamplingParams(max_tokens=4), use_tqdm=False)


def run_variant(a) -> dict:
    "Run one variant in this process and return its measurements."
    from vllm import SamplingParams
    sampling = dict(max_tokens=a.max_tokens, ignore_eos=True, temperature=0.0)
    engine = dict(load_format=a.load_format) if a.load_format else {}
    if a.max_model_len:
        engine["max_model_len"] = a.max_model_len
    convs = prompts(a.n)
    if a.variant in ("chat", "chat256"):
        from ray_vllm_tutorial.chat import make_llm
        t0 = time.time()
        llm = make_llm(a.model, device=a.device, **engine, **({"max_num_seqs": 256} if a.variant == "chat256" else {}))
        warm_up(llm)
        t1 = time.time()
        outs = llm.chat(convs, SamplingParams(**sampling), use_tqdm=False)
        t2 = time.time()
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        return dict(engine_start_s=t1 - t0, generation_s=t2 - t1, output_tokens=tokens, rows=len(outs))
    if a.variant == "seed":
        import pandas as pd
        import ray
        from ray_vllm_tutorial.cluster import init_ray

        class SeedPredictor:  # the recipe: engine in __init__, sync LLM.chat per batch of 4
            def __init__(self):
                from ray_vllm_tutorial.chat import make_llm
                self.llm = make_llm(a.model, device=a.device, **engine)
                warm_up(self.llm)
                self.ready = time.time()
            def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
                outs = self.llm.chat([json.loads(m) for m in batch["messages"]], SamplingParams(**sampling), use_tqdm=False)
                return pd.DataFrame({"output_tokens": [len(o.outputs[0].token_ids) for o in outs],
                                     "ready": [self.ready] * len(outs), "done": [time.time()] * len(outs)})

        init_ray(num_cpus=4 if a.device == "cpu" else None)
        t0 = time.time()
        df = ray.data.from_pandas(pd.DataFrame({"messages": [json.dumps(c) for c in convs]})).map_batches(
            SeedPredictor, batch_size=4, batch_format="pandas", concurrency=1, num_cpus=1,
            num_gpus=1 if a.device == "gpu" else 0).to_pandas()
        ray.shutdown()
        return dict(engine_start_s=df["ready"].min() - t0, generation_s=df["done"].max() - df["ready"].min(),
                    output_tokens=int(df["output_tokens"].sum()), rows=len(df))
    if a.variant in ("run_batch", "run_batch_1024"):
        if a.variant == "run_batch_1024":  # a candidate GPU setting: fewer, larger batches into a 256-sequence engine
            a.batch_size, engine["max_num_seqs"] = 1024, 256
        import tempfile
        from ray_vllm_tutorial.pipeline import run_batch
        tmp = Path(tempfile.mkdtemp())
        with open(tmp / "in.jsonl", "w") as f:
            for i, c in enumerate(convs):
                f.write(json.dumps({"id": i, "messages": c}) + "\n")
        s = run_batch(tmp / "in.jsonl", tmp / "out", model=a.model, device=a.device, sampling=sampling,
                      engine_kwargs=engine, progress=False, **({"batch_size": a.batch_size} if a.batch_size else {}))
        return dict(engine_start_s=s.engine_start_s, generation_s=s.generation_s, output_tokens=s.output_tokens,
                    rows=s.rows, failed=s.failed)
    raise ValueError(a.variant)


LABELS = {"chat": "(a) one LLM.chat", "chat256": "(a') one LLM.chat, max_num_seqs=256", "seed": "(b) seed recipe, batch_size=4", "run_batch": "(c) run_batch defaults",
          "run_batch_1024": "(c') run_batch, batch_size=1024, max_num_seqs=256"}


def report(results: dict, out: Path, title: str) -> None:
    "Write results.md/json and a PNG bar chart of output tokens/s with the ratio to (a)."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    base = (results.get("chat") or next(iter(results.values())))["tokens_per_s"]
    lines = [f"# {title.replace(chr(10), ', ')}", "", "| variant | rows | output tokens | engine start (s) | generation (s) | output tokens/s | vs (a) |",
             "|---|---|---|---|---|---|---|"]
    for k, r in results.items():
        lines.append(f"| {LABELS[k]} | {r['rows']} | {r['output_tokens']} | {r['engine_start_s']:.1f} | {r['generation_s']:.2f} | "
                     f"{r['tokens_per_s']:.0f} | {r['tokens_per_s'] / base:.2f}x |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.md").write_text("\n".join(lines) + "\n")
    (out / "throughput.json").write_text(json.dumps(results, indent=1))
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.55 * len(results)))
    names = [LABELS[k] for k in results]
    vals = [r["tokens_per_s"] for r in results.values()]
    colors = {"chat": "C0", "chat256": "C9", "seed": "C3", "run_batch": "C2", "run_batch_1024": "C8"}
    bars = ax.barh(names, vals, color=[colors[k] for k in results])
    for b, v in zip(bars, vals):
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {v:.0f} ({v / base:.2f}x)", va="center", fontsize=9)
    ax.invert_yaxis(); ax.set_xlabel("output tokens/s (generation only)"); ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(vals) * 1.3)
    fig.tight_layout(); fig.savefig(out / "throughput.png", dpi=110)
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model name or path (default: the embedded tiny model)")
    p.add_argument("--qwen-1.5b-dummy", dest="qwen_dummy", action="store_true", help="Qwen2.5-1.5B shapes, random weights (GPU)")
    p.add_argument("--n", type=int, default=1000, help="prompts")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--load-format", default=None)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="run_batch batch size (default: its own)")
    p.add_argument("--variants", default="chat,seed,run_batch", help="any of chat,chat256,seed,run_batch (chat256: "
                   "(a) with max_num_seqs=256)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--tag", default="")
    p.add_argument("--resume", action="store_true", help="keep variants already measured by an interrupted run of "
                   "this command on this machine (/tmp/bench-*.json)")
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.variant:  # child process: one variant
        r = run_variant(a)
        r["tokens_per_s"] = r["output_tokens"] / r["generation_s"]
        Path(a.result).write_text(json.dumps(r))
        return
    if a.device == "auto":
        from ray_vllm_tutorial.chat import detect_device
        a.device = detect_device()
    args = sys.argv[1:]
    if a.qwen_dummy:
        from ray_vllm_tutorial.planner import dummy_model
        model = str(dummy_model("Qwen2.5-1.5B", "/tmp/qwen2.5-1.5b-dummy"))
        args += ["--model", model, "--load-format", "dummy", "--max-model-len", str(a.max_model_len or 4096)]
    results = {}
    for v in a.variants.split(","):
        res = Path(f"/tmp/bench-{v}.json")
        if a.resume and res.exists():
            results[v] = json.loads(res.read_text())
            print(f"== {LABELS[v]}: kept from the interrupted run: {results[v]}", flush=True)
            continue
        res.unlink(missing_ok=True)
        print(f"== {LABELS[v]}", flush=True)
        subprocess.run([sys.executable, __file__, *args, "--device", a.device, "--variant", v, "--result", str(res)],
                       check=True)
        results[v] = json.loads(res.read_text())
        print(f"   {results[v]}", flush=True)
    what = "Qwen2.5-1.5B shapes (dummy weights)" if a.qwen_dummy else (a.model or "embedded tiny model")
    report(results, Path(a.out) / (a.tag or a.device),
           f"{a.n} prompts x {a.max_tokens} tokens\n{what}, {a.device}{' ' + a.tag if a.tag else ''}")


if __name__ == "__main__":
    main()

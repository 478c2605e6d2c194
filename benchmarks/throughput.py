"""Throughput benchmark: one LLM.chat (the ceiling) vs the classic recipe vs `run_batch` vs Ray Data LLM, same prompts.

Each variant runs in its own process (so one engine's memory never overlaps another's) and reports output tokens
per second of generation only; engine start is reported separately. Results: `<out>/<tag>/throughput.json` (keyed by
variant), a Markdown table and a PNG bar chart, each variant also as a ratio to the better of (a) and (a').

Workloads (`--workload`): `uniform` asks every prompt for exactly `--max-tokens` tokens; `mixed` draws each row's
`max_tokens` from a fixed-seed lognormal (median 120, sigma 1.0, clipped to [16, 1024]: median 117, p90 438, max 1024
for the 1000 default prompts). Both use `ignore_eos=True` and temperature 0, so every row makes exactly its max_tokens.

    python benchmarks/throughput.py                          # CPU, embedded tiny model
    python benchmarks/throughput.py --n 32 --max-tokens-cap 64 --workload mixed --variants chat,run_batch,ray_data_llm
    python benchmarks/throughput.py --qwen-1.5b-dummy --workload mixed --variants chat,chat256,run_batch,ray_data_llm --tag h100-mixed
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

MIXED = dict(median=120, sigma=1.0, low=16, high=1024)  # lognormal of the measured workload: median 119, p90 438


def prompts(n: int) -> list[list[dict]]:
    from ray_vllm_tutorial.models import tiny_corpus
    c = tiny_corpus()
    return [[{"role": "user", "content": f"{c[i % len(c)]} {c[(i * 7) % len(c)]}"}] for i in range(n)]


def row_max_tokens(a) -> list[int]:
    "Each prompt's max_tokens: `--max-tokens` (uniform) or the fixed-seed long tail (mixed), then `--max-tokens-cap`."
    if a.workload == "uniform":
        mts = [a.max_tokens] * a.n
    else:
        import numpy as np
        x = np.random.default_rng(a.seed).lognormal(math.log(MIXED["median"]), MIXED["sigma"], a.n)
        mts = np.clip(np.rint(x), MIXED["low"], MIXED["high"]).astype(int).tolist()
    return [min(m, a.max_tokens_cap) for m in mts] if a.max_tokens_cap else mts


def describe(mts: list[int]) -> dict:
    import numpy as np
    return dict(median=float(np.median(mts)), p90=float(np.percentile(mts, 90)), max=int(max(mts)),
                min=int(min(mts)), total=int(sum(mts)))


def warm_up(llm) -> None:
    "The warm-up request run_batch's engines answer (`engines.WARM_UP`), so lazy kernel compilation is not timed as generation."
    from vllm import SamplingParams
    from ray_vllm_tutorial.engines import WARM_UP, WARM_UP_MAX_TOKENS
    llm.chat([WARM_UP], SamplingParams(max_tokens=WARM_UP_MAX_TOKENS), use_tqdm=False)


def llm_batch_defaults(a, kw: dict) -> dict:
    """The `max_num_seqs` / `max_num_batched_tokens` that `vllm.LLM` picks on this device (vLLM's LLM_CLASS defaults).

    vLLM's async engine (what Ray Data LLM runs) falls back to the much smaller generic scheduler defaults instead
    (128 / 2048 in vLLM 0.2x), so passing these is what makes its engine the same as `LLM`'s."""
    try:
        from vllm.engine.arg_utils import EngineArgs
        from vllm.usage.usage_lib import UsageContext
        tokens, seqs = EngineArgs.get_batch_defaults(kw.get("tensor_parallel_size", 1))
        out = dict(max_num_seqs=seqs[UsageContext.LLM_CLASS], max_num_batched_tokens=tokens[UsageContext.LLM_CLASS])
    except Exception as e:  # another vLLM: say so, and leave the engine's own defaults
        print(f"   could not read vLLM's LLM defaults ({type(e).__name__}: {e}); the engine picks its own", flush=True)
        return {}
    if kw.get("enable_chunked_prefill") is False:  # as LLM does: one unsplit prompt must fit in a step
        out["max_num_batched_tokens"] = max(out["max_num_batched_tokens"], kw.get("max_model_len") or 0)
    return out


def run_ray_data_llm(a, engine: dict, convs: list, mts: list[int]) -> dict:
    """Ray Data LLM: `build_processor(vLLMEngineProcessorConfig(...))` with the engine settings of `make_llm`, one replica.

    `ray_data_llm`: also vLLM LLM's scheduler sizes (see `llm_batch_defaults`) and enough batches in flight to fill
    them (`max_concurrent_batches = ceil(max_num_seqs / batch_size)`, as Ray's own warning advises).
    `ray_data_llm_defaults`: Ray Data LLM's own defaults (batch_size 32, 8 concurrent batches) on the same engine."""
    import ray
    from ray_vllm_tutorial.chat import engine_kwargs
    from ray_vllm_tutorial.cluster import init_ray
    t_ray = time.time()
    init_ray(num_cpus=8 if a.device == "cpu" else None)  # logical CPUs: engine + chat template/tokenize/detokenize actors
    t0 = time.time()
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig
    kw = engine_kwargs(a.model, device=a.device, **engine)  # what make_llm passes to vllm.LLM, checked the same way
    model = kw.pop("model")
    cfg = dict(model_source=model, concurrency=1, batch_size=a.rdl_batch_size or 32)
    if a.variant == "ray_data_llm":
        for k, v in llm_batch_defaults(a, kw).items():
            kw.setdefault(k, v)
        cfg["max_concurrent_batches"] = a.rdl_concurrent_batches or max(8, math.ceil(kw.get("max_num_seqs", 256) / cfg["batch_size"]))
    elif a.rdl_concurrent_batches:
        cfg["max_concurrent_batches"] = a.rdl_concurrent_batches
    if a.device == "cpu":  # no GPU in the engine's bundle; vLLM's CPU backend runs its worker through mp
        cfg["placement_group_config"] = {"bundles": [{"CPU": 1}]}
    config = vLLMEngineProcessorConfig(engine_kwargs=kw, **cfg)
    sampling = dict(ignore_eos=True, temperature=0.0)

    def pre(row: dict) -> dict:
        return dict(i=row["i"], messages=row["messages"], sampling_params=dict(sampling, max_tokens=int(row["max_tokens"])))

    def post(row: dict) -> dict:
        m = row.get("metrics") or {}
        m = m if isinstance(m, dict) else {}
        return dict(i=row["i"], num_generated_tokens=int(row["num_generated_tokens"]), done=time.time(),
                    time_taken_llm=row.get("time_taken_llm"), arrival=m.get("arrival_time"),  # wall clock
                    scheduled=m.get("scheduled_ts"), last_token=m.get("last_token_ts"))  # engine core, monotonic

    processor = build_processor(config, preprocess=pre, postprocess=post)
    t_built = time.time()
    ds = ray.data.from_items([dict(i=i, messages=c, max_tokens=m) for i, (c, m) in enumerate(zip(convs, mts))])
    df = processor(ds).to_pandas()
    t_end = time.time()
    ray.shutdown()
    arrival = df["arrival"].dropna() if "arrival" in df else []
    if len(arrival):  # vLLM's wall-clock arrival of the first request: the engine was up and fed
        gen_start, start_from = float(arrival.min()), "first request's arrival in the engine (vLLM metrics)"
    else:  # no request metrics: the first answer's finish minus its time in the engine
        gen_start, start_from = float((df["done"] - df["time_taken_llm"]).min()), "first answer's done - time_taken_llm"
    extra = {}
    if "last_token" in df and df["last_token"].notna().any() and df["scheduled"].notna().any():  # the engine alone
        extra["engine_busy_s"] = float(df["last_token"].max() - df["scheduled"][df["scheduled"] > 0].min())
    settings = {k: v for k, v in config.model_dump().items() if k in ("batch_size", "max_concurrent_batches",
                "max_pending_requests", "max_tasks_in_flight_per_actor", "concurrency", "placement_group_config")}
    settings["engine_kwargs"] = {k: v for k, v in kw.items() if k != "task_type"}
    return dict(engine_start_s=gen_start - t0, generation_s=float(df["done"].max()) - gen_start,
                output_tokens=int(df["num_generated_tokens"].sum()), rows=len(df), ray_init_s=t0 - t_ray,
                build_processor_s=t_built - t0, wall_s=t_end - t0, generation_start=start_from, **extra, settings=settings)


def timed_engine_cls(env: dict | None = None):
    """`run_batch`'s engine actor with its start-up stamped (wall clock), written to /tmp/rvt-start-<replica>.json:
    actor process up, vLLM imported, async engine built (includes the engine-core process start), warm-up answered.
    `env`: environment variables set in the actor before vLLM is imported (its engine-core process inherits them)."""
    from ray_vllm_tutorial.engines import EngineActor

    class TimedEngine(EngineActor):
        def __init__(self, *args, **kw):
            self.stamps = dict(actor_init=time.time())
            os.environ.update(env or {})
            super().__init__(*args, **kw)

        async def start(self) -> dict:
            from vllm.v1.engine.async_llm import AsyncLLM  # what EngineActor.start imports first
            self.stamps["vllm_imported"] = time.time()
            build, stamps = AsyncLLM.from_engine_args.__func__, self.stamps

            def timed_build(cls, *args, **kw):
                engine = build(cls, *args, **kw)
                stamps["engine_built"] = time.time()
                return engine
            AsyncLLM.from_engine_args = classmethod(timed_build)
            r = await super().start()
            self.stamps["warm"] = time.time()
            Path(f"/tmp/rvt-start-{self.replica}.json").write_text(json.dumps(self.stamps))
            return r
    return TimedEngine


RUN_BATCH = {"run_batch": (1, 1), "run_batch_1024": (1, 1), "run_batch512": (1, 1), "dp1tp1": (1, 1),
             "dp2tp1": (2, 1), "dp1tp2": (1, 2), "dp1tp2v1": (1, 2)}
# dp1tp2v1: vLLM's classic Ray executor instead of its V2 (the default in vLLM 0.26), a candidate fix for TP=2 on GPUs
ENGINE_ENV = {"dp1tp2v1": {"VLLM_USE_RAY_V2_EXECUTOR_BACKEND": "0"}}


def run_variant(a) -> dict:
    "Run one variant in this process and return its measurements."
    t_import = time.time()
    from vllm import SamplingParams
    import_s = time.time() - t_import
    a.variant = a.variant.split("#")[0]  # "chat#2": the same variant again, measured apart
    mts = row_max_tokens(a)
    sampling = dict(ignore_eos=True, temperature=0.0)
    engine = dict(load_format=a.load_format) if a.load_format else {}
    if a.max_model_len:
        engine["max_model_len"] = a.max_model_len
    convs = prompts(a.n)
    if a.variant in ("chat", "chat256", "chat512"):
        from ray_vllm_tutorial.chat import make_llm
        t0 = time.time()
        seqs = dict(chat256=256, chat512=512).get(a.variant)
        llm = make_llm(a.model, device=a.device, **engine, **({"max_num_seqs": seqs} if seqs else {}))
        t_built = time.time()
        warm_up(llm)
        sched = llm.llm_engine.vllm_config.scheduler_config
        t1 = time.time()
        outs = llm.chat(convs, [SamplingParams(max_tokens=m, **sampling) for m in mts], use_tqdm=False)
        t2 = time.time()
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        return dict(engine_start_s=t1 - t0, generation_s=t2 - t1, output_tokens=tokens, rows=len(outs),
                    start_breakdown=dict(vllm_import_before_start_s=import_s, build_s=t_built - t0, warm_up_s=t1 - t_built),
                    settings=dict(max_num_seqs=sched.max_num_seqs, max_num_batched_tokens=sched.max_num_batched_tokens))
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
                params = [SamplingParams(max_tokens=int(m), **sampling) for m in batch["max_tokens"]]
                outs = self.llm.chat([json.loads(m) for m in batch["messages"]], params, use_tqdm=False)
                return pd.DataFrame({"output_tokens": [len(o.outputs[0].token_ids) for o in outs],
                                     "ready": [self.ready] * len(outs), "done": [time.time()] * len(outs)})

        init_ray(num_cpus=4 if a.device == "cpu" else None)
        t0 = time.time()
        df = ray.data.from_pandas(pd.DataFrame({"messages": [json.dumps(c) for c in convs], "max_tokens": mts})).map_batches(
            SeedPredictor, batch_size=4, batch_format="pandas", concurrency=1, num_cpus=1,
            num_gpus=1 if a.device == "gpu" else 0).to_pandas()
        ray.shutdown()
        return dict(engine_start_s=df["ready"].min() - t0, generation_s=df["done"].max() - df["ready"].min(),
                    output_tokens=int(df["output_tokens"].sum()), rows=len(df))
    if a.variant in RUN_BATCH:
        layout = RUN_BATCH[a.variant]  # run_batch: one engine on one device
        if a.variant == "run_batch_1024":  # a candidate GPU setting: fewer, larger batches into a 256-sequence engine
            a.batch_size, engine["max_num_seqs"] = 1024, 256
        if a.variant == "run_batch512":  # every step inside vLLM's captured CUDA graphs (it captures up to 512)
            engine["max_num_seqs"] = 512
        import tempfile
        from ray_vllm_tutorial.pipeline import run_batch
        for old in Path("/tmp").glob("rvt-start-*.json"):
            old.unlink()
        tmp = Path(tempfile.mkdtemp())
        with open(tmp / "in.jsonl", "w") as f:
            for i, (c, m) in enumerate(zip(convs, mts)):
                if a.workload == "uniform":  # today's input: messages rows, one max_tokens for all in `sampling`
                    f.write(json.dumps({"id": i, "messages": c}) + "\n")
                else:  # per-row max_tokens: OpenAI Batch rows, whose body.max_tokens run_batch honours
                    f.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                        "body": {"messages": c, "max_tokens": m}}) + "\n")
        s = run_batch(tmp / "in.jsonl", tmp / "out", model=a.model, device=a.device,
                      sampling=dict(sampling, max_tokens=mts[0] if a.workload == "uniform" else max(mts)),
                      replicas=layout[0], tensor_parallel_size=layout[1],
                      engine_kwargs=engine, progress=False, verbose=a.verbose,
                      engine_cls=timed_engine_cls(ENGINE_ENV.get(a.variant)),
                      **({"batch_size": a.batch_size} if a.batch_size else {}))
        stamps = {p.stem: json.loads(p.read_text()) for p in Path("/tmp").glob("rvt-start-*.json")}
        breakdown = {}
        if stamps:  # the slowest engine's start, part by part; t0 = run_batch asked for the engines
            st = max(stamps.values(), key=lambda d: d["warm"])
            t0 = st["warm"] - s.engine_start_s
            breakdown = dict(actor_up_s=st["actor_init"] - t0, vllm_import_s=st["vllm_imported"] - st["actor_init"],
                             build_s=st["engine_built"] - st["vllm_imported"], warm_up_s=st["warm"] - st["engine_built"])
        return dict(engine_start_s=s.engine_start_s, generation_s=s.generation_s, output_tokens=s.output_tokens,
                    rows=s.rows, failed=s.failed, replicas={str(k): v for k, v in s.replicas.items()},
                    start_breakdown=breakdown, wall_s=s.wall_s)
    if a.variant in ("ray_data_llm", "ray_data_llm_defaults"):
        return run_ray_data_llm(a, engine, convs, mts)
    raise ValueError(a.variant)


LABELS = {"chat": "(a) one LLM.chat", "chat256": "(a') one LLM.chat, max_num_seqs=256",
          "chat512": "(a'') one LLM.chat, max_num_seqs=512", "seed": "(b) classic recipe, batch_size=4",
          "run_batch": "(c) run_batch defaults", "run_batch_1024": "(c') run_batch, batch_size=1024, max_num_seqs=256",
          "run_batch512": "(c'') run_batch, max_num_seqs=512", "dp1tp1": "(c) run_batch DP=1 x TP=1 (1 GPU)",
          "dp1tp2v1": "(f'') run_batch DP=1 x TP=2, vLLM's classic Ray executor (2 GPUs)",
          "ray_data_llm": "(d) Ray Data LLM, LLM's scheduler sizes", "ray_data_llm_defaults": "(d') Ray Data LLM defaults",
          "dp2tp1": "(e) run_batch DP=2 x TP=1 (2 GPUs)", "dp1tp2": "(f) run_batch DP=1 x TP=2 (2 GPUs)"}
COLORS = {"chat": "C0", "chat256": "C9", "chat512": "C7", "seed": "C3", "run_batch": "C2", "run_batch_1024": "C8",
          "run_batch512": "C8", "dp1tp1": "C2", "dp1tp2v1": "C5",
          "ray_data_llm": "C4", "ray_data_llm_defaults": "C6", "dp2tp1": "C1", "dp1tp2": "C5"}


def label(k: str) -> str:
    "A variant's label; `chat#2` is the second run of `chat`."
    base, _, n = k.partition("#")
    return LABELS[base] + (f", run {n}" if n else "")


def report(results: dict, out: Path, title: str, failed: dict | None = None) -> None:
    "Write throughput.md/json and a PNG bar chart of output tokens/s, each with its ratio to the better of (a) and (a')."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    refs = [k for k in results if k.split("#")[0] in ("chat", "chat256")]
    ref = max(refs, key=lambda k: results[k]["tokens_per_s"]) if refs else next(iter(results))
    base = results[ref]["tokens_per_s"]
    vs = "vs best of (a), (a')" if refs else f"vs {label(ref).split()[0]}"
    lines = [f"# {title.replace(chr(10), ', ')}", "",
             f"| variant | rows | output tokens | engine start (s) | generation (s) | output tokens/s | {vs} |",
             "|---|---|---|---|---|---|---|"]
    for k, r in results.items():
        lines.append(f"| {label(k)} | {r['rows']} | {r['output_tokens']} | {r['engine_start_s']:.1f} | {r['generation_s']:.2f} | "
                     f"{r['tokens_per_s']:.0f} | {r['tokens_per_s'] / base:.2f}x |")
    lines += ["", f"Ratio base: {label(ref)} ({base:.0f} output tokens/s)."]
    for k, e in (failed or {}).items():
        lines.append(f"{label(k)}: did not run: {e}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.md").write_text("\n".join(lines) + "\n")
    (out / "throughput.json").write_text(json.dumps(results, indent=1))
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.55 * len(results)))
    names = [label(k) for k in results]
    vals = [r["tokens_per_s"] for r in results.values()]
    bars = ax.barh(names, vals, color=[COLORS[k.split("#")[0]] for k in results])
    for b, v in zip(bars, vals):
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {v:.0f} ({v / base:.2f}x)", va="center", fontsize=9)
    ax.invert_yaxis(); ax.set_xlabel(f"output tokens/s (generation only); ratio to {label(ref).split()[0]}"); ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(vals) * 1.3)
    fig.tight_layout(); fig.savefig(out / "throughput.png", dpi=110)
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model name or path (default: the embedded tiny model)")
    p.add_argument("--qwen-1.5b-dummy", dest="qwen_dummy", action="store_true", help="Qwen2.5-1.5B shapes, random weights (GPU)")
    p.add_argument("--workload", choices=("uniform", "mixed"), default="uniform",
                   help="uniform: every row --max-tokens; mixed: per-row max_tokens from a fixed-seed long tail in [16, 1024]")
    p.add_argument("--n", type=int, default=1000, help="prompts")
    p.add_argument("--max-tokens", type=int, default=256, help="uniform workload: tokens per row")
    p.add_argument("--max-tokens-cap", type=int, default=None, help="cap every row's max_tokens (small CPU checks)")
    p.add_argument("--seed", type=int, default=2, help="mixed workload: the lengths' random seed")
    p.add_argument("--device", default="auto")
    p.add_argument("--load-format", default=None)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="run_batch batch size (default: its own)")
    p.add_argument("--rdl-batch-size", type=int, default=None, help="Ray Data LLM batch_size (default 32, its own)")
    p.add_argument("--rdl-concurrent-batches", type=int, default=None, help="Ray Data LLM max_concurrent_batches "
                   "(ray_data_llm default: enough 32-row batches to fill max_num_seqs; ray_data_llm_defaults: Ray's 8)")
    p.add_argument("--variants", default="chat,seed,run_batch", help="comma list of " + ",".join(LABELS) +
                   " (chat256: (a) with max_num_seqs=256; ray_data_llm needs ray[serve]'s extras)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--tag", default="", help="results folder name (default: the device; a mixed run's tag always "
                   "contains 'mixed')")
    p.add_argument("--resume", action="store_true", help="keep variants already measured by an interrupted run of "
                   "this command on this machine (/tmp/bench-<tag>-*.json)")
    p.add_argument("--verbose", action="store_true", help="run_batch variants: show Ray's and vLLM's logs")
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.variant:  # child process: one variant
        try:
            r = run_variant(a)
        except BaseException as e:
            Path(a.result).write_text(json.dumps({"error": f"{type(e).__name__}: {e}"[:2000],
                                                  "traceback": traceback.format_exc()[-4000:]}))
            raise
        r["tokens_per_s"] = r["output_tokens"] / r["generation_s"]
        r["workload"] = a.workload
        r["expected_output_tokens"] = sum(row_max_tokens(a))
        Path(a.result).write_text(json.dumps(r))
        return
    unknown = [v for v in a.variants.split(",") if v.split("#")[0] not in LABELS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {','.join(LABELS)}")
    if a.device == "auto":
        from ray_vllm_tutorial.chat import detect_device
        a.device = detect_device()
    args = sys.argv[1:]
    if a.qwen_dummy:
        from ray_vllm_tutorial.planner import dummy_model
        model = str(dummy_model("Qwen2.5-1.5B", "/tmp/qwen2.5-1.5b-dummy"))
        args += ["--model", model, "--load-format", "dummy", "--max-model-len", str(a.max_model_len or 4096)]
    tag = a.tag or a.device
    if a.workload == "mixed" and "mixed" not in tag:
        tag += "-mixed"
    mts = row_max_tokens(a)
    results, failed = {}, {}
    for v in a.variants.split(","):
        res = Path(f"/tmp/bench-{tag}-{v}.json")
        if a.resume and res.exists() and "error" not in json.loads(res.read_text()):
            results[v] = json.loads(res.read_text())
            print(f"== {label(v)}: kept from the interrupted run: {results[v]}", flush=True)
            continue
        res.unlink(missing_ok=True)
        print(f"== {label(v)}", flush=True)
        rc = subprocess.run([sys.executable, __file__, *args, "--device", a.device, "--variant", v, "--result", str(res)]).returncode
        r = json.loads(res.read_text()) if res.exists() else {"error": f"exit status {rc}, no result"}
        if rc or "error" in r:
            print(f"   FAILED (the other variants still run): {r.get('error')}", flush=True)
            failed[v] = r.get("error")
            continue
        results[v] = r
        if r["output_tokens"] != r["expected_output_tokens"]:
            print(f"   WARNING: {r['output_tokens']} output tokens, expected {r['expected_output_tokens']}", flush=True)
        print(f"   {results[v]}", flush=True)
    what = "Qwen2.5-1.5B shapes (dummy weights)" if a.qwen_dummy else (a.model or "embedded tiny model")
    d = describe(mts)
    if a.workload == "uniform":
        load = f"{a.n} prompts x {mts[0]} tokens"
    else:
        load = (f"mixed: {a.n} prompts, max_tokens median {d['median']:.0f}, p90 {d['p90']:.0f}, max {d['max']} "
                f"({d['total']} tokens)")
    if results:
        report(results, Path(a.out) / tag, f"{load}\nignore_eos, temperature 0; {what}, {a.device}, {tag}", failed)
    if failed:
        sys.exit(f"failed: {failed}")


if __name__ == "__main__":
    main()

"""Throughput benchmark: one LLM.chat (the ceiling) vs the classic recipe vs `run_batch` vs Ray Data LLM, same prompts.

Each variant runs in its own process (so one engine's memory never overlaps another's) and reports output tokens
per second of generation only; engine start is reported separately. Results: `<out>/<tag>/throughput.json` (keyed by
variant), a Markdown table and a PNG bar chart, each variant also as a ratio to the better of (a) and (a').

Workloads (`--workload`): `uniform` asks every prompt for exactly `--max-tokens` tokens; `mixed` draws each row's
`max_tokens` from a fixed-seed lognormal (median 120, sigma 1.0, clipped to [16, 1024]: median 117, p90 438, max 1024
for the 1000 default prompts); `mixed20k` is the same draw over 20000 rows by default (its first 1000 rows are
`mixed`'s; median 121, p90 433, max 1024, 3800333 tokens), so at scale far more rows wait than fit in flight. All use
`ignore_eos=True` and temperature 0, so every row makes exactly its max_tokens.

Repeats: `--repeats R` runs the variants interleaved R times (a, c, d, a, c, d, ...: drift of the machine falls on every
variant alike) and records every run (`chat`, `chat#2`, ...); the report gives each variant's median, min and max, and
its output tokens/s per GPU. `--budget-s S` starts no run that would end past S seconds (estimated from the variant's
own earlier runs, else the slowest run so far), and `--resume` keeps the runs already made on this machine, so one
long series can be spread over several commands of a device time limit. `--report-from` rebuilds the report from saved
`throughput.json` files (merged, later files win). Each run's vLLM log lines that time the engine's start (weights,
memory profiling, torch.compile, CUDA graph capture, engine init) are read from its output into `vllm_log`.

    python benchmarks/throughput.py                          # CPU, embedded tiny model
    python benchmarks/throughput.py --n 32 --max-tokens-cap 64 --workload mixed --variants chat,run_batch,ray_data_llm
    python benchmarks/throughput.py --qwen-1.5b-dummy --workload mixed --variants chat,chat256,run_batch,ray_data_llm --tag h100-mixed
    python benchmarks/throughput.py --n 40 --max-tokens-cap 8 --workload mixed20k --variants chat,run_batch --repeats 2
    python benchmarks/throughput.py --qwen-1.5b-dummy --workload mixed20k --variants chat,run_batch,ray_data_llm \
        --repeats 3 --resume --budget-s 560 --verbose --tag h100-mixed20k
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
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
        mts = [a.max_tokens] * a.n  # mixed and mixed20k: the same seeded draw, mixed20k over more rows
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


def gpus_of(variant: str, device: str) -> int:
    "GPUs a variant's engines hold: DP x TP for the run_batch layouts, 1 for the others (one engine, TP=1); 0 on CPU."
    if device != "gpu":
        return 0
    dp, tp = RUN_BATCH.get(variant.split("#")[0], (1, 1))
    return dp * tp


# vLLM's own log lines that time the engine's start (vLLM 0.2x-0.3x wording); every match is kept, in order
LOG_TIMES = {
    "weights_load_s": r"Loading weights took ([\d.]+) ?s",
    "model_load_s": r"Model loading took [\d.]+ ?GiB(?: memory)? and ([\d.]+) ?s",
    "dynamo_transform_s": r"Dynamo bytecode transform time: ([\d.]+) ?s",
    "compile_cache_load_s": r"Directly load the compiled graph\(s\) for .*? took ([\d.]+) ?s",
    "torch_compile_s": r"torch\.compile (?:takes|took) ([\d.]+) ?s in total",
    "memory_profiling_s": r"(?:Memory profiling takes|Initial profiling/warmup run took) ([\d.]+) ?s",
    "graph_capture_s": r"Graph capturing finished in ([\d.]+) ?secs?",
    "init_engine_s": r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) ?s",
}
LOG_RES = {k: re.compile(v) for k, v in LOG_TIMES.items()}
# lines whose time stamps (vLLM's, to the second) bound phases that no line times: the engine-core process's start
# (from the `spawn` override in the process that asks for the engine, to the engine core's first line) and the
# engine's warm-up after CUDA graph capture (to the kernel JIT monitor, the last step of vLLM's init)
LOG_MARKS = {"spawn": r"must use the `spawn` multiprocessing start method", "core_up": r"Initializing a V1 LLM engine",
             "graphs_done": r"Graph capturing finished", "jit_monitor": r"Kernel JIT monitor activated"}
LOG_MARK_RES = {k: re.compile(v) for k, v in LOG_MARKS.items()}
LOG_STAMP = re.compile(r"(?:INFO|WARNING|DEBUG|ERROR) (\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) \[")


def log_times(line: str, found: dict) -> None:
    "Add the start-up times that one line of vLLM's output states to `found` (key -> list of seconds)."
    for k, rx in LOG_RES.items():
        m = rx.search(line)
        if m:
            found.setdefault(k, []).append(float(m.group(1)))
    st = LOG_STAMP.search(line)
    if st:
        mo, d, h, mi, se = map(int, st.groups())
        t = (((mo * 31 + d) * 24 + h) * 60 + mi) * 60 + se
        for k, rx in LOG_MARK_RES.items():
            if rx.search(line):
                found.setdefault("_" + k, []).append(t)


def log_phases(found: dict) -> dict:
    "The phases that `log_times`' time stamps bound (1 s resolution), added to `found`; the stamps dropped."
    marks = {k[1:]: found.pop(k) for k in list(found) if k.startswith("_")}
    if marks.get("spawn") and marks.get("core_up"):
        found["engine_core_spawn_s"] = [float(marks["core_up"][0] - marks["spawn"][0])]
    if marks.get("graphs_done") and marks.get("jit_monitor"):
        found["warm_up_after_graphs_s"] = [float(marks["jit_monitor"][0] - marks["graphs_done"][0])]
    return found


def run_child(cmd: list[str]) -> tuple[int, dict]:
    "Run one variant's process, its output passed through line by line and read for vLLM's start-up times."
    found: dict = {}
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                          errors="replace", bufsize=1) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            log_times(line, found)
        sys.stdout.flush()
    return proc.returncode, log_phases(found)


def summarize(results: dict) -> dict:
    """Per variant, over its runs: how many, output tokens/s and rows/s as median/min/max, the same per GPU, engine
    start and generation time as median/min/max, and the median's ratio to (a)'s median (`chat`)."""
    import numpy as np
    runs: dict[str, list] = {}
    for k, r in results.items():
        runs.setdefault(k.split("#")[0], []).append((k, r))

    def mmm(xs):
        xs = [x for x in xs if x is not None]
        return dict(median=float(np.median(xs)), min=float(min(xs)), max=float(max(xs))) if xs else None
    out = {}
    for v, rs in runs.items():
        gpus = rs[0][1].get("gpus", 0)
        tps = [r["tokens_per_s"] for _, r in rs]
        out[v] = dict(label=LABELS[v], runs=len(rs), run_keys=[k for k, _ in rs], gpus=gpus,
                      tokens_per_s=mmm(tps), rows_per_s=mmm([r["rows"] / r["generation_s"] for _, r in rs]),
                      tokens_per_s_per_gpu=mmm([t / gpus for t in tps]) if gpus else None,
                      engine_start_s=mmm([r["engine_start_s"] for _, r in rs]),
                      generation_s=mmm([r["generation_s"] for _, r in rs]),
                      output_tokens=rs[0][1]["output_tokens"], rows=rs[0][1]["rows"],
                      devices=sorted({r.get("device_name") or "?" for _, r in rs}))
    ref = out.get("chat") or out.get("chat256") or next(iter(out.values()))
    for v in out.values():
        v["vs_a_median"] = v["tokens_per_s"]["median"] / ref["tokens_per_s"]["median"]
    return out


def _spread(m: dict | None, fmt: str = "{:.0f}") -> str:
    return "n/a" if m is None else (fmt.format(m["median"]) + " (" + fmt.format(m["min"]) + "-" + fmt.format(m["max"]) + ")")


def start_rows(results: dict) -> list[str]:
    "One Markdown row per run: the engine start, stamped by the benchmark and as vLLM's own log lines time it."
    cols = ["vllm_import", "actor_up", "build", "warm_up"]
    logs = ["engine_core_spawn_s", "model_load_s", "dynamo_transform_s", "torch_compile_s", "compile_cache_load_s",
            "memory_profiling_s", "graph_capture_s", "warm_up_after_graphs_s", "init_engine_s"]
    lines = ["| run | engine start (s) | Ray actor up | vLLM import | engine build | warm-up | engine-core process "
             "spawned | weights | dynamo | torch.compile (total) | compile cache load | profiling run | CUDA graphs | "
             "after graphs (kernel warm-up) | vLLM init engine |",
             "|" + "---|" * 15]
    for k, r in results.items():
        b = dict(r.get("start_breakdown") or {})
        if "vllm_import_before_start_s" in b:  # LLM: vLLM is imported before the clock starts
            b["vllm_import_s"] = b.pop("vllm_import_before_start_s")
        lg = dict(r.get("vllm_log") or {})
        lg.setdefault("model_load_s", lg.get("weights_load_s"))  # vLLM's weights line where no model-loading line
        f = lambda x: "" if x is None else f"{x:.1f}"
        cells = [f(b.get(c + "_s")) for c in cols]
        if "vllm_import_s" in b and "actor_up_s" not in b:
            cells[0] = f"{b['vllm_import_s']:.1f} (before start)"
        cells += [f(max(lg[c])) if lg.get(c) else "" for c in logs]  # the slowest engine's, where there are several
        lines.append(f"| {label(k)} | {r['engine_start_s']:.1f} | " + " | ".join([cells[1], cells[0]] + cells[2:]) + " |")
    return lines


def report(results: dict, out: Path, title: str, failed: dict | None = None, meta: dict | None = None,
           show: bool = True) -> None:
    """Write throughput.md/json, summary.json and a PNG chart of output tokens/s, each with its ratio to the better of
    (a) and (a'); with repeated runs, also each variant's median, min and max (and per GPU), and the chart shows
    medians with their min-max spread and every run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    refs = [k for k in results if k.split("#")[0] in ("chat", "chat256")]
    ref = max(refs, key=lambda k: results[k]["tokens_per_s"]) if refs else next(iter(results))
    base = results[ref]["tokens_per_s"]
    vs = "vs best of (a), (a')" if refs else f"vs {label(ref).split()[0]}"
    summary = summarize(results)
    repeated = any(v["runs"] > 1 for v in summary.values())
    device = next(iter(results.values())).get("device", "gpu" if any(v["gpus"] for v in summary.values()) else "cpu")
    lines = [f"# {title.replace(chr(10), ', ')}", ""]
    if meta:
        lines += [f"Repeats asked: {meta.get('repeats', 1)} of each variant, interleaved; runs made: "
                  + ", ".join(f"{v} {s['runs']}" for v, s in summary.items())
                  + ". Device: " + ", ".join(sorted({d for s in summary.values() for d in s["devices"]})) + "."
                  + (f" {meta['note']}" if meta.get("note") else ""), ""]
    pg = "output tokens/s per GPU" if device == "gpu" else "per GPU (n/a on CPU)"
    lines += ["## Per variant: median (min-max) over its runs", "",
              f"| variant | runs | GPUs | output tokens/s | {pg} | rows/s | engine start (s) | generation (s) | "
              "median vs (a)'s median |", "|---|---|---|---|---|---|---|---|---|"]
    for v, m in summary.items():
        lines.append(f"| {m['label']} | {m['runs']} | {m['gpus'] or 'cpu'} | {_spread(m['tokens_per_s'])} | "
                     f"{_spread(m['tokens_per_s_per_gpu'])} | {_spread(m['rows_per_s'], '{:.1f}')} | "
                     f"{_spread(m['engine_start_s'], '{:.1f}')} | {_spread(m['generation_s'], '{:.1f}')} | "
                     f"{m['vs_a_median']:.2f}x |")
    lines += ["", "## Every run, in the order run", "",
              f"| variant | rows | output tokens | engine start (s) | generation (s) | rows/s | output tokens/s | per GPU | {vs} |",
              "|---|---|---|---|---|---|---|---|---|"]
    for k, r in results.items():
        g = r.get("gpus") or 0
        lines.append(f"| {label(k)} | {r['rows']} | {r['output_tokens']} | {r['engine_start_s']:.1f} | {r['generation_s']:.2f} | "
                     f"{r['rows'] / r['generation_s']:.1f} | {r['tokens_per_s']:.0f} | "
                     + (f"{r['tokens_per_s'] / g:.0f}" if g else "n/a") + f" | {r['tokens_per_s'] / base:.2f}x |")
    lines += ["", f"Ratio base: {label(ref)} ({base:.0f} output tokens/s)."]
    for k, e in (failed or {}).items():
        lines.append(f"{label(k)}: did not run: {e}")
    lines += ["", "## Engine start, run by run (s)", "",
              "Stamped by the benchmark (`LLM`: vLLM imported before the clock starts, engine build, warm-up request; "
              "`run_batch`: Ray actor up, vLLM import in the actor, engine build including the spawned engine-core "
              "process, warm-up) and read from vLLM's own log lines (empty: not logged in that run): the engine-core "
              "process's start when vLLM must spawn it (from its `spawn` warning to the engine core's first line), "
              "weights (dummy), Dynamo and torch.compile (total, cache loads included), the profiling run, CUDA graph "
              "capture, the rest of the warm-up after capture (to the kernel JIT monitor), and vLLM's own "
              "`init engine` total, which holds compile, profiling, graphs and that warm-up.", ""]
    lines += start_rows(results)
    rdl = {k: r["settings"] for k, r in results.items() if k.split("#")[0].startswith("ray_data_llm") and r.get("settings")}
    if rdl:
        k, cfg = next(iter(rdl.items()))
        lines += ["", f"Ray Data LLM configuration ({label(k).split(',')[0]}): `vLLMEngineProcessorConfig("
                  + ", ".join(f"{n}={v!r}" for n, v in cfg.items() if v is not None) + ")`"]
    if meta and meta.get("commands"):
        lines += ["", "Commands:", ""] + [f"    {c}" for c in meta["commands"]]
        if meta.get("report_command"):
            lines += ["", "Report rebuilt with:", "", f"    {meta['report_command']}"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.md").write_text("\n".join(lines) + "\n")
    (out / "throughput.json").write_text(json.dumps(results, indent=1))
    (out / "summary.json").write_text(json.dumps(dict(meta or {}, title=title, variants=summary,
                                                      failed=failed or {}), indent=1))
    if repeated:  # one bar per variant: the median, its min-max whisker, and every run as a dot
        fig, ax = plt.subplots(figsize=(11, 1.8 + 0.6 * len(summary)))
        ref_med = summary.get("chat", next(iter(summary.values())))["tokens_per_s"]["median"]
        names = [f"{m['label']} ({m['runs']} run{'s' * (m['runs'] > 1)})" for m in summary.values()]
        meds = [m["tokens_per_s"]["median"] for m in summary.values()]
        lo = [m["tokens_per_s"]["median"] - m["tokens_per_s"]["min"] for m in summary.values()]
        hi = [m["tokens_per_s"]["max"] - m["tokens_per_s"]["median"] for m in summary.values()]
        bars = ax.barh(names, meds, xerr=[lo, hi], capsize=4, color=[COLORS[v] for v in summary], alpha=0.8)
        for y, v in enumerate(summary):
            xs = [r["tokens_per_s"] for k, r in results.items() if k.split("#")[0] == v]
            ax.plot(xs, [y] * len(xs), "k.", ms=6)
        for b, m in zip(bars, summary.values()):
            t = m["tokens_per_s"]
            g = f", {m['tokens_per_s_per_gpu']['median']:.0f}/GPU" if m["tokens_per_s_per_gpu"] else ""
            ax.text(t["max"], b.get_y() + b.get_height() / 2, f"  {t['median']:.0f} ({t['min']:.0f}-{t['max']:.0f}) "
                    f"{t['median'] / ref_med:.2f}x{g}", va="center", fontsize=8)
        ax.set_xlabel("output tokens/s, generation only (bar: median, whisker: min-max, dots: runs); ratio of medians to (a)")
        ax.set_xlim(0, max(m["tokens_per_s"]["max"] for m in summary.values()) * 1.55)
    else:
        fig, ax = plt.subplots(figsize=(9, 1.6 + 0.55 * len(results)))
        names = [label(k) for k in results]
        vals = [r["tokens_per_s"] for r in results.values()]
        bars = ax.barh(names, vals, color=[COLORS[k.split("#")[0]] for k in results])
        for b, v in zip(bars, vals):
            ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {v:.0f} ({v / base:.2f}x)", va="center", fontsize=9)
        ax.set_xlabel(f"output tokens/s (generation only); ratio to {label(ref).split()[0]}")
        ax.set_xlim(0, max(vals) * 1.3)
    ax.invert_yaxis(); ax.set_title(title.replace("; ", ";\n", 1) if len(title) > 110 else title, fontsize=9)
    fig.tight_layout(); fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)
    if show:
        print("\n".join(lines))


def run_plan(variants: list[str], repeats: int) -> list[str]:
    "The runs in order: the variants interleaved `repeats` times (a, c, d, a#2, c#2, d#2, ...)."
    if repeats > 1 and any("#" in v for v in variants):
        raise ValueError("--repeats numbers the runs itself: give variants without '#'")
    keys = [v if r == 0 else f"{v}#{r + 1}" for r in range(repeats) for v in variants]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a variant is named twice: {variants}")
    return keys


def estimate_s(key: str, walls: dict) -> float | None:
    "A run's expected wall time: the slowest earlier run of its variant, else the slowest run so far (None: no run yet)."
    same = [w for k, w in walls.items() if k.split("#")[0] == key.split("#")[0]]
    return max(same) if same else (max(walls.values()) if walls else None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model name or path (default: the embedded tiny model)")
    p.add_argument("--qwen-1.5b-dummy", dest="qwen_dummy", action="store_true", help="Qwen2.5-1.5B shapes, random weights (GPU)")
    p.add_argument("--workload", choices=("uniform", "mixed", "mixed20k"), default="uniform",
                   help="uniform: every row --max-tokens; mixed: per-row max_tokens from a fixed-seed long tail in "
                   "[16, 1024]; mixed20k: the same, 20000 rows unless --n says otherwise")
    p.add_argument("--n", type=int, default=None, help="prompts (default 1000; mixed20k: 20000)")
    p.add_argument("--max-tokens", type=int, default=256, help="uniform workload: tokens per row")
    p.add_argument("--max-tokens-cap", type=int, default=None, help="cap every row's max_tokens (small CPU checks)")
    p.add_argument("--seed", type=int, default=2, help="mixed workloads: the lengths' random seed")
    p.add_argument("--device", default="auto")
    p.add_argument("--load-format", default=None)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="run_batch batch size (default: its own)")
    p.add_argument("--rdl-batch-size", type=int, default=None, help="Ray Data LLM batch_size (default 32, its own)")
    p.add_argument("--rdl-concurrent-batches", type=int, default=None, help="Ray Data LLM max_concurrent_batches "
                   "(ray_data_llm default: enough 32-row batches to fill max_num_seqs; ray_data_llm_defaults: Ray's 8)")
    p.add_argument("--variants", default="chat,seed,run_batch", help="comma list of " + ",".join(LABELS) +
                   " (chat256: (a) with max_num_seqs=256; ray_data_llm needs ray[serve]'s extras)")
    p.add_argument("--repeats", type=int, default=1, help="run the variants this many times, interleaved "
                   "(a, c, d, a, c, d, ...), every run recorded; the report gives median, min and max per variant")
    p.add_argument("--budget-s", type=float, default=None, help="start no run expected to end past this many seconds "
                   "from this command's start (expected: the variant's slowest earlier run, else the slowest run); "
                   "with --resume, the next command goes on where this one stopped")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--tag", default="", help="results folder name (default: the device; a mixed run's tag always "
                   "contains its workload's name)")
    p.add_argument("--resume", action="store_true", help="keep runs already measured by an earlier or interrupted "
                   "run of this command on this machine (/tmp/bench-<tag>-*.json)")
    p.add_argument("--report-from", default=None, help="comma list of saved throughput.json files: write the report "
                   "of their runs (merged, later files win) under --out/--tag and run nothing")
    p.add_argument("--note", default=None, help="a sentence for the report (e.g. why fewer runs than asked)")
    p.add_argument("--verbose", action="store_true", help="run_batch variants: show Ray's and vLLM's logs")
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.n is None:
        a.n = 20000 if a.workload == "mixed20k" else 1000
    if a.variant:  # child process: one variant
        try:
            r = run_variant(a)
        except BaseException as e:
            Path(a.result).write_text(json.dumps({"error": f"{type(e).__name__}: {e}"[:2000],
                                                  "traceback": traceback.format_exc()[-4000:]}))
            raise
        r["tokens_per_s"] = r["output_tokens"] / r["generation_s"]
        r["rows_per_s"] = r["rows"] / r["generation_s"]
        r["workload"] = a.workload
        r["expected_output_tokens"] = sum(row_max_tokens(a))
        r["device"], r["gpus"] = a.device, gpus_of(a.variant, a.device)
        if a.device == "gpu":
            try:
                import torch
                r["device_name"] = torch.cuda.get_device_name(0)
            except Exception:
                pass
        else:
            r["device_name"] = "cpu"
        Path(a.result).write_text(json.dumps(r))
        return
    variants = a.variants.split(",")
    unknown = [v for v in variants if v.split("#")[0] not in LABELS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {','.join(LABELS)}")
    try:
        plan = run_plan(variants, a.repeats)
    except ValueError as e:
        p.error(str(e))
    if a.device == "auto" and not a.report_from:
        from ray_vllm_tutorial.chat import detect_device
        a.device = detect_device()
    args = sys.argv[1:]
    if a.qwen_dummy and not a.report_from:
        from ray_vllm_tutorial.planner import dummy_model
        model = str(dummy_model("Qwen2.5-1.5B", "/tmp/qwen2.5-1.5b-dummy"))
        args += ["--model", model, "--load-format", "dummy", "--max-model-len", str(a.max_model_len or 4096)]
    tag = a.tag or a.device
    if a.workload != "uniform" and a.workload not in tag:
        tag += "-" + a.workload
    mts = row_max_tokens(a)
    command = "python benchmarks/throughput.py " + shlex.join(sys.argv[1:])
    results, failed, walls = {}, {}, {}
    if a.report_from:
        for f in a.report_from.split(","):
            results.update(json.loads(Path(f).read_text()))
        results = {k: results[k] for k in sorted(results, key=lambda k: results[k].get("started_at", 0))}
    t_start = time.time()
    for v in plan if a.resume and not a.report_from else []:  # every run already made, wherever it is in the plan
        res = Path(f"/tmp/bench-{tag}-{v}.json")
        if res.exists() and "error" not in json.loads(res.read_text()):
            results[v] = json.loads(res.read_text())
            walls[v] = results[v].get("run_wall_s", 0)
            print(f"== {label(v)}: kept from an earlier run on this machine: "
                  f"{results[v]['tokens_per_s']:.0f} output tokens/s", flush=True)
    for v in [] if a.report_from else [v for v in plan if v not in results]:
        res = Path(f"/tmp/bench-{tag}-{v}.json")
        est = estimate_s(v, walls)
        if a.budget_s and est is not None and time.time() - t_start + est > a.budget_s:
            print(f"== stopping before {label(v)}: {time.time() - t_start:.0f} s gone + about {est:.0f} s for it > "
                  f"--budget-s {a.budget_s:.0f}; the same command with --resume goes on from here", flush=True)
            break
        res.unlink(missing_ok=True)
        print(f"== {label(v)}", flush=True)
        t0 = time.time()
        rc, found = run_child([sys.executable, __file__, *args, "--device", a.device, "--variant", v, "--result", str(res)])
        r = json.loads(res.read_text()) if res.exists() else {"error": f"exit status {rc}, no result"}
        if rc or "error" in r:
            print(f"   FAILED (the other variants still run): {r.get('error')}", flush=True)
            failed[v] = r.get("error")
            continue
        r.update(run_wall_s=time.time() - t0, started_at=t0, vllm_log=found, command=command)
        res.write_text(json.dumps(r))  # with its wall time and log times, for --resume
        results[v], walls[v] = r, r["run_wall_s"]
        if r["output_tokens"] != r["expected_output_tokens"]:
            print(f"   WARNING: {r['output_tokens']} output tokens, expected {r['expected_output_tokens']}", flush=True)
        print(f"   {json.dumps({k: x for k, x in r.items() if k not in ('replicas', 'settings')})}", flush=True)
        results = {k: results[k] for k in sorted(results, key=lambda k: results[k].get("started_at", 0))}
        write_report(a, results, failed, tag, mts, show=False)  # after every run: a command cut short keeps what it made
    if results:
        results = {k: results[k] for k in sorted(results, key=lambda k: results[k].get("started_at", 0))}
        write_report(a, results, failed, tag, mts)
    if failed:
        sys.exit(f"failed: {failed}")


def write_report(a, results: dict, failed: dict, tag: str, mts: list[int], show: bool = True) -> None:
    what = "Qwen2.5-1.5B shapes (dummy weights)" if a.qwen_dummy else (a.model or "embedded tiny model")
    d = describe(mts)
    if a.workload == "uniform":
        load = f"{a.n} prompts x {mts[0]} tokens"
    else:
        load = (f"{a.workload}: {a.n} prompts, max_tokens median {d['median']:.0f}, p90 {d['p90']:.0f}, max {d['max']} "
                f"({d['total']} tokens)")
    device = next(iter(results.values())).get("device", a.device)
    commands = list(dict.fromkeys(r["command"] for r in results.values() if r.get("command")))
    vers = versions()
    if a.report_from:  # the versions the runs were made with: from the summaries saved beside their files
        sums = [Path(f).with_name("summary.json") for f in a.report_from.split(",")]
        vers = next((json.loads(f.read_text()).get("versions") for f in sums if f.exists()), None) or "unknown"
    meta = dict(workload=a.workload, n=a.n, lengths=d, repeats=a.repeats, model=what, device=device,
                commands=commands, versions=vers)
    if a.report_from:
        meta["report_command"] = "python benchmarks/throughput.py " + shlex.join(sys.argv[1:])
    if a.note:
        meta["note"] = a.note
    report(results, Path(a.out) / tag, f"{load}\nignore_eos, temperature 0; {what}, {device}, {tag}", failed, meta, show)


def versions() -> dict:
    import importlib.metadata as md
    out = {}
    for n in ("vllm", "ray", "torch"):
        try:
            out[n] = md.version(n)
        except Exception:
            pass
    return out


if __name__ == "__main__":
    main()

"""Teach and run LLM batch inference at scale: Ray, vLLM, tensor and data parallelism

Modules:

- `ray_vllm_tutorial.scheduler`: The scheduler behind `LLM.chat`: steps and their token budget, the KV cache in blocks, preemption when the blocks run out, prefix caching, structured output, and how to choose `max_num_seqs` — each read from vLLM's own counters."""

__version__ = "0.1.0"

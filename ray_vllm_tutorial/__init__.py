"""Teach and run LLM batch inference at scale: Ray, vLLM, tensor and data parallelism"""

__version__ = "0.1.0"

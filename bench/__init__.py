"""Benchmarks of gptlib on this machine: training throughput and MFU, generation with the KV cache, memory.

Run from the repository root: `python -m bench --json bench.json` (see bench/README.md).
"""

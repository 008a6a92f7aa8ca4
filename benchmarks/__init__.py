"""Speed harness of jola-ray: training step against the frozen-model floor, decoding modes,
several trials per device, a whole trial's phases and a small Ray sweep.

Runs on a CPU with the tiny shape (CI smoke) and on a GPU with the real Llama shapes and random
bf16 weights (no download). Entry point: ``python -m benchmarks.run``; see docs/benchmarks.md.
"""

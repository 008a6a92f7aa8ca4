"""Evaluation throughput per decoding mode, in ms per test example, through ``evaluate``.

Each mode runs the library's own ``jola_ray.evaluation.evaluate`` (so prompt encoding, padding,
stopping criteria and answer extraction are all counted) on the JoLA-edited model in eval mode
(deterministic gates), with the anchors' geometry: prompts of ``prompt_tokens`` tokens (the
tiny tokenizer spends one token per character) and ``new_tokens`` new tokens. Random weights
rarely emit a newline, so greedy decoding runs the full ``new_tokens`` like beam search does.

Keys: ``beam4_bs1`` (the reference's 4-beam search at batch 1), ``greedy_bs1``,
``greedy_bs64``, ``label_scoring_bs64`` (one forward per batch of (prompt, label) rows over
four labels).
"""

from __future__ import annotations

import random
import time

from benchmarks.train_step import sync

# key -> (evaluate mode, batch size, beams)
MODES: dict[str, tuple[str, int, int]] = {
    "beam4_bs1": ("beam", 1, 4),
    "greedy_bs1": ("greedy", 1, 1),
    "greedy_bs64": ("greedy", 64, 1),
    "label_scoring_bs64": ("label_scoring", 64, 1),
}
LABELS = ("A", "B", "C", "D")


def bench_task(new_tokens: int = 16):
    """A four-label classification task whose answers are extracted as in real tasks."""
    from jola_ray.data.task import Task

    return Task(
        name="bench_four_labels",
        benchmark="bench",
        kind="classification",
        metrics=("accuracy",),
        primary_metric="accuracy",
        labels=LABELS,
        label_pattern=r"\b(A|B|C|D)\b",
        max_new_tokens=new_tokens,
        description="synthetic prompts of a fixed token length, for timing only",
    )


def bench_examples(count: int, prompt_tokens: int, seed: int = 0) -> list:
    """``count`` examples whose prompt encodes to ``prompt_tokens`` tokens with the tiny
    tokenizer (BOS + one token per character), ending like the real template."""
    from jola_ray.data.task import Example

    rng = random.Random(seed)
    suffix = "\n\n### Response:\n"
    body_len = max(1, prompt_tokens - 1 - len(suffix))
    letters = "abcdefghijklmnopqrstuvwxyz     "
    out = []
    for i in range(count):
        body = "".join(rng.choice(letters) for _ in range(body_len))
        out.append(Example(id=f"bench-{i}", prompt=body + suffix, answer=LABELS[i % 4]))
    return out


def run(
    model,
    tokenizer,
    device: str,
    counts: dict[str, int],
    prompt_tokens: int = 160,
    new_tokens: int = 16,
) -> dict:
    """ms per example for each mode in ``counts`` (mode key -> number of examples timed), after
    one untimed warm-up call per mode on one batch. Returns ``eval_ms_per_example``,
    ``eval_speedup_vs_beam4_bs1`` and ``eval_examples``."""
    from jola_ray.editing import JoLAConfig, apply_edit
    from jola_ray.evaluation import evaluate

    task = bench_task(new_tokens)
    edit = apply_edit(model, JoLAConfig(seed=0))
    ms: dict[str, float] = {}
    try:
        for key, count in counts.items():
            mode, batch_size, beams = MODES[key]
            examples = bench_examples(count, prompt_tokens)
            warm = examples[:batch_size]  # one full batch: allocations and kernels warmed
            evaluate(
                model, tokenizer, task, warm, mode=mode, batch_size=batch_size, num_beams=beams
            )
            sync(device)
            start = time.perf_counter()
            evaluate(
                model, tokenizer, task, examples, mode=mode, batch_size=batch_size, num_beams=beams
            )
            sync(device)
            ms[key] = 1000.0 * (time.perf_counter() - start) / count
    finally:
        edit.remove()
    speedup = {}
    if "beam4_bs1" in ms:
        speedup = {k: ms["beam4_bs1"] / v for k, v in ms.items() if k != "beam4_bs1"}
    return {
        "eval_ms_per_example": ms,
        "eval_speedup_vs_beam4_bs1": speedup,
        "eval_examples": dict(counts),
        "eval_prompt_tokens": prompt_tokens,
        "eval_new_tokens": new_tokens,
    }

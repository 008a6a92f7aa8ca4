"""Which way greedy decoding should stop: ms per example on CPU with the tiny model.

    .venv/bin/python -m benchmarks.eval_speed [--n 200] [--prompt-tokens 160] [--threads 1]

Greedy batch 64 on ``decode_speed``'s synthetic prompts, 16 new tokens, three ways: the
library's stop at the first complete line (the default), transformers' ``stop_strings=["\\n"]``
(which also stops at a leading newline, unlike the reference's strip-then-first-line), and no
stopping. The speed of each decoding mode (beam, greedy, label scoring) is ``decode_speed``'s
job (``python -m benchmarks.run --only eval``). A random tiny model rarely writes a newline,
so all three mostly run the full 16 tokens: the figure shows what the stop check costs.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.decode_speed import bench_examples, bench_task
from jola_ray.evaluation import evaluate
from jola_ray.evaluation.batching import encode_prompts, left_pad, length_sorted_batches, pad_id
from jola_ray.evaluation.generation import generate_continuations
from jola_ray.tiny import build_tiny


def stop_strings_greedy(model, tok, prompts, batch_size, max_new_tokens):
    """Greedy with transformers' own ``stop_strings=["\\n"]``."""
    encoded = encode_prompts(tok, prompts)
    for batch in length_sorted_batches([len(e) for e in encoded], batch_size):
        inputs = left_pad([encoded[i] for i in batch], pad_id(tok), model.device)
        inputs.pop("position_ids")
        with torch.no_grad():
            model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                stop_strings=["\n"],
                tokenizer=tok,
                pad_token_id=pad_id(tok),
            )


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): CPU time is less sensitive to a busy host."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--prompt-tokens", type=int, default=160)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = build_tiny("llama")
    task = bench_task(new_tokens=16)
    examples = bench_examples(args.n, args.prompt_tokens)
    prompts = [e.prompt for e in examples]
    print(f"{len(examples)} prompts of {args.prompt_tokens} tokens, threads {args.threads}")
    evaluate(model, tok, task, examples[:8], batch_size=8)  # warm-up

    rows = [
        ("first complete line (default)", lambda: evaluate(model, tok, task, examples)),
        ("stop_strings", lambda: stop_strings_greedy(model, tok, prompts, 64, 16)),
        (
            "no stopping",
            lambda: generate_continuations(
                model, tok, prompts, batch_size=64, stop_at_newline=False
            ),
        ),
    ]
    print(f"{'greedy batch 64, stopping at':32s} {'wall ms/ex':>10s} {'cpu ms/ex':>10s}")
    for name, fn in rows:
        wall, cpu = timed(fn)
        n = len(examples)
        print(f"{name:32s} {1000 * wall / n:10.2f} {1000 * cpu / n:10.2f}")


if __name__ == "__main__":
    main()

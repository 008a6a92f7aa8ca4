"""Evaluation speed on CPU with the tiny model: ms per example for each decoding set-up.

    .venv/bin/python benchmarks/eval_speed.py [--n 200] [--threads 1]

200 synthetic BoolQ-style prompts of about 200 characters, max 16 new tokens. Rows:
beam4 batch 1 (the reference's set-up), greedy batch 1, greedy batch 64 (stopping at the
first complete line, the default), greedy batch 64 with ``stop_strings=["\\n"]`` and with no
stopping (for the choice of stopping method), label scoring batch 64 (two labels).
A random tiny model rarely writes a newline, so greedy rows mostly run all 16 tokens.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from jola_ray.data.task import PROMPT_TEMPLATE, Example, Task
from jola_ray.evaluation import evaluate
from jola_ray.evaluation.batching import encode_prompts, left_pad, length_sorted_batches, pad_id
from jola_ray.tiny import build_tiny

TASK = Task(
    name="boolq_synthetic",
    benchmark="demo",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    labels=("true", "false"),
    max_new_tokens=16,
)
WORDS = (
    "the",
    "a",
    "river",
    "city",
    "king",
    "paper",
    "green",
    "seven",
    "under",
    "over",
    "is",
    "not",
)


def synthetic_examples(n: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = []
        target = rng.randint(20, 90)
        while len(" ".join(words)) < target:
            words.append(rng.choice(WORDS))
        instruction = " ".join(words) + "? Answer format: true/false"
        out.append(
            Example(
                id=str(i),
                prompt=PROMPT_TEMPLATE.format(instruction=instruction),
                answer=rng.choice(["true", "false"]),
            )
        )
    return out


def stop_strings_greedy(model, tok, prompts, batch_size, max_new_tokens):
    """Greedy with transformers' own ``stop_strings=["\\n"]`` (stops at a leading newline too)."""
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
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = build_tiny("llama")
    examples = synthetic_examples(args.n)
    chars = sum(len(e.prompt) for e in examples) / len(examples)
    print(f"{len(examples)} prompts, mean {chars:.0f} chars, torch threads {args.threads}")
    evaluate(model, tok, TASK, examples[:8], batch_size=8)  # warm-up

    import jola_ray.evaluation.generation as generation

    rows = [
        ("beam4 batch 1", lambda: evaluate(model, tok, TASK, examples, mode="beam", batch_size=1)),
        ("greedy batch 1", lambda: evaluate(model, tok, TASK, examples, batch_size=1)),
        ("greedy batch 64", lambda: evaluate(model, tok, TASK, examples, batch_size=64)),
        (
            "greedy batch 64, stop_strings",
            lambda: stop_strings_greedy(model, tok, [e.prompt for e in examples], 64, 16),
        ),
        (
            "greedy batch 64, no stopping",
            lambda: generation.generate_continuations(
                model, tok, [e.prompt for e in examples], batch_size=64, stop_at_newline=False
            ),
        ),
        (
            "label scoring batch 64",
            lambda: evaluate(model, tok, TASK, examples, mode="label_scoring", batch_size=64),
        ),
    ]
    print(f"{'set-up':32s} {'wall ms/ex':>10s} {'cpu ms/ex':>10s}")
    for name, fn in rows:
        wall, cpu = timed(fn)
        n = len(examples)
        print(f"{name:32s} {1000 * wall / n:10.2f} {1000 * cpu / n:10.2f}")


if __name__ == "__main__":
    main()

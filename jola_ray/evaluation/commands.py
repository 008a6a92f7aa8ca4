"""``jola-ray evaluate``: a base model, with or without a saved edit, scored on one task split.

The edit file may be any method's (``edit.safetensors`` of a run): its metadata names the method,
whose module re-attaches it (``jola_ray.methods.registry.load_saved``). Loading the model reuses
the run's loader with a ``ModelConfig`` only. Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from jola_ray.cli import HelpFormatter

    parser = subparsers.add_parser(
        "evaluate",
        help="score a model (optionally with a saved edit) on a task split",
        description=(
            "Load the model, apply a saved edit (edit.safetensors from a run of any method) if "
            "given, and evaluate it on one split of a task with deterministic gates. Prints the "
            "metrics; with --output-dir also writes metrics.json and predictions.jsonl."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", required=True, help="HF hub id, local path or tiny-<arch>")
    parser.add_argument("--task", required=True, help="task name (jola-ray tasks)")
    parser.add_argument(
        "--edit", help="an edit.safetensors written by a run (default: none, the bare model)"
    )
    parser.add_argument(
        "--split", default="test", choices=("train", "dev", "test"), help="split to score"
    )
    parser.add_argument(
        "--data-dir", "--data_dir", dest="data_dir", help="local task files instead of the hub"
    )
    parser.add_argument("--seed", type=int, default=42, help="sampling seed of the splits")
    parser.add_argument("--size", type=int, help="examples of the split (default: the task's)")
    parser.add_argument(
        "--decoding",
        default="greedy",
        choices=("greedy", "beam", "label_scoring"),
        help="greedy or beam generation, or scoring each label (classification tasks)",
    )
    parser.add_argument(
        "--eval-batch-size",
        "--eval_batch_size",
        dest="eval_batch_size",
        type=int,
        default=64,
        help="examples per generation batch",
    )
    parser.add_argument(
        "--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="weights' precision"
    )
    parser.add_argument(
        "--quantization",
        default="none",
        choices=("none", "nf4"),
        help="nf4: 4-bit loading (needs bitsandbytes: pip install 'jola-ray[quant]')",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="auto: the GPU when there is one, else the CPU",
    )
    parser.add_argument(
        "--output-dir",
        "--output_dir",
        dest="output_dir",
        help="also write metrics.json and predictions.jsonl here",
    )
    parser.set_defaults(func=_handle_evaluate)


def _handle_evaluate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from jola_ray.data import get_task, load_splits
    from jola_ray.evaluation import evaluate
    from jola_ray.methods.registry import load_saved
    from jola_ray.train.config import ModelConfig
    from jola_ray.train.loading import load_model_and_tokenizer

    cfg = ModelConfig(
        model=args.model, dtype=args.dtype, quantization=args.quantization, device=args.device
    )
    task = get_task(args.task)
    sizes = {f"{args.split}_size": args.size} if args.size else {}
    splits = load_splits(task, data_dir=args.data_dir, seed=args.seed, **sizes)
    examples = getattr(splits, args.split)
    model, tokenizer, _ = load_model_and_tokenizer(cfg)
    if args.edit:
        load_saved(model, args.edit)
    result = evaluate(
        model, tokenizer, task, examples, mode=args.decoding, batch_size=args.eval_batch_size
    )
    metrics = {f"{args.split}_{k}": v for k, v in result.metrics.items()}
    print(json.dumps({"task": task.name, "examples": len(examples), **metrics}))
    if args.output_dir:
        from jola_ray.evaluation.results import write_results

        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_results(out, metrics, result.predictions)
    return 0

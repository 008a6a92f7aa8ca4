"""``jola-ray evaluate``: a base model, with or without a saved edit, scored on one task split.

The edit file may be any method's (``edit.safetensors`` of a run): its metadata names the method,
whose module re-attaches it (``jola_ray.methods.registry.load_saved``). The settings are train's
evaluation settings with train's defaults, or the run's own when ``--edit`` points into a run
(``jola_ray.evaluation.settings``), checked by the same per-setting metadata. Loading the model
reuses the run's loader with a ``ModelConfig`` only. Nothing heavy is imported until the command
runs.
"""

from __future__ import annotations

import argparse
import dataclasses


def register(subparsers) -> None:
    from jola_ray.evaluation.settings import EVAL_KEYS
    from jola_ray.settings import add_setting_flags
    from jola_ray.train.config import leaf_fields, profile_defaults

    parser = subparsers.add_parser(
        "evaluate",
        help="score a model (optionally with a saved edit) on a task split",
        description=(
            "Load the model, apply a saved edit (edit.safetensors from a run, any method's) if "
            "given, and evaluate it on one split of a task with deterministic gates. Prints the "
            "metrics; with --output-dir also writes metrics.json and predictions.jsonl. The "
            "evaluation settings are train's, with train's defaults; when --edit points into a "
            "run folder, every setting not given as a flag is the run's own (its config.yaml)."
        ),
    )
    parser.add_argument("--edit", help="an edit.safetensors written by a run (default: none)")
    parser.add_argument("--split", default="test", choices=("train", "dev", "test"))
    parser.add_argument(
        "--size", type=int, help="examples of the split (the split's --<split>-size)"
    )
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    paper = profile_defaults("paper")
    leaves = leaf_fields()
    specs = {name: leaves[name][1] for name in EVAL_KEYS}
    notes = {
        name: f"default: the run's, else train's {paper[name]}"
        for name in EVAL_KEYS
        if name not in ("model", "task")
    }
    add_setting_flags(parser, specs, notes)
    parser.set_defaults(func=_handle_evaluate)


def _handle_evaluate(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from jola_ray import settings as setting_checks
    from jola_ray.data import get_task, load_splits
    from jola_ray.errors import ConfigError
    from jola_ray.evaluation import evaluate
    from jola_ray.evaluation.settings import EVAL_KEYS, evaluation_settings
    from jola_ray.methods.registry import load_saved
    from jola_ray.train.config import ModelConfig, leaf_fields, profile_defaults
    from jola_ray.train.loading import load_model_and_tokenizer

    flags = {k: getattr(args, k) for k in EVAL_KEYS if hasattr(args, k)}
    if args.size is not None:
        flags[f"{args.split}_size"] = args.size
    chosen = evaluation_settings(flags, args.edit, profile_defaults("paper"))
    # converted and checked by the same per-setting metadata train uses
    leaves = leaf_fields()
    specs = {k: leaves[k][1] for k in chosen.values}
    values, problems = setting_checks.check_fields(specs, chosen.values)
    if problems:
        raise ConfigError(
            f"evaluate: {len(problems)} invalid field(s):\n  " + "\n  ".join(problems), problems
        )
    print(chosen.describe(), file=sys.stderr)
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    cfg = ModelConfig(**{k: v for k, v in values.items() if k in model_keys}, device=args.device)
    task = get_task(values["task"])
    splits = load_splits(
        task,
        data_dir=values["data_dir"],
        seed=values["seed"],
        train_size=values["train_size"],
        dev_size=values["dev_size"],
        test_size=values["test_size"],
        need={"test"} if args.split == "test" else {"train", "dev", "test"},
    )
    examples = getattr(splits, args.split)
    model, tokenizer, _ = load_model_and_tokenizer(cfg)
    if args.edit:
        load_saved(model, args.edit)
    result = evaluate(
        model,
        tokenizer,
        task,
        examples,
        mode=values["decoding"],
        batch_size=values["eval_batch_size"],
        num_beams=values["num_beams"],
        max_new_tokens=values["max_new_tokens"],
    )
    metrics = {f"{args.split}_{k}": v for k, v in result.metrics.items()}
    short = splits.short().get(args.split)
    record = {"task": task.name, "examples": len(examples), **metrics}
    if short:
        record["short_split"] = f"{args.split} {short[1]} of {short[0]} asked"
    print(json.dumps(record))
    if args.output_dir:
        from jola_ray.evaluation.results import write_results

        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_results(out, {**record, "settings": values}, result.predictions)
    return 0

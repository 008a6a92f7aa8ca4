"""``jola-ray train`` and ``jola-ray evaluate``.

``train``: one run from CLI flags and/or a YAML file (flags override the file).
``evaluate``: a base model, with or without a saved edit, scored on one split of a task.

Every ``RunConfig`` leaf is a flag (``lr`` -> ``--lr``, ``output_dir`` -> ``--output-dir``);
values are parsed and validated by ``RunConfig.from_dict``, which lists every bad field at once.
Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from jola_ray.train.config import leaf_fields, profile_defaults

    parser = subparsers.add_parser(
        "train",
        help="fine-tune one model on one task with JoLA, LoFiT or zero-shot",
        description=(
            "One run: load the model, apply the edit, train with TRL, evaluate the best epoch's "
            "edit on the test split. Writes metrics.json, predictions.jsonl, gates.csv, "
            "edit.safetensors and config.yaml into --output-dir."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", metavar="YAML", help="run config file (flat or nested keys)")
    parser.add_argument(
        "--resume-from", metavar="DIR", help="continue from an epoch checkpoint directory"
    )
    paper = profile_defaults("paper")
    for name, (_, f) in leaf_fields().items():
        help_text = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        if choices:
            help_text += f" [{'|'.join(choices)}]"
        help_text += f" (paper default: {paper[name]})"
        help_text = help_text.replace("%", "%%")  # argparse formats help with %
        # --lr-decay-lambda and --lr_decay_lambda both work: the flag is the YAML key.
        flags = ["--" + name.replace("_", "-")]
        if "_" in name:
            flags.append("--" + name)
        if str(f.type) == "bool":
            parser.add_argument(
                *flags,
                dest=name,
                nargs="?",
                const="true",
                default=argparse.SUPPRESS,
                metavar="BOOL",
                help=help_text,
            )
        else:
            parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS, help=help_text)
    parser.set_defaults(func=_handle)
    _register_evaluate(subparsers)


def _register_evaluate(subparsers) -> None:
    from jola_ray.train.config import leaf_fields, profile_defaults

    parser = subparsers.add_parser(
        "evaluate",
        help="score a model (optionally with a saved edit) on a task split",
        description=(
            "Load the model, apply a saved edit (edit.safetensors from a run) if given, and "
            "evaluate it on one split of a task with deterministic gates. Prints the metrics; "
            "with --output-dir also writes metrics.json and predictions.jsonl. The evaluation "
            "settings are train's, with train's defaults; when --edit points into a run "
            "folder, every setting not given as a flag is the run's own (its config.yaml)."
        ),
    )
    parser.add_argument("--edit", help="an edit.safetensors written by a run (default: none)")
    parser.add_argument("--split", default="test", choices=("train", "dev", "test"))
    parser.add_argument(
        "--size", type=int, help="examples of the split (the split's --<split>-size)"
    )
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    from jola_ray.evaluation.settings import EVAL_KEYS

    paper = profile_defaults("paper")
    leaves = leaf_fields()
    for name in EVAL_KEYS:
        f = leaves[name][1]
        help_text = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        if choices:
            help_text += f" [{'|'.join(choices)}]"
        if name not in ("model", "task"):
            help_text += f" (default: the run's, else train's {paper[name]})"
        flags = ["--" + name.replace("_", "-")] + (["--" + name] if "_" in name else [])
        parser.add_argument(
            *flags, dest=name, default=argparse.SUPPRESS, help=help_text.replace("%", "%%")
        )
    parser.set_defaults(func=_handle_evaluate)


def _handle_evaluate(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from jola_ray.data import get_task, load_splits
    from jola_ray.editing import load_edit
    from jola_ray.evaluation import evaluate
    from jola_ray.evaluation.settings import EVAL_KEYS, evaluation_settings
    from jola_ray.train.config import RunConfig, profile_defaults
    from jola_ray.train.loading import load_model_and_tokenizer

    flags = {k: getattr(args, k) for k in EVAL_KEYS if hasattr(args, k)}
    if args.size is not None:
        flags[f"{args.split}_size"] = args.size
    settings = evaluation_settings(flags, args.edit, profile_defaults("paper"))
    # validated (and typed) as train validates them; method zero_shot: nothing to train
    cfg = RunConfig.from_dict(
        {**settings.values, "device": args.device, "method": "zero_shot"}, source="evaluate"
    )
    print(settings.describe(), file=sys.stderr)
    task = get_task(cfg.task)
    splits = load_splits(
        task,
        data_dir=cfg.data_dir,
        seed=cfg.seed,
        train_size=cfg.train_size,
        dev_size=cfg.dev_size,
        test_size=cfg.test_size,
        need={"test"} if args.split == "test" else {"train", "dev", "test"},
    )
    examples = getattr(splits, args.split)
    model, tokenizer, _ = load_model_and_tokenizer(cfg)
    if args.edit:
        load_edit(model, args.edit)
    result = evaluate(
        model,
        tokenizer,
        task,
        examples,
        mode=cfg.decoding,
        batch_size=cfg.eval_batch_size,
        num_beams=cfg.num_beams,
        max_new_tokens=cfg.max_new_tokens,
    )
    metrics = {f"{args.split}_{k}": v for k, v in result.metrics.items()}
    short = splits.short().get(args.split)
    record = {"task": task.name, "examples": len(examples), **metrics}
    if short:
        record["short_split"] = f"{args.split} {short[1]} of {short[0]} asked"
    print(json.dumps(record))
    if args.output_dir:
        from jola_ray.train.pipeline import write_results

        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_results(out, {**record, "settings": settings.values}, result.predictions)
    return 0


def _handle(args: argparse.Namespace) -> int:
    import json

    from jola_ray.train.config import RunConfig, leaf_fields

    overrides = {k: v for k, v in vars(args).items() if k in leaf_fields()}
    if args.config:
        cfg = RunConfig.from_yaml(args.config, overrides)
    else:
        cfg = RunConfig.from_dict(overrides, source="command line")
    from jola_ray.train.pipeline import run

    def report(metrics: dict, checkpoint_dir: str) -> None:
        keys = ("epoch", "train_loss", "dev_loss", "dev_score", "test_score", "run_status")
        shown = {k: _short(metrics[k]) for k in keys if k in metrics}
        print(json.dumps(shown), flush=True)

    metrics = run(cfg, report=report, resume_from=args.resume_from)
    print(f"wrote {cfg.output_dir}/metrics.json (test_score {metrics['test_score']:.2f})")
    return 0


def _short(value):
    return round(value, 4) if isinstance(value, float) else value

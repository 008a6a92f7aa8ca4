"""``jola-ray train``: one run from CLI flags and/or a YAML file (flags override the file).

Every ``RunConfig`` setting is a flag spelled as its one name: ``lr`` -> ``--lr``,
``output_dir`` -> ``--output-dir`` (or ``--output_dir``), a method's ``jola.temperature`` ->
``--jola.temperature`` (``--jola.gate_lambda`` or ``--jola.gate-lambda``). Values are parsed
and validated by ``RunConfig.from_dict``, which lists every bad field at once.
Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from jola_ray.train.config import leaf_fields, profile_defaults

    parser = subparsers.add_parser(
        "train",
        help="fine-tune one model on one task with one method (--method)",
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
    from jola_ray.settings import add_setting_flags

    paper = profile_defaults("paper")
    specs = {name: f for name, (_, f) in leaf_fields().items()}
    add_setting_flags(parser, specs, {n: f"paper default: {v}" for n, v in paper.items()})
    parser.set_defaults(func=_handle)


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

"""``jola-ray tasks`` and ``jola-ray data show TASK``: list the registry, inspect a task's data."""

from __future__ import annotations

import argparse

from jola_ray.data.task import DEFAULT_SEED


def register(subparsers) -> None:
    tasks = subparsers.add_parser("tasks", help="list the registered tasks")
    tasks.set_defaults(func=_tasks)

    data = subparsers.add_parser("data", help="inspect a task's data")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    show = data_sub.add_parser("show", help="print one formatted example and the split sizes")
    show.add_argument("task", help="task name (see `jola-ray tasks`)")
    show.add_argument("--data-dir", default=None, help="local files instead of the hub")
    show.add_argument("--seed", type=int, default=DEFAULT_SEED, help="sampling seed")
    show.add_argument("--train-size", type=int, default=None, help="train examples to sample")
    show.add_argument("--dev-size", type=int, default=None, help="dev examples to sample")
    show.add_argument("--test-size", type=int, default=None, help="test examples (default all)")
    show.add_argument("--index", type=int, default=0, help="which train example to print")
    show.set_defaults(func=_show)
    data.set_defaults(func=lambda args: _usage(data))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def task_line(task) -> str:
    """One listing line: name, benchmark, primary metric (all metrics), label set."""
    metrics = task.primary_metric
    if len(task.metrics) > 1:
        metrics += f" ({','.join(task.metrics)})"
    labels = "/".join(task.labels) if task.labels else f"({task.kind})"
    return f"{task.name:<27} {task.benchmark:<12} {metrics:<40} {labels}"


def _tasks(args) -> int:
    from jola_ray.data.registry import list_tasks

    print(f"{'task':<27} {'benchmark':<12} {'metric':<40} labels")
    for task in list_tasks():
        print(task_line(task))
    return 0


def _show(args) -> int:
    from jola_ray.data.loading import load_splits
    from jola_ray.data.registry import get_task
    from jola_ray.errors import DataError

    task = get_task(args.task)
    splits = load_splits(
        task,
        data_dir=args.data_dir,
        seed=args.seed,
        train_size=args.train_size,
        dev_size=args.dev_size,
        test_size=args.test_size,
        need={"test"},  # a test-only folder is shown too (it can be evaluated)
    )
    shown, split = (splits.train, "train") if splits.train else (splits.test, "test")
    if not 0 <= args.index < len(shown):
        raise DataError(f"--index {args.index} is outside the {len(shown)} {split} examples")
    example = shown[args.index]
    print(f"task: {task.name} ({task.benchmark}, {task.kind}, training {task.training})")
    print(f"metrics: {', '.join(task.metrics)} (primary {task.primary_metric})")
    if task.labels:
        print(f"labels: {'/'.join(task.labels)}   extraction regex: {task.label_pattern}")
    sizes = splits.sizes()
    print(f"seed {args.seed}: train {sizes['train']}, dev {sizes['dev']}, test {sizes['test']}")
    if not splits.train:
        print("test only: no train file here; evaluate works, train does not")
    if splits.short():
        print(f"WARNING: fewer examples than asked: {splits.short_note()}")
    print(f"\n--- {split} example {example.id} (prompt) ---")
    print(example.prompt, end="" if example.prompt.endswith("\n") else "\n")
    print("--- answer ---")
    print(example.answer)
    if example.chosen is not None:
        print(f"--- DPO pair ---\nchosen:   {example.chosen}\nrejected: {example.rejected}")
    if example.choices:
        print(f"--- choices (correct: {list(example.correct or ())}, best: {example.best}) ---")
        for i, choice in enumerate(example.choices):
            print(f"  [{i}] {choice}")
    if example.options:
        print(f"--- options this row lists ---\n  {'/'.join(example.options)}")
    if example.aliases:
        print("--- aliases / references ---\n  " + "\n  ".join(example.aliases))
    return 0

"""``load_splits``: pick a task's source (files, generated demo data, or the hub) and sample."""

from __future__ import annotations

from pathlib import Path

from jola_ray.data.demo import demo_pools
from jola_ray.data.hub import convert_hub_rows, fetch_hub_rows
from jola_ray.data.local import custom_pools, local_pools
from jola_ray.data.registry import get_task
from jola_ray.data.sampling import ALL_SPLITS, Pools, sample_splits
from jola_ray.data.task import DEFAULT_SEED, Splits, Task


def load_pools(
    task: Task, data_dir: str | Path | None = None, need: frozenset[str] = ALL_SPLITS
) -> Pools:
    """Every example the task's source offers: files under ``data_dir`` when given, the
    generated pools of a demo task, a registered custom task's own path, else the hub.
    ``need``: the splits the caller reads (a test-only folder serves ``{"test"}``)."""
    loader = task.extra["loader"]
    if loader == "demo":
        return demo_pools(task.name)
    if data_dir is not None:
        return local_pools(task, data_dir, need)
    if loader == "custom":
        return custom_pools(task, task.extra.get("path"))
    rows, source = fetch_hub_rows(task)
    return convert_hub_rows(task, rows, source)


def load_splits(
    task: Task | str,
    data_dir: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    train_size: int | None = None,
    dev_size: int | None = None,
    test_size: int | None = None,
    need: frozenset[str] | set[str] = ALL_SPLITS,
) -> Splits:
    """The train/dev/test examples of ``task`` for sampling ``seed``.

    A size left None takes the task's default (``task.split_sizes``: 200/200/whole test split
    for the JoLA benchmarks, LoFiT's sizes for its tasks, small sizes for demo tasks). Sampling
    rules: ``jola_ray.data.sampling``. ``task`` may also be given by name. ``need`` names the
    splits the caller reads: ``{"test"}`` lets a folder with only ``test.json`` be evaluated.
    """
    need = frozenset(need)
    if isinstance(task, str):
        task = get_task(task)
    default_train, default_dev, default_test = task.split_sizes
    return sample_splits(
        load_pools(task, data_dir, need),
        seed,
        default_train if train_size is None else train_size,
        default_dev if dev_size is None else dev_size,
        default_test if test_size is None else test_size,
        need,
    )

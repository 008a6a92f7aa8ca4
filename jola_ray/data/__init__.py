"""Tasks and their data: the registry, sources (hub or local files), prompt formats and seeded
low-resource sampling. See docs/data.md."""

from jola_ray.data.loading import load_pools, load_splits
from jola_ray.data.registry import get_task, list_tasks, register_custom_task, unregister_task
from jola_ray.data.task import PROMPT_TEMPLATE, RESPONSE_MARKER, Example, Splits, Task, build_prompt

__all__ = [
    "PROMPT_TEMPLATE",
    "RESPONSE_MARKER",
    "Example",
    "Splits",
    "Task",
    "build_prompt",
    "get_task",
    "list_tasks",
    "load_pools",
    "load_splits",
    "register_custom_task",
    "unregister_task",
]

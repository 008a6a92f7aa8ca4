"""Task name -> paper benchmark, column label and column order.

A small copy of the registry's naming, kept here because analysis must not import jola_ray.
Unknown names (demo_* tasks, custom tasks) fall into the "other" benchmark under their own name.
"""

from __future__ import annotations

from dataclasses import dataclass

from jola_ray.methods import catalog  # torch-free: names, display names, row order

COMMONSENSE = (
    ("arc_c", "ARC-c"),
    ("arc_e", "ARC-e"),
    ("boolq", "BoolQ"),
    ("hellaswag", "HellaSwag"),
    ("obqa", "OBQA"),
    ("piqa", "PIQA"),
    ("siqa", "SIQA"),
    ("winogrande", "WinoGrande"),
)
MMLU_PRO_DOMAINS = (
    ("biology", "Biology"),
    ("business", "Business"),
    ("chemistry", "Chemistry"),
    ("computer_science", "CS"),
    ("economics", "Economics"),
    ("engineering", "Engineering"),
    ("health", "Health"),
    ("history", "History"),
    ("law", "Law"),
    ("math", "Math"),
    ("other", "Other"),
    ("philosophy", "Philosophy"),
    ("physics", "Physics"),
    ("psychology", "Psychology"),
)
GEM = (
    ("common_gen", "CommonGen"),
    ("e2e_nlg", "E2E"),
    ("web_nlg", "WebNLG"),
    ("xsum", "XSum"),
)
LOFIT = (
    ("truthfulqa", "TruthfulQA"),
    ("clutrr", "CLUTRR"),
    ("mquake", "MQuAKE"),
)

# Benchmarks in the order the report shows them, with their table titles.
BENCHMARK_TITLES = {
    "commonsense": "Commonsense reasoning",
    "mmlu_pro": "MMLU-Pro",
    "gem": "Natural language generation (GEM)",
    "lofit": "LoFiT tasks",  # the benchmark of LoFiT's own tasks (not the method)
    "other": "Other tasks",
}

# Metric key (the part after test_/dev_) -> column label; unknown keys keep their own name.
METRIC_LABELS = {
    "score": "Score",
    "accuracy": "Acc",
    "exact_match": "EM",
    "bleu": "BLEU",
    "rougeL": "ROUGE-L",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "chrf": "chrF",
    "meteor": "METEOR",
    "bertscore": "BERTScore",
    "nist": "NIST",
    "cider": "CIDEr",
    "mc1": "MC1",
    "mc2": "MC2",
}
# GEM columns: these metrics first, in this order, then any other metric present (sorted).
GEM_METRIC_ORDER = ("bleu", "rougeL")


@dataclass(frozen=True)
class TaskInfo:
    """Where a task's results go: ``benchmark`` table, ``label`` column, ``order`` within it."""

    benchmark: str
    label: str
    order: int


def task_info(task: str) -> TaskInfo:
    """Classify a task name (TruthfulQA may carry a fold suffix: ``truthfulqa_fold1``)."""
    for i, (name, label) in enumerate(COMMONSENSE):
        if task == name:
            return TaskInfo("commonsense", label, i)
    if task.startswith("mmlu_pro_"):
        domain = task[len("mmlu_pro_") :]
        for i, (name, label) in enumerate(MMLU_PRO_DOMAINS):
            if domain == name:
                return TaskInfo("mmlu_pro", label, i)
        return TaskInfo("mmlu_pro", domain.replace("_", " ").title(), len(MMLU_PRO_DOMAINS))
    for i, (name, label) in enumerate(GEM):
        if task == name:
            return TaskInfo("gem", label, i)
    for i, (name, label) in enumerate(LOFIT):
        if task == name or task.startswith((name + "_", name + "-")):
            return TaskInfo("lofit", label, i)
    return TaskInfo("other", task, 1000)


def metric_label(metric: str) -> str:
    """Column label of a metric key such as ``rougeL`` (``ROUGE-L``)."""
    return METRIC_LABELS.get(metric, metric)


def is_untuned(method: str) -> bool:
    """A method without configurations (zero-shot: the untouched model) trains nothing."""
    return not catalog.is_tuned(str(method))


def method_label(method: str) -> str:
    """Row label of a method name (``jola`` -> ``JoLA``); unknown names stay as they are."""
    return catalog.display_name(str(method))


def method_order(methods) -> list:
    """The paper's row order (Zero-shot, LoRA, BitFit, RED, RepE, ReFT, LoFiT, JoLA);
    unknown methods after them, by name."""
    return catalog.row_order(methods)

"""``evaluate``: score a model on a task's examples, with per-example predictions.

Classification tasks are scored by generation and label extraction (``"greedy"`` or
``"beam"``, as the paper measures) or by label log-likelihood (``"label_scoring"``; a task
without a closed label set falls back to greedy decoding, with a logged warning, so one
sweep-wide decoding setting works for every task);
generation tasks by exact match and, for GEM tasks, BLEU/ROUGE/chrF/METEOR(/BERTScore);
TruthfulQA (``kind == "multiple_choice"``) always by answer log-likelihood (MC1/MC2).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from jola_ray.data.task import Example, Task
from jola_ray.errors import ConfigError, DataError
from jola_ray.evaluation import metrics as M
from jola_ray.evaluation.extraction import extract_answer, label_regex
from jola_ray.evaluation.generation import generate_continuations
from jola_ray.evaluation.scoring import score_choices, score_labels
from jola_ray.evaluation.truthfulqa import iti_prompt, question_of

log = logging.getLogger(__name__)

MODES = ("greedy", "beam", "label_scoring")
MC_PROMPTS = ("iti", "example")
KNOWN_METRICS = ("accuracy", "exact_match", "mc1", "mc2", *M.GEM_METRICS)
DEFAULT_MAX_NEW_TOKENS = {"classification": 16, "generation": 64}


@dataclass
class EvalResult:
    """Aggregate ``metrics`` (percent) and one dict per example in ``predictions``.

    Each prediction has ``id``, ``prediction`` (None when no label was found), ``gold``,
    ``correct``; generated modes add ``output`` (the raw continuation), scoring modes
    ``scores`` (log-likelihood per label or choice), TruthfulQA ``mc2`` per question.
    """

    metrics: dict[str, float]
    predictions: list[dict] = field(default_factory=list)


def evaluate(
    model,
    tokenizer,
    task: Task,
    examples: Sequence[Example],
    mode: str = "greedy",
    batch_size: int = 64,
    num_beams: int = 4,
    max_new_tokens: int | None = None,
    *,
    bertscore: bool = False,
    mc_prompt: str = "iti",
) -> EvalResult:
    """Evaluate ``model`` on ``examples`` of ``task``; see the module docstring for the modes.

    The model runs in eval mode (deterministic gates of an edit) and every module gets its
    previous training flag back afterwards. ``max_new_tokens`` defaults to ``task.max_new_tokens``.
    ``batch_size`` counts prompts per generate call, or (prompt, candidate) rows per forward
    pass when scoring. ``bertscore=True`` adds BERTScore to GEM metrics (downloads its model).
    ``mc_prompt`` picks the TruthfulQA scoring prompt: ``"iti"`` (ITI's instruction and
    six-shot primer around the example's question, as LoFiT reports MC1/MC2) or
    ``"example"`` (the example's own prompt, the one the edit was trained on).
    """
    (result,) = evaluate_copies(
        model,
        tokenizer,
        task,
        examples,
        1,
        mode,
        batch_size,
        num_beams,
        max_new_tokens,
        bertscore=bertscore,
        mc_prompt=mc_prompt,
    )
    return result


def evaluate_copies(
    model,
    tokenizer,
    task: Task,
    examples: Sequence[Example],
    copies: int,
    mode: str = "greedy",
    batch_size: int = 64,
    num_beams: int = 4,
    max_new_tokens: int | None = None,
    *,
    bertscore: bool = False,
    mc_prompt: str = "iti",
) -> list[EvalResult]:
    """``evaluate`` of ``copies`` configurations at once: a trial pack's live members
    (``jola_ray.editing.pack``), each batch run ``copies`` times in one forward, copy ``m``
    edited by the ``m``-th live member; one result per copy, each what ``evaluate`` gives with
    that member attached alone (up to float rounding). ``batch_size`` counts one copy's rows.
    """
    _check_args(task, examples, mode, batch_size, num_beams, mc_prompt)
    with eval_mode(model):
        if task.kind == "multiple_choice":
            return _evaluate_multiple_choice(
                model, tokenizer, task, examples, batch_size, mc_prompt, copies
            )
        if mode == "label_scoring" and task.labels:
            return _evaluate_label_scoring(model, tokenizer, task, examples, batch_size, copies)
        if mode == "label_scoring":
            log.warning(
                "task %r has no closed label set: label_scoring does not apply, decoding greedily",
                task.name,
            )
            mode = "greedy"
        new_tokens = max_new_tokens or task.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[task.kind]
        outputs = _per_copy(
            generate_continuations,
            copies,
            model,
            tokenizer,
            [e.prompt for e in examples],
            mode=mode,
            batch_size=batch_size,
            num_beams=num_beams,
            max_new_tokens=new_tokens,
            label_regex=label_regex(task) if task.kind == "classification" else None,
        )
        return [_score_generations(task, examples, out, bertscore) for out in outputs]


def _per_copy(fn, copies: int, *args, **kwargs) -> list:
    """``fn``'s result for each copy: a list of ``copies`` results (``copies=`` passed only
    when above one, so a single evaluation calls the plain function)."""
    if copies > 1:
        return fn(*args, copies=copies, **kwargs)
    return [fn(*args, **kwargs)]


@contextlib.contextmanager
def eval_mode(model) -> Iterator[None]:
    """``model`` in eval mode inside the block (an edit's deterministic gates); every module
    gets its own previous training flag back afterwards (not one ``model.train(flag)``, which
    would also flip modules that were deliberately left in another mode)."""
    flags = [(m, m.training) for m in model.modules()]  # restored exactly, module by module
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _check_args(
    task: Task, examples, mode: str, batch_size: int, num_beams: int, mc_prompt: str
) -> None:
    problems = []
    if mc_prompt not in MC_PROMPTS:
        problems.append(f"mc_prompt={mc_prompt!r} (expected one of {', '.join(MC_PROMPTS)})")
    if mode not in MODES:
        problems.append(f"mode={mode!r} (expected one of {', '.join(MODES)})")
    if batch_size < 1:
        problems.append(f"batch_size={batch_size} (must be >= 1)")
    if mode == "beam" and num_beams < 1:
        problems.append(f"num_beams={num_beams} (must be >= 1)")
    unknown = [m for m in task.metrics if m not in KNOWN_METRICS]
    if unknown:
        problems.append(f"task {task.name!r} metrics {unknown} (known: {', '.join(KNOWN_METRICS)})")
    if problems:
        raise ConfigError("evaluation: invalid " + "; ".join(problems))
    if not examples:
        raise DataError(f"evaluation: no examples to evaluate for task {task.name!r}")
    if task.kind == "multiple_choice":
        bad = [e.id for e in examples if not _valid_choices(e)]
        if bad:
            raise DataError(
                f"task {task.name!r}: examples whose choices/correct/best do not fit "
                f"(need correct and incorrect choices, indices in range): {bad[:5]}"
            )


def _valid_choices(example: Example) -> bool:
    """Choices present, correct indices (and best) inside them, at least one incorrect choice."""
    n = len(example.choices or ())
    indices = [*(example.correct or ()), *(() if example.best is None else (example.best,))]
    return (
        bool(example.correct) and all(0 <= i < n for i in indices) and len(set(example.correct)) < n
    )


def _evaluate_label_scoring(
    model, tokenizer, task, examples, batch_size, copies: int
) -> list[EvalResult]:
    """Each example scored over its own options (``Example.options``), else the task's labels."""
    per_example = [list(e.labels_of(task)) for e in examples]
    prompts = [e.prompt for e in examples]
    tables = _per_copy(score_labels, copies, model, tokenizer, prompts, per_example, batch_size)
    return [_label_result(task, examples, per_example, scores) for scores in tables]


def _label_result(task, examples, per_example, scores) -> EvalResult:
    predictions = []
    for example, labels, row in zip(examples, per_example, scores, strict=True):
        best = labels[max(range(len(labels)), key=row.__getitem__)]
        predictions.append(
            {
                "id": example.id,
                "prediction": best,
                "gold": example.answer,
                "correct": best == example.answer,
                "scores": dict(zip(labels, row, strict=True)),
            }
        )
    golds = [e.answer for e in examples]
    acc = M.accuracy([p["prediction"] for p in predictions], golds)
    return EvalResult({"accuracy": acc}, predictions)


def _references(example: Example) -> list[str]:
    """Accepted answers: the gold answer, then its aliases (MQuAKE) or extra GEM references."""
    return list(dict.fromkeys([example.answer, *example.aliases]))


def _score_generations(task, examples, outputs, bertscore: bool) -> EvalResult:
    predictions = []
    for example, output in zip(examples, outputs, strict=True):
        pred = extract_answer(task, output, example.options)
        if task.kind == "classification":
            correct = pred is not None and pred == example.answer
        else:
            correct = M.exact_match_one(pred, _references(example))
        predictions.append(
            {
                "id": example.id,
                "prediction": pred,
                "gold": example.answer,
                "correct": correct,
                "output": output,
            }
        )
    preds = [p["prediction"] for p in predictions]
    wanted = set(task.metrics) | {task.primary_metric}
    result: dict[str, float] = {}
    if task.kind == "classification":
        result["accuracy"] = M.accuracy(preds, [e.answer for e in examples])
    else:
        result["exact_match"] = M.exact_match(preds, [_references(e) for e in examples])
        if wanted & set(M.GEM_METRICS):
            texts = [p if p is not None else "" for p in preds]
            refs = [_references(e) for e in examples]
            result.update(
                M.gem_metrics(texts, refs, with_bertscore=bertscore or "bertscore" in wanted)
            )
    return EvalResult(result, predictions)


def _evaluate_multiple_choice(
    model, tokenizer, task, examples, batch_size, mc_prompt: str, copies: int
) -> list[EvalResult]:
    if mc_prompt == "iti":
        prompts = [iti_prompt(question_of(e)) for e in examples]
    else:
        prompts = [e.prompt for e in examples]
    choices = [e.choices for e in examples]
    tables = _per_copy(score_choices, copies, model, tokenizer, prompts, choices, batch_size)
    return [_multiple_choice_result(examples, scores) for scores in tables]


def _multiple_choice_result(examples, scores) -> EvalResult:
    predictions, mc1s, mc2s = [], [], []
    for example, row in zip(examples, scores, strict=True):
        best = example.correct[0] if example.best is None else example.best
        mc1 = M.mc1_one(row, example.correct, best)
        mc2 = M.mc2_one(row, example.correct)
        mc1s.append(mc1)
        mc2s.append(mc2)
        top = max(range(len(row)), key=row.__getitem__)
        predictions.append(
            {
                "id": example.id,
                "prediction": example.choices[top],
                "gold": example.choices[best],
                "correct": mc1 == 1.0,
                "scores": list(row),
                "mc2": mc2,
            }
        )
    n = len(examples)
    return EvalResult({"mc1": 100.0 * sum(mc1s) / n, "mc2": 100.0 * sum(mc2s) / n}, predictions)

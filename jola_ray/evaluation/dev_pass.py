"""One dev pass per epoch: the dev score and, from the same pass where it is free, the dev loss.

``evaluate_with_loss`` runs ``evaluate`` once and adds the dev loss (mean ``-log p`` per answer
token, what the training loss measures):

* label scoring already computes every label's log-likelihood after each prompt, so the gold
  label's score gives the loss without another forward (``loss_from_label_scores``);
* otherwise (generation), and only when ``need_loss``, one batched teacher-forced forward over
  the same prompts followed by their answers (``answer_loss.dev_loss``).

Preference tasks (TruthfulQA, trained with DPO) have no answer-token loss here: their dev loss
is the DPO loss, which the trainer computes.
"""

from __future__ import annotations

from collections.abc import Sequence

from jola_ray.data.task import Example, Task
from jola_ray.evaluation import answer_loss
from jola_ray.evaluation.api import EvalResult, eval_mode, evaluate


def evaluate_with_loss(
    model,
    tokenizer,
    task: Task,
    examples: Sequence[Example],
    *,
    mode: str = "greedy",
    batch_size: int = 64,
    num_beams: int = 4,
    max_new_tokens: int | None = None,
    need_loss: bool = False,
    append_eos: bool = False,
    max_length: int | None = None,
) -> tuple[EvalResult, float | None]:
    """``(evaluate's result, dev loss or None)``.

    The loss is the one training optimises on these examples (answers tokenized as training
    tokenizes them, EOS appended when ``append_eos``, prompts cut to ``max_length`` as training cuts them): returned
    whenever label scoring gives it for free, and computed by a teacher-forced pass when
    ``need_loss`` and nothing gave it; None otherwise and for multiple-choice tasks.
    """
    result = evaluate(
        model,
        tokenizer,
        task,
        examples,
        mode=mode,
        batch_size=batch_size,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
    )
    loss = dev_loss(
        result,
        model,
        tokenizer,
        task,
        examples,
        mode=mode,
        batch_size=batch_size,
        need_loss=need_loss,
        append_eos=append_eos,
        max_length=max_length,
    )
    return result, loss


def dev_loss(
    result: EvalResult,
    model,
    tokenizer,
    task: Task,
    examples: Sequence[Example],
    *,
    mode: str,
    batch_size: int,
    need_loss: bool,
    append_eos: bool = False,
    max_length: int | None = None,
) -> float | None:
    """The dev loss of the evaluation ``result`` of ``examples``: free from label scoring
    where it holds it, else, when ``need_loss``, one teacher-forced pass of ``model`` as it is
    attached (a trial pack calls this with each configuration attached alone); None otherwise
    and for multiple-choice tasks."""
    loss = _free_loss(result, tokenizer, task, examples, mode, append_eos, max_length)
    if loss is None and need_loss and task.kind != "multiple_choice":
        loss = _teacher_forced_loss(model, tokenizer, examples, batch_size, append_eos, max_length)
    return loss


def _free_loss(
    result: EvalResult,
    tokenizer,
    task: Task,
    examples: Sequence[Example],
    mode: str,
    append_eos: bool = False,
    max_length: int | None = None,
) -> float | None:
    """The dev loss that ``result`` already holds: label scoring computed every label's
    log-likelihood, so the gold label's gives the loss (when training scores the same tokens:
    no EOS appended, no prompt cut); None otherwise."""
    if task.kind == "multiple_choice" or mode != "label_scoring" or not task.labels:
        return None
    if append_eos:
        return None
    prompts = [e.prompt for e in examples]
    answers = [e.answer for e in examples]
    fits = max_length is None or all(
        len(p) + len(a) <= max_length
        for p, a in answer_loss.answer_rows(tokenizer, prompts, answers)
    )
    if not fits:
        return None
    return answer_loss.loss_from_label_scores(tokenizer, result.predictions, answers)


def _teacher_forced_loss(
    model, tokenizer, examples: Sequence[Example], batch_size: int, append_eos, max_length
) -> float:
    """The dev loss from one teacher-forced forward per batch of prompt + answer rows, in eval
    mode (as ``evaluate`` runs: each module's flag restored)."""
    with eval_mode(model):
        return answer_loss.dev_loss(
            model,
            tokenizer,
            [e.prompt for e in examples],
            [e.answer for e in examples],
            batch_size,
            append_eos,
            max_length,
        )

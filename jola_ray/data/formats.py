"""Prompt formats: one source record (a hub row or a file row) -> one ``Example``.

Every function here is pure, so each task's conversion is tested on rows written in the
source's real schema without any hub access. ``where`` names the record ("file X, row 3" or
"hub allenai/ai2_arc split train, row 3") and goes into every ``DataError``.

Formats:

* commonsense: the LLM-Adapters instruction strings (the ones in its ``dataset/<task>/*.json``
  files, which JoLA trains on) with a bare label target (``answer2``, ``true``, ``solution1``,
  ``ending4``, ``option2``);
* MMLU-Pro: the same question/answer layout with options lettered A..J (JoLA's own layout is not
  public), target the letter;
* GEM: short instructions written for this project (JoLA's PromptSource templates are not in
  its repository), target the reference;
* LoFiT (TruthfulQA, CLUTRR, MQuAKE): LoFiT's prompt text, verbatim, as the instruction.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence

from jola_ray.data.task import Example, build_prompt
from jola_ray.errors import DataError

MMLU_LETTERS = "ABCDEFGHIJ"


def require(row: Mapping, name: str, where: str, kind: type | tuple[type, ...] = str):
    """``row[name]``, checked to be a non-empty value of ``kind``; else a ``DataError``."""
    if not isinstance(row, Mapping):
        raise DataError(f"{where}: expected an object with field {name!r}, got {row!r:.80}")
    if name not in row or row[name] is None:
        raise DataError(f"{where}: missing field {name!r}")
    value = row[name]
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in _as_tuple(kind):
        raise DataError(
            f"{where}: field {name!r} should be {_kind_name(kind)}, got {type(value).__name__} "
            f"{value!r:.80}"
        )
    if isinstance(value, str) and not value.strip():
        raise DataError(f"{where}: field {name!r} is empty")
    return value


def _as_tuple(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind) -> str:
    return " or ".join(k.__name__ for k in _as_tuple(kind))


def check_label(answer: str, labels: Sequence[str] | None, where: str, field: str = "answer"):
    """A ``DataError`` unless ``answer`` is one of ``labels`` (no check without a label set)."""
    if labels is not None and answer not in labels:
        raise DataError(
            f"{where}: field {field!r} is {answer!r}, not one of the labels {'/'.join(labels)}"
        )


_ANSWER_FORMAT = re.compile(r"Answer format:\s*(\S+)")


def listed_options(
    instruction: str, labels: Sequence[str] | None, answer: str, where: str
) -> tuple[str, ...] | None:
    """The options a row's instruction lists on its last ``Answer format: a/b/c`` line.

    None when the task has no label set, the line is missing, lists anything that is not a
    label (free text such as "Answer format: one word" says nothing about options), or lists
    every label of the task (the example is scored over all of them anyway). A gold answer the
    row does not list is a ``DataError``.
    """
    if not labels:
        return None
    found = _ANSWER_FORMAT.findall(instruction)
    if not found:
        return None
    options = tuple(o for o in found[-1].split("/") if o)
    if not options or any(o not in labels for o in options):
        return None
    if answer not in options:
        raise DataError(
            f"{where}: the answer {answer!r} is not among the options its 'Answer format:' line "
            f"lists ({'/'.join(options)})"
        )
    return None if set(options) == set(labels) else options


def _str_list(row: Mapping, name: str, where: str) -> list[str]:
    values = require(row, name, where, (list, tuple))
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise DataError(f"{where}: field {name!r} should be a non-empty list of non-empty strings")
    return list(values)


# --- commonsense (LLM-Adapters) -------------------------------------------------------------


def _choice_instruction(question: str, options: Sequence[str], word: str = "answer") -> str:
    """ARC/OBQA/SIQA: ``Answer1: .. Answer2: ..`` joined by one space, then the answer format."""
    listed = " ".join(f"{word.capitalize()}{i}: {text}" for i, text in enumerate(options, 1))
    formats = "/".join(f"{word}{i}" for i in range(1, len(options) + 1))
    return (
        f"Please choose the correct answer to the question: {question}\n\n{listed}\n\n"
        f"Answer format: {formats}"
    )


def _position(value: str, labels: Sequence[str], field: str, where: str) -> int:
    key = value.strip()
    stripped = [str(label).strip() for label in labels]
    if key not in stripped:
        raise DataError(f"{where}: field {field!r} is {value!r}, not one of {stripped}")
    return stripped.index(key)


def arc_like(row: Mapping, where: str, question_field: str = "question") -> tuple[str, str]:
    """ARC-c/ARC-e (``question``) and OBQA (``question_stem``) rows -> (instruction, answerK)."""
    question = require(row, question_field, where)
    choices = require(row, "choices", where, Mapping)
    texts = _str_list(choices, "text", f"{where}, field 'choices'")
    keys = require(choices, "label", f"{where}, field 'choices'", (list, tuple))
    if len(keys) != len(texts):
        raise DataError(f"{where}: field 'choices' has {len(texts)} texts but {len(keys)} labels")
    gold = _position(require(row, "answerKey", where), keys, "answerKey", where)
    return _choice_instruction(question, texts), f"answer{gold + 1}"


def siqa(row: Mapping, where: str) -> tuple[str, str]:
    """Social IQa: question = ``context question``; ``label`` is the string "1".."3"."""
    question = f"{require(row, 'context', where)} {require(row, 'question', where)}"
    options = [require(row, f"answer{k}", where) for k in "ABC"]
    gold = _position(str(require(row, "label", where, (str, int))), ["1", "2", "3"], "label", where)
    return _choice_instruction(question, options), f"answer{gold + 1}"


def boolq(row: Mapping, where: str) -> tuple[str, str]:
    """BoolQ: the question only (LLM-Adapters drops the passage); ``answer`` is a bool."""
    question = require(row, "question", where)
    answer = require(row, "answer", where, bool)
    instruction = (
        f"Please answer the following question with true or false, question: {question}\n\n"
        "Answer format: true/false"
    )
    return instruction, str(answer).lower()


def piqa(row: Mapping, where: str) -> tuple[str, str]:
    """PIQA: ``label`` int 0/1 (-1 on the unlabelled test split)."""
    goal, sol1, sol2 = (require(row, f, where) for f in ("goal", "sol1", "sol2"))
    label = require(row, "label", where, int)
    if label not in (0, 1):
        raise DataError(f"{where}: field 'label' is {label!r}, expected 0 or 1")
    instruction = (
        f"Please choose the correct solution to the question: {goal}\n\nSolution1: {sol1}\n\n"
        f"Solution2: {sol2}\n\nAnswer format: solution1/solution2"
    )
    return instruction, f"solution{label + 1}"


def winogrande(row: Mapping, where: str) -> tuple[str, str]:
    """WinoGrande: ``answer`` is the string "1"/"2" ("" on the unlabelled test split)."""
    sentence, opt1, opt2 = (require(row, f, where) for f in ("sentence", "option1", "option2"))
    gold = _position(require(row, "answer", where), ["1", "2"], "answer", where)
    instruction = (
        "Please choose the correct answer to fill in the blank to complete the given sentence: "
        f"{sentence}\n\nOption1: {opt1} Option2: {opt2} Answer format: option1/option2"
    )
    return instruction, f"option{gold + 1}"


def hellaswag(row: Mapping, where: str) -> tuple[str, str]:
    """HellaSwag: raw ``ctx`` (WikiHow markers kept, as LLM-Adapters does); ``label`` "0".."3"."""
    activity, ctx = require(row, "activity_label", where), require(row, "ctx", where)
    endings = _str_list(row, "endings", where)
    if len(endings) != 4:
        raise DataError(f"{where}: field 'endings' has {len(endings)} endings, expected 4")
    gold = _position(require(row, "label", where), ["0", "1", "2", "3"], "label", where)
    listed = " ".join(f"Ending{i}: {text}" for i, text in enumerate(endings, 1))
    instruction = (
        f"Please choose the correct ending to complete the given sentence: {activity}: {ctx}\n\n"
        f"{listed}\n\nAnswer format: ending1/ending2/ending3/ending4"
    )
    return instruction, f"ending{gold + 1}"


COMMONSENSE_CONVERTERS = {
    "arc_c": arc_like,
    "arc_e": arc_like,
    "obqa": lambda row, where: arc_like(row, where, "question_stem"),
    "siqa": siqa,
    "boolq": boolq,
    "piqa": piqa,
    "winogrande": winogrande,
    "hellaswag": hellaswag,
}


# --- MMLU-Pro -----------------------------------------------------------------------------


def mmlu_pro(row: Mapping, where: str) -> tuple[str, str]:
    """MMLU-Pro: options lettered A..; "N/A" options dropped and the gold letter re-computed."""
    question = require(row, "question", where)
    options = require(row, "options", where, (list, tuple))
    gold_index = require(row, "answer_index", where, int)
    if not 0 <= gold_index < len(options):
        raise DataError(f"{where}: field 'answer_index' {gold_index} is outside the options")
    if len(options) > len(MMLU_LETTERS):
        raise DataError(f"{where}: field 'options' has {len(options)} options, at most 10")
    kept = [i for i, text in enumerate(options) if str(text).strip() not in ("", "N/A")]
    if gold_index not in kept:
        raise DataError(f"{where}: the gold option (answer_index {gold_index}) is empty or N/A")
    letters = MMLU_LETTERS[: len(kept)]
    listed = " ".join(f"{letters[j]}: {options[i]}" for j, i in enumerate(kept))
    instruction = (
        f"Please choose the correct answer to the question: {question}\n\n{listed}\n\n"
        f"Answer format: {'/'.join(letters)}"
    )
    return instruction, letters[kept.index(gold_index)]


# --- GEM ------------------------------------------------------------------------------------


def _gem_instruction(task: str, row: Mapping, where: str) -> str:
    if task == "common_gen":
        concepts = _str_list(row, "concepts", where)
        return f"Write one sentence that uses all of these concepts: {', '.join(concepts)}"
    if task == "e2e_nlg":
        mr = require(row, "meaning_representation", where)
        return f"Describe this restaurant in fluent English: {mr}"
    if task == "web_nlg":
        triples = _str_list(row, "input", where)
        return (
            f"Verbalize these facts (subject | predicate | object) in English: {'; '.join(triples)}"
        )
    if task == "xsum":
        document = require(row, "document", where)
        return f"Summarize this article in one sentence: {document}"
    raise ValueError(f"not a GEM task: {task}")


def gem(task: str, row: Mapping, where: str) -> tuple[str, str, tuple[str, ...]]:
    """A GEM row -> (instruction, answer, references).

    Train rows carry one ``target``; validation/test rows carry every reference in
    ``references`` (``target`` is one of them). EdinburghNLP/xsum rows name it ``summary``.
    """
    instruction = _gem_instruction(task, row, where)
    refs = row.get("references") or []
    if not isinstance(refs, (list, tuple)):
        raise DataError(f"{where}: field 'references' should be a list, got {refs!r:.80}")
    refs = tuple(r.strip() for r in refs if isinstance(r, str) and r.strip())
    target_field = "summary" if "target" not in row and "summary" in row else "target"
    target = row.get(target_field)
    if isinstance(target, str) and target.strip():
        answer = target.strip()
    elif refs:
        answer = refs[0]
    else:
        raise DataError(f"{where}: missing field {target_field!r} (and no 'references')")
    if refs and answer not in refs:
        refs = (answer, *refs)
    return instruction, answer, refs


# --- LoFiT ----------------------------------------------------------------------------------


def _close(text: str) -> str:
    """TruthfulQA's scorer closes every answer with a period."""
    text = text.strip()
    return text if text.endswith(".") else text + "."


def truthfulqa(
    example_id: str,
    question: str,
    best: str,
    correct: Sequence[str],
    incorrect: Sequence[str],
    where: str,
) -> Example:
    """One TruthfulQA question: LoFiT's prompt, one DPO pair and the MC1/MC2 choice sets."""
    if not question.strip():
        raise DataError(f"{where}: field 'Question' is empty")
    if not best.strip():
        raise DataError(f"{where}: field 'Best Answer' is empty")
    incorrect = [a.strip() for a in incorrect if a.strip()]
    if not incorrect:
        raise DataError(f"{where}: field 'Incorrect Answers' has no answer")
    true_set = [_close(a) for a in correct if a.strip()]
    best_closed = _close(best)
    if best_closed not in true_set:
        true_set.insert(0, best_closed)
    true_set = list(dict.fromkeys(true_set))
    false_set = list(dict.fromkeys(_close(a) for a in incorrect))
    choices = tuple(true_set + false_set)
    return Example(
        id=example_id,
        prompt=build_prompt(f"Q: {question.strip()} A:"),
        answer=best.strip(),
        chosen=best.strip(),
        rejected=incorrect[0],
        choices=choices,
        correct=tuple(range(len(true_set))),
        best=true_set.index(best_closed),
    )


def split_answers(text: str) -> list[str]:
    """The TruthfulQA CSV's ``; ``-separated answer list."""
    return [a.strip() for a in text.split(";") if a.strip()]


def clutrr(row: Mapping, where: str) -> tuple[str, str]:
    """CLUTRR: LoFiT's prompt over ``clean_story`` without the ``[ ]`` around names."""
    story = require(row, "clean_story", where).replace("[", "").replace("]", "")
    query_text = require(row, "query", where)
    try:
        first, second = ast.literal_eval(query_text)
    except (ValueError, SyntaxError, TypeError) as err:
        raise DataError(f"{where}: field 'query' is not a pair of names: {query_text!r}") from err
    answer = require(row, "target_text", where).strip()
    instruction = (
        f'Read the following story about a family. "{story}" Assume the relations described in '
        "the story are all true. Based on relations between the fictional characters in the story "
        "(assume the relations are all true) and your commonsense knowledge about family "
        f"relationship, how is {second} related to {first}? Answer: {second} is {first} 's"
    )
    return instruction, answer


def mquake(row: Mapping, where: str) -> tuple[str, str, tuple[str, ...]]:
    """MQuAKE: LoFiT's prompt (the first rewrite and the first question); gold new_answer."""
    rewrites = require(row, "requested_rewrite", where, (list, tuple))
    if not rewrites:
        raise DataError(f"{where}: field 'requested_rewrite' is empty")
    rewrite_where = f"{where}, field 'requested_rewrite'[0]"
    template = require(rewrites[0], "prompt", rewrite_where)
    subject = require(rewrites[0], "subject", rewrite_where)
    target_new = require(
        require(rewrites[0], "target_new", rewrite_where, Mapping), "str", rewrite_where
    )
    question = _str_list(row, "questions", where)[0]
    answer = require(row, "new_answer", where).strip()
    aliases = row.get("new_answer_alias") or []
    if not isinstance(aliases, (list, tuple)):
        raise DataError(f"{where}: field 'new_answer_alias' should be a list")
    edit = template.replace("{}", subject) + " " + target_new
    instruction = f"Q: Imagine that {edit}. {question} A:"
    return instruction, answer, tuple(a for a in aliases if isinstance(a, str) and a)

"""Answer extraction: from a decoded continuation to the prediction that is scored.

The reference evaluation (JoLA ``evaluate.py``) takes the text after ``"### Response:"``,
strips it, keeps the first line only, and for classification takes the first match of the task's
label regex in that line. ``extract_answer`` does the same on either a full decoded sequence or
the generated continuation alone.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache

from jola_ray.data.task import RESPONSE_MARKER, Task, label_alternation


def first_response_line(text: str) -> str:
    """The first line of the response: text after the first response marker (if any), stripped.

    Leading blank lines are skipped (the reference strips before splitting), so a model that
    starts its answer with a newline is still read.
    """
    if RESPONSE_MARKER in text:
        text = text.split(RESPONSE_MARKER, 1)[1]
    text = text.strip()
    return text.split("\n", 1)[0].strip()


@lru_cache(maxsize=256)
def _label_regex(pattern: str | None, labels: tuple[str, ...] | None) -> re.Pattern | None:
    if pattern is not None:
        return re.compile(pattern)
    if labels:
        return re.compile(label_alternation(labels))
    return None


def label_regex(task: Task) -> re.Pattern | None:
    """The regex whose first match is a classification prediction (None for open generation)."""
    return _label_regex(task.label_pattern, task.labels)


def extract_answer(task: Task, text: str, options: tuple[str, ...] | None = None) -> str | None:
    """The prediction in ``text``: the first label match of the first response line.

    For a task without labels or label pattern (open generation) the whole first line is the
    prediction. Returns None when a classification line holds no label (scored as wrong). A
    label pattern with a capture group yields the group's text. ``options`` (an example's own
    label set, ``Example.options``) restricts the match to those labels: on a four-option ARC
    question "answer5" is not an answer, and a later "answer2" in the line is.
    """
    line = first_response_line(text)
    regex = _label_regex(None, options) if options else label_regex(task)
    if regex is None:
        return line
    match = regex.search(line)
    if match is None:
        return None
    if regex.groups and match.group(1) is not None:
        return match.group(1)
    return match.group(0)


_TRAILING_PUNCT = string.punctuation + " \t\n"


def normalize_answer(text: str) -> str:
    """Exact-match normalisation: strip, lower-case, drop trailing punctuation and whitespace."""
    return text.strip().lower().rstrip(_TRAILING_PUNCT)

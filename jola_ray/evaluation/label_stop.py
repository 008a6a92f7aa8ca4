"""Stop greedy decoding of a classification row once its prediction is decided.

A classification prediction is the first match of the task's label pattern in the first
response line (``extraction.extract_answer``). When the pattern is a plain alternation of
literal labels (every shipped task's, and ``label_alternation``'s), a match that starts at
``s`` in a line of which at least ``longest label`` characters from ``s`` on have been generated
can no longer change: every alternative at every position up to ``s`` has been tested against
complete text, so more tokens cannot produce an earlier or a different match. Decoding such a
row further only spends forwards (a closed-label task's answer is usually its first token).

Like ``generation.FirstLineComplete`` this reads only the first line: a later response marker
in the continuation is not considered (the greedy path already stops at the first line).
"""

from __future__ import annotations

import re

import torch
from transformers import StoppingCriteria

from jola_ray.data.task import RESPONSE_MARKER

_LITERAL = re.compile(r"(?:[^\\|()\[\]{}.*+?^$]|\\[^A-Za-z0-9])+")


def literal_alternatives(pattern: str | None) -> tuple[str, ...] | None:
    """The literal labels of a pattern ``lab1|lab2|...`` (regex-escaped parts allowed), or None
    when the pattern uses anything else (groups, classes, anchors, \\b, quantifiers)."""
    if not pattern:
        return None
    parts = pattern.split("|")
    if not all(_LITERAL.fullmatch(p) for p in parts):
        return None
    return tuple(re.sub(r"\\(.)", r"\1", p) for p in parts)


class LabelDecided(StoppingCriteria):
    """Per-row stop once the first response line holds a match that can no longer change.

    ``regex``: the task's label regex, a literal alternation whose longest label has
    ``longest`` characters. Greedy decoding only (rows keep their order within a call).
    """

    def __init__(self, tokenizer, prompt_width: int, regex: re.Pattern, longest: int):
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width
        self.regex = regex
        self.longest = longest
        self.done: torch.Tensor | None = None

    def _decided(self, text: str) -> bool:
        if RESPONSE_MARKER in text:
            return False  # extraction would read the text after the marker
        line, *rest = text.lstrip().split("\n", 1)
        match = self.regex.search(line)
        if match is None:
            return False
        return bool(rest) or len(line) - match.start() >= self.longest  # rest: line complete

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.BoolTensor:
        # input_ids: (rows, prompt_width + generated so far)
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        rows = [i for i in range(input_ids.shape[0]) if not self.done[i]]
        if rows:
            texts = self.tokenizer.batch_decode(
                input_ids[rows, self.prompt_width :], skip_special_tokens=True
            )
            for i, text in zip(rows, texts, strict=True):
                if self._decided(text):
                    self.done[i] = True
        return self.done.clone()

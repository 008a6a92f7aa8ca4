"""Batched decoding of prompts: greedy or beam search, left padding, KV cache.

Prompts are sorted by length before batching (less padding) and the outputs are returned in
the input order. Greedy decoding stops a row once its response has a complete first line (a
newline after some non-blank text): only the first line is ever scored, and greedy decoding of
a row does not depend on when other rows stop, so stopping early changes no prediction.
Beam search runs the full ``max_new_tokens`` as the reference does, because ending hypotheses
at a newline would change which beam wins.

Greedy decoding goes through ``greedy.GreedyDecoder``: each batch is prefilled once (its
prompts' shared prefix once), the first new token comes from that forward, and only rows not
done after it continue in ``generate``, the waiting rows of several batches together. The
text is what ``generate`` alone would give (the tests compare with it).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Sequence

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from jola_ray.evaluation.batching import (
    encode_prompts,
    left_pad,
    length_sorted_batches,
    model_device,
    pad_id,
)
from jola_ray.evaluation.greedy import GreedyDecoder
from jola_ray.evaluation.label_stop import LabelDecided, literal_alternatives

_FLAGS_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _token_flags(tokenizer) -> torch.Tensor:
    """Per token id: (has non-blank text, has a newline, has a newline after non-blank text).

    Shape (len(tokenizer) + 1, 3); the extra last row stands for ids beyond the tokenizer
    (a model's padded vocabulary): content, no newline. Special tokens decode to nothing.
    Cached per tokenizer (weakly, the tokenizer is not touched): decoding a 100k+ vocabulary
    takes a moment.
    """
    try:
        cached = _FLAGS_CACHE.get(tokenizer)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None and cached.shape[0] == len(tokenizer) + 1:
        return cached
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=True)
    rows = [(bool(t.strip()), "\n" in t, "\n" in t.lstrip()) for t in texts]
    flags = torch.tensor([*rows, (True, False, False)], dtype=torch.bool)
    with contextlib.suppress(TypeError):
        _FLAGS_CACHE[tokenizer] = flags
    return flags


class FirstLineComplete(StoppingCriteria):
    """Per-row stop once the generated text, with leading blanks removed, contains a newline.

    Works token by token from a per-vocabulary table (no decoding per step): a row is done when
    a token holds a newline after non-blank text, or a newline once earlier tokens held
    non-blank text. Stateful over one ``generate`` call whose rows keep their order (greedy
    decoding); create one per call.
    """

    def __init__(self, tokenizer, prompt_width: int):
        self.flags = _token_flags(tokenizer)
        self.prompt_width = prompt_width
        self.seen = prompt_width
        self.content = None  # (rows,) bool: non-blank text generated so far
        self.done = None  # (rows,) bool

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.BoolTensor:
        # input_ids: (rows, prompt_width + generated so far)
        if self.content is None:
            self.flags = self.flags.to(input_ids.device)
            rows = input_ids.shape[0]
            self.content = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
            self.done = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
        unknown = self.flags.shape[0] - 1
        for col in range(self.seen, input_ids.shape[1]):
            ids = input_ids[:, col]
            row_flags = self.flags[torch.where(ids < unknown, ids, unknown)]  # (rows, 3)
            has_content, has_newline, newline_after_content = row_flags.unbind(dim=1)
            self.done |= newline_after_content | (self.content & has_newline)
            self.content |= has_content
        self.seen = input_ids.shape[1]
        return self.done.clone()


def _generation_config(model, mode: str, num_beams: int, max_new_tokens: int, pad: int):
    """Deterministic decoding settings; sampling fields a checkpoint may carry are cleared."""
    base = getattr(model, "generation_config", None)
    eos = getattr(base, "eos_token_id", None) if base is not None else None
    bos = getattr(base, "bos_token_id", None) if base is not None else None
    beams = num_beams if mode == "beam" else 1
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        temperature=1.0,  # neutral values, so a checkpoint's sampling defaults are not merged in
        top_p=1.0,
        top_k=50,
        num_beams=beams,
        num_return_sequences=1,
        early_stopping=False,
        length_penalty=1.0,
        eos_token_id=eos,
        bos_token_id=bos,
        pad_token_id=pad,
        use_cache=True,
    )


@torch.no_grad()
def generate_continuations(
    model,
    tokenizer,
    prompts: Sequence[str],
    mode: str = "greedy",
    batch_size: int = 64,
    num_beams: int = 4,
    max_new_tokens: int = 16,
    stop_at_newline: bool | None = None,
    label_regex=None,
    copies: int | None = None,
):
    """The decoded continuation (special tokens dropped) of every prompt, in input order.

    ``mode`` is ``"greedy"`` or ``"beam"``; ``stop_at_newline`` defaults to True for greedy and
    False for beam search (see the module docstring). ``label_regex`` (greedy only; a literal
    label alternation, see ``label_stop``) also stops a row once its first-line label match is
    decided: the prediction extracted from its output is the one full decoding would give. The
    model is used as it is (the caller puts it in eval mode). ``copies`` (a trial pack's live
    configurations, see ``prefill``): every batch decodes that many copies in one call, and the
    result is one list of continuations per copy; None: one list.
    """
    n_copies = copies or 1
    if not prompts:
        return [[] for _ in range(n_copies)] if copies is not None else []
    pad = pad_id(tokenizer)
    device = model_device(model)
    config = _generation_config(model, mode, num_beams, max_new_tokens, pad)
    if stop_at_newline is None:
        stop_at_newline = mode == "greedy"
    decided = None
    if label_regex is not None and mode == "greedy":
        labels = literal_alternatives(label_regex.pattern)
        if labels:
            decided = (label_regex, max(len(x) for x in labels))

    def criteria(width: int) -> StoppingCriteriaList:
        out = StoppingCriteriaList()
        if stop_at_newline:
            out.append(FirstLineComplete(tokenizer, width))
        if decided is not None:
            out.append(LabelDecided(tokenizer, width, *decided))
        return out

    encoded = encode_prompts(tokenizer, prompts)
    outputs: list[list[str]] = [[""] * len(prompts) for _ in range(n_copies)]
    batches = length_sorted_batches([len(e) for e in encoded], batch_size)
    if mode == "greedy":
        decoder = GreedyDecoder(
            model, tokenizer, config, criteria, pad, device, batch_size, n_copies
        )
        for batch in batches:
            for copy, i, text in decoder.add([encoded[i] for i in batch], batch):
                outputs[copy][i] = text
        for copy, i, text in decoder.flush():
            outputs[copy][i] = text
        return outputs if copies is not None else outputs[0]
    for batch in batches:
        inputs = left_pad([encoded[i] for i in batch], pad, device)
        inputs.pop("position_ids")  # generate derives them from the attention mask
        if n_copies > 1:  # (b, W) -> (copies * b, W): copy m at rows [m*b, (m+1)*b)
            inputs = {k: torch.cat([v] * n_copies) for k, v in inputs.items()}
        width = inputs["input_ids"].shape[1]
        out = model.generate(**inputs, generation_config=config, stopping_criteria=criteria(width))
        # out: (copies * b, width + new tokens); the prompt part is the same padded block
        texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        for r, text in enumerate(texts):
            outputs[r // len(batch)][batch[r % len(batch)]] = text
    return outputs if copies is not None else outputs[0]

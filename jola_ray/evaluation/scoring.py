"""Log-likelihood scoring of continuations: closed-label classification and TruthfulQA MC.

A continuation's score is the sum of the log-probabilities of its tokens given the prompt.
Prompt and continuation are tokenized separately (prompt with BOS, continuation without
special tokens) and concatenated, so every candidate is scored after the same prompt tokens.

Each prompt runs once: a batch of prompts is prefilled with a KV cache (``prefill``: the
tokens all of them start with run once; only the last position's logits are kept: they score
every candidate's first token), the cache rows are
copied once per candidate, and one more forward over the right-padded candidate tokens scores
the rest. The prompt, usually much longer than a label or an answer, is not recomputed per
candidate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from jola_ray.evaluation.batching import (
    encode_prompts,
    length_sorted_batches,
    model_device,
    pad_id,
)
from jola_ray.evaluation.prefill import cache_kwarg, prefill


@torch.no_grad()
def continuation_logprobs(
    model,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 64,
    copies: int | None = None,
):
    """Sum of token log-probs of each ``continuation`` after its ``prompt``; input order.

    ``batch_size`` bounds the (prompt, continuation) rows of one forward pass (a single prompt
    with more candidates than that still runs as one batch). ``copies`` (a trial pack's live
    configurations, see ``prefill``): every batch runs that many times in one forward, copy
    ``m`` edited by the pack's ``m``-th live member, and the result is one score list per copy;
    None: one list.
    """
    n_copies = copies or 1
    if not pairs:
        return [[] for _ in range(n_copies)] if copies is not None else []
    prompts = list(dict.fromkeys(p for p, _ in pairs))
    prompt_index = {p: i for i, p in enumerate(prompts)}
    prompt_ids = encode_prompts(tokenizer, prompts)
    cont_ids = [
        list(c) for c in tokenizer([c for _, c in pairs], add_special_tokens=False)["input_ids"]
    ]
    rows_of: list[list[int]] = [[] for _ in prompts]
    for j, (p, _) in enumerate(pairs):
        rows_of[prompt_index[p]].append(j)
    pad = pad_id(tokenizer)
    device = model_device(model)
    scores = [[0.0] * len(pairs) for _ in range(n_copies)]
    lengths = [len(ids) for ids in prompt_ids]
    kwarg = cache_kwarg(model)
    for batch in length_sorted_batches(lengths, batch_size, [len(r) for r in rows_of]):
        rows = [j for i in batch for j in rows_of[i]]
        owner = [k for k, i in enumerate(batch) for _ in rows_of[i]]  # candidate -> prompt row
        pre = prefill(model, [prompt_ids[i] for i in batch], pad, device, n_copies)
        # pre.logits: (copies * prompts, vocab), copy m's prompts at rows [m*b, (m+1)*b)
        b = len(batch)
        owners = torch.tensor(
            [m * b + k for m in range(n_copies) for k in owner], device=device
        )  # (copies * rows,): member-major, each copy's candidates in the same order
        first_logp = torch.log_softmax(pre.logits.float(), dim=-1)  # (copies * prompts, vocab)
        first = [cont_ids[j][0] if cont_ids[j] else pad for j in rows] * n_copies
        first_lp = first_logp[owners, torch.tensor(first, device=device)]  # (copies * rows,)
        totals = [
            float(v) if cont_ids[rows[r % len(rows)]] else 0.0
            for r, v in enumerate(first_lp.tolist())
        ]
        rest = [cont_ids[j][1:] for j in rows]
        width = max(len(r) for r in rest)
        if width > 0:
            cache = pre.cache
            cache.batch_select_indices(owners)  # one cache row per candidate and copy
            # feed each candidate's tokens but the last, right-padded: (rows, width)
            feed = [cont_ids[j][: len(r)] for j, r in zip(rows, rest, strict=True)]
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            targets = torch.full((len(rows), width), pad, dtype=torch.long)
            for r, tokens in enumerate(feed):
                ids[r, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
                mask[r, : len(tokens)] = 1
                targets[r, : len(rest[r])] = torch.tensor(rest[r], dtype=torch.long)
            # (rows, width) -> (copies * rows, width): the same candidates for every copy
            ids, mask, targets = (
                torch.cat([t] * n_copies).to(device) for t in (ids, mask, targets)
            )
            start = pre.lengths[owners]  # (copies * rows,) real prompt lengths
            positions = start[:, None] + torch.arange(width, device=device)[None, :]
            logits = model(
                input_ids=ids,
                attention_mask=torch.cat([pre.attention_mask[owners], mask], dim=1),
                position_ids=positions,
                use_cache=True,
                **{kwarg: cache},
            ).logits
            # logits: (copies * rows, width, vocab); position t predicts candidate token t + 1
            # log p(target) = logit(target) - logsumexp(logits), without a second vocab-sized copy
            logits = logits.float()
            picked = logits.gather(-1, targets[..., None])[..., 0]  # (copies * rows, width)
            token_lp = picked - torch.logsumexp(logits, dim=-1)
            rest_sums = (token_lp * mask).sum(dim=1).tolist()
            totals = [t + s for t, s in zip(totals, rest_sums, strict=True)]
        for r, total in enumerate(totals):
            scores[r // len(rows)][rows[r % len(rows)]] = total
    return scores if copies is not None else scores[0]


def score_labels(
    model,
    tokenizer,
    prompts: Sequence[str],
    labels: Sequence[str] | Sequence[Sequence[str]],
    batch_size: int = 64,
    copies: int | None = None,
):
    """Log-likelihood of every label after every prompt: ``scores[example][label]``.

    ``labels`` is one label list for every prompt, or one list per prompt (an ARC question
    with three options is scored over those three only). ``copies``: one such table per copy
    of a trial pack's live configurations (see ``continuation_logprobs``).
    """
    if labels and isinstance(labels[0], str):
        per_prompt = [list(labels)] * len(prompts)
    else:
        per_prompt = [list(ls) for ls in labels]
        if len(per_prompt) != len(prompts):
            raise ValueError(f"{len(per_prompt)} label lists for {len(prompts)} prompts")
    return score_choices_raw(model, tokenizer, prompts, per_prompt, batch_size, copies)


def score_choices_raw(
    model,
    tokenizer,
    prompts: Sequence[str],
    choices: Sequence[Sequence[str]],
    batch_size: int,
    copies: int | None = None,
):
    """Log-likelihood of each prompt's own continuations, appended as given (no space added);
    one table per copy when ``copies`` is given."""
    pairs = [(p, c) for p, cs in zip(prompts, choices, strict=True) for c in cs]
    flats = continuation_logprobs(model, tokenizer, pairs, batch_size, copies or 1)
    tables = []
    for flat in flats:
        out, start = [], 0
        for cs in choices:
            out.append(flat[start : start + len(cs)])
            start += len(cs)
        tables.append(out)
    return tables if copies is not None else tables[0]


def answer_continuation(prompt: str, answer: str) -> str:
    """The text scored after a QA prompt: ``" answer"`` after ``"A:"`` (ITI's ``"A: {ans}"``)."""
    if not prompt or prompt[-1].isspace():
        return answer
    return " " + answer


def score_choices(
    model,
    tokenizer,
    prompts: Sequence[str],
    choices: Sequence[Sequence[str]],
    batch_size: int = 64,
    copies: int | None = None,
):
    """Log-likelihood of every answer choice of every question: ``scores[example][choice]``
    (one such table per copy when ``copies`` is given, see ``continuation_logprobs``)."""
    spaced = [
        [answer_continuation(p, c) for c in cs] for p, cs in zip(prompts, choices, strict=True)
    ]
    return score_choices_raw(model, tokenizer, prompts, spaced, batch_size, copies)

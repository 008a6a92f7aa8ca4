"""Log-likelihood scoring of continuations: closed-label classification and TruthfulQA MC.

A continuation's score is the sum of the log-probabilities of its tokens given the prompt.
Prompt and continuation are tokenized separately (prompt with BOS, continuation without
special tokens) and concatenated, so every candidate is scored after the same prompt tokens.

Each prompt runs once: a batch of left-padded prompts is prefilled with a KV cache (only the
last position's logits are kept: they score every candidate's first token), the cache rows are
copied once per candidate, and one more forward over the right-padded candidate tokens scores
the rest. The prompt, usually much longer than a label or an answer, is not recomputed per
candidate.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from jola_ray.evaluation.batching import (
    encode_prompts,
    left_pad,
    length_sorted_batches,
    model_device,
    pad_id,
)


def _cache_kwarg(model) -> str:
    """The forward argument for a KV cache: ``cache`` (transformers >= 5.2x) or the older name."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@torch.no_grad()
def continuation_logprobs(
    model, tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int = 64
) -> list[float]:
    """Sum of token log-probs of each ``continuation`` after its ``prompt``; input order.

    ``batch_size`` bounds the (prompt, continuation) rows of one forward pass (a single prompt
    with more candidates than that still runs as one batch).
    """
    if not pairs:
        return []
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
    scores = [0.0] * len(pairs)
    lengths = [len(ids) for ids in prompt_ids]
    cache_kwarg = _cache_kwarg(model)
    for batch in length_sorted_batches(lengths, batch_size, [len(r) for r in rows_of]):
        rows = [j for i in batch for j in rows_of[i]]
        owner = torch.tensor([k for k, i in enumerate(batch) for _ in rows_of[i]], device=device)
        prompt = left_pad([prompt_ids[i] for i in batch], pad, device)
        out = model(**prompt, use_cache=True, logits_to_keep=1)
        # out.logits: (prompts, 1, vocab), the next-token distribution after each prompt
        first_logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (prompts, vocab)
        first = [cont_ids[j][0] if cont_ids[j] else pad for j in rows]
        first_lp = first_logp[owner, torch.tensor(first, device=device)]  # (rows,)
        totals = [
            float(v) if cont_ids[j] else 0.0 for v, j in zip(first_lp.tolist(), rows, strict=True)
        ]
        rest = [cont_ids[j][1:] for j in rows]
        width = max(len(r) for r in rest)
        if width > 0:
            cache = out.cache if hasattr(out, "cache") else out.past_key_values
            cache.batch_select_indices(owner)  # one cache row per candidate
            # feed each candidate's tokens but the last, right-padded: (rows, width)
            feed = [cont_ids[j][: len(r)] for j, r in zip(rows, rest, strict=True)]
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, tokens in enumerate(feed):
                ids[r, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
                mask[r, : len(tokens)] = 1
            ids, mask = ids.to(device), mask.to(device)
            start = prompt["attention_mask"].sum(dim=1)[owner]  # (rows,) real prompt lengths
            positions = start[:, None] + torch.arange(width, device=device)[None, :]
            logits = model(
                input_ids=ids,
                attention_mask=torch.cat([prompt["attention_mask"][owner], mask], dim=1),
                position_ids=positions,
                use_cache=True,
                **{cache_kwarg: cache},
            ).logits
            # logits: (rows, width, vocab); position t predicts the candidate's token t + 1
            targets = torch.full((len(rows), width), pad, dtype=torch.long)
            for r, tokens in enumerate(rest):
                targets[r, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            # log p(target) = logit(target) - logsumexp(logits), without a second vocab-sized copy
            logits = logits.float()
            picked = logits.gather(-1, targets.to(device)[..., None])[..., 0]  # (rows, width)
            token_lp = picked - torch.logsumexp(logits, dim=-1)
            rest_sums = (token_lp * mask).sum(dim=1).tolist()
            totals = [t + s for t, s in zip(totals, rest_sums, strict=True)]
        for j, total in zip(rows, totals, strict=True):
            scores[j] = total
    return scores


def score_labels(
    model,
    tokenizer,
    prompts: Sequence[str],
    labels: Sequence[str] | Sequence[Sequence[str]],
    batch_size: int = 64,
) -> list[list[float]]:
    """Log-likelihood of every label after every prompt: ``scores[example][label]``.

    ``labels`` is one label list for every prompt, or one list per prompt (an ARC question
    with three options is scored over those three only).
    """
    if labels and isinstance(labels[0], str):
        per_prompt = [list(labels)] * len(prompts)
    else:
        per_prompt = [list(ls) for ls in labels]
        if len(per_prompt) != len(prompts):
            raise ValueError(f"{len(per_prompt)} label lists for {len(prompts)} prompts")
    return score_choices_raw(model, tokenizer, prompts, per_prompt, batch_size)


def score_choices_raw(
    model, tokenizer, prompts: Sequence[str], choices: Sequence[Sequence[str]], batch_size: int
) -> list[list[float]]:
    """Log-likelihood of each prompt's own continuations, appended as given (no space added)."""
    pairs = [(p, c) for p, cs in zip(prompts, choices, strict=True) for c in cs]
    flat = continuation_logprobs(model, tokenizer, pairs, batch_size)
    out, start = [], 0
    for cs in choices:
        out.append(flat[start : start + len(cs)])
        start += len(cs)
    return out


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
) -> list[list[float]]:
    """Log-likelihood of every answer choice of every question: ``scores[example][choice]``."""
    spaced = [
        [answer_continuation(p, c) for c in cs] for p, cs in zip(prompts, choices, strict=True)
    ]
    return score_choices_raw(model, tokenizer, prompts, spaced, batch_size)

"""The answer tokens' negative log-likelihood, with logits computed at answer positions only.

A causal LM's head maps every position's hidden state to a vocabulary-sized row of logits, but
a fine-tuning loss (and a dev loss) reads only the positions that predict an answer token (the
labels that are not -100, shifted by one). ``answer_nll`` runs the model's backbone once,
gathers the hidden states at those positions and applies the LM head there alone, so a step
costs the frozen model's forward and backward plus the answer tokens' logits: no
(batch, seq, vocab) tensor, no recomputation of the head in backward, no entropy or top-1
statistics. The value is the same sum of ``-log p(label)`` as TRL's fused LM head (and as the
model's own loss times the label count); the tests compare value and gradient.
``answer_nll_rows`` is the same sum split by batch row, for a trial pack whose members' batches
are row blocks of one forward.

``dev_loss`` is the dev split's loss from one teacher-forced forward per batch of
prompt + answer rows, tokenized as training tokenizes them. ``loss_from_label_scores`` gets the
same figure for free from label scoring, where the gold label's log-likelihood is already
computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from jola_ray.evaluation.batching import encode_prompts, length_sorted_batches, model_device

IGNORE = -100


def answer_rows(
    tokenizer, prompts: Sequence[str], answers: Sequence[str], append_eos: bool = False
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids) of each example, as training and evaluation tokenize them.

    The prompt is encoded with the tokenizer's special tokens (BOS), exactly as evaluation
    encodes it; the answer without them, followed by EOS when ``append_eos``.
    """
    prompt_ids = encode_prompts(tokenizer, prompts)
    answer_ids = tokenizer(list(answers), add_special_tokens=False)["input_ids"]
    rows = []
    for p, a in zip(prompt_ids, answer_ids, strict=True):
        a = list(a)
        if append_eos:
            a.append(tokenizer.eos_token_id)
        rows.append((list(p), a))
    return rows


def _backbone(model):
    """The decoder stack under the LM head (``model.model`` for Llama), or None."""
    prefix = getattr(model, "base_model_prefix", None)
    backbone = getattr(model, prefix, None) if prefix else None
    return backbone if isinstance(backbone, torch.nn.Module) and backbone is not model else None


def supports_answer_nll(model) -> bool:
    """Whether ``answer_nll`` can run this model: a backbone and an output embedding, and no
    hook on the model itself (an edit that reads the whole model's inputs, as LoReFT's
    positions do, would be bypassed by calling the backbone)."""
    return (
        _backbone(model) is not None
        and model.get_output_embeddings() is not None
        and not model._forward_pre_hooks
        and not model._forward_hooks
    )


def head_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head on ``hidden`` (n, hidden_size) -> fp32 logits (n, vocab), with the model's
    logit scale and final soft-capping (Gemma 2), as the model's own forward applies them."""
    logits = model.get_output_embeddings()(hidden).float()  # (n, vocab)
    text_config = model.config.get_text_config()
    scale = getattr(text_config, "logit_scale", None)
    if scale is not None and scale != 1.0:
        logits = logits * scale
    cap = getattr(text_config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _answer_logits(model, input_ids, labels, attention_mask=None, **kwargs):
    """``(logits, targets, mask, anchor)`` of the labelled positions, from one forward.

    ``logits``: fp32 (n, vocab) at the n positions that predict a label, row-major (row 0's
    positions first); ``targets``: their labels (n,); ``mask``: (batch, seq - 1), True at those
    positions; ``anchor``: a tensor of the forward (batch, ...) that a batch without labels
    differentiates through, so the edit still gets (zero) gradients. With
    ``supports_answer_nll`` the LM head sees the n positions alone; otherwise the model's own
    forward computes every position's logits and the labelled ones are picked.
    """
    kwargs.pop("use_cache", None)
    if not supports_answer_nll(model):  # through the model's own forward: every position
        full = model(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs
        ).logits[:, :-1]  # (batch, seq - 1, vocab)
        targets = labels[:, 1:].to(full.device)
        mask = targets != IGNORE
        return full[mask].float(), targets[mask], mask, full  # (n, vocab), (n,)
    hidden = _backbone(model)(
        input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs
    ).last_hidden_state  # (batch, seq, hidden)
    head = model.get_output_embeddings()
    targets = labels[:, 1:].to(head.weight.device)  # (batch, seq - 1): the next token
    mask = targets != IGNORE
    picked = hidden[:, :-1].to(head.weight.device)[mask]  # (n, hidden): answer positions only
    return head_logits(model, picked), targets[mask], mask, hidden  # (n, vocab), (n,)


def answer_nll(
    model, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask=None, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of -log p(label), number of labelled tokens)`` over the batch.

    ``input_ids``/``labels``/``attention_mask``: (batch, seq); label ``t`` is predicted from
    position ``t - 1``; -100 marks positions without a target. Extra ``kwargs`` (position ids)
    go to the backbone. Differentiable with respect to anything inside the backbone (the edit);
    a batch without labelled tokens gives a differentiable zero.
    """
    logits, targets, mask, anchor = _answer_logits(
        model, input_ids, labels, attention_mask, **kwargs
    )
    if logits.shape[0] == 0:  # an all-prompt micro-batch: keep the graph connected
        return anchor.sum() * 0.0, mask.sum()
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    return nll, mask.sum()


def answer_nll_rows(
    model, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask=None, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of -log p(label) per row, labelled tokens per row)``, both (batch,).

    ``answer_nll`` split by row, from the same one forward with the LM head at the labelled
    positions only: a trial pack stacks its members' batches as row blocks and needs each
    block's own sum (``rows.view(K, B).sum(1)``). A row without labels has a zero sum that is
    still part of the graph.
    """
    logits, targets, mask, anchor = _answer_logits(
        model, input_ids, labels, attention_mask, **kwargs
    )
    counts = mask.sum(dim=1)  # (batch,)
    if logits.shape[0] == 0:  # no labels anywhere: differentiable zeros
        return anchor.flatten(1).sum(dim=1) * 0.0, counts  # (batch, ...) -> (batch,)
    token = torch.nn.functional.cross_entropy(logits, targets, reduction="none")  # (n,)
    # back to the (batch, seq - 1) grid, zero where unlabelled; masked_scatter fills the True
    # positions in row-major order, the order the labelled positions were gathered in
    grid = token.new_zeros(mask.shape).masked_scatter(mask, token)  # (batch, seq - 1)
    return grid.sum(dim=1), counts  # (batch, seq - 1) -> (batch,)


def _right_pad(rows: Sequence[list[int]], labels: Sequence[list[int]], pad: int, device):
    """``input_ids``, ``attention_mask``, ``labels``: (batch, max_len), right-padded."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    lab = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (row, row_labels) in enumerate(zip(rows, labels, strict=True)):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
        lab[i, : len(row)] = torch.tensor(row_labels, dtype=torch.long)
    return ids.to(device), mask.to(device), lab.to(device)


@torch.no_grad()
def dev_loss(
    model,
    tokenizer,
    prompts: Sequence[str],
    answers: Sequence[str],
    batch_size: int = 64,
    append_eos: bool = False,
    max_length: int | None = None,
) -> float:
    """Mean ``-log p`` per answer token over the examples (teacher forcing), as training
    measures it; the model is used as it is (the caller puts it in eval mode).

    Rows longer than ``max_length`` have their prompt cut from the left (BOS kept), as training
    fits them. NaN when there is no answer token.
    """
    from jola_ray.evaluation.batching import pad_id

    rows, row_labels = [], []
    for p, a in answer_rows(tokenizer, prompts, answers, append_eos):
        if max_length is not None and len(p) + len(a) > max_length:
            # as training fits a row (``train.trl_data``): the prompt cut from the left, BOS kept
            head = p[:1] if p[:1] == [tokenizer.bos_token_id] else []
            keep = max(0, max_length - len(a) - len(head))
            p = [*head, *p[len(p) - keep :]] if keep else head
        rows.append([*p, *a])
        row_labels.append([IGNORE] * len(p) + a)
    device = model_device(model)
    pad = pad_id(tokenizer)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for batch in length_sorted_batches([len(r) for r in rows], batch_size):
        ids, mask, lab = _right_pad(
            [rows[i] for i in batch], [row_labels[i] for i in batch], pad, device
        )
        nll, n = answer_nll(model, ids, lab, attention_mask=mask)
        total += nll.double()
        count += int(n)
    return float(total / count) if count else float("nan")


def loss_from_label_scores(
    tokenizer, predictions: Sequence[dict], golds: Sequence[str]
) -> float | None:
    """The dev loss from label scoring: ``-sum log p(gold) / gold tokens``; None when a gold
    answer is not among a row's scored labels (then a teacher-forced pass is needed).

    Label scoring sums the log-probabilities of each label's tokens after the prompt, tokenized
    exactly as the training answer (no special tokens), so the gold label's score is the
    negative of the training loss summed over that row's answer tokens.
    """
    total, count = 0.0, 0
    lengths = tokenizer(list(golds), add_special_tokens=False)["input_ids"]
    for pred, gold, ids in zip(predictions, golds, lengths, strict=True):
        scores = pred.get("scores")
        if not isinstance(scores, dict) or gold not in scores or not ids:
            return None
        total -= float(scores[gold])
        count += len(ids)
    return total / count if count else None

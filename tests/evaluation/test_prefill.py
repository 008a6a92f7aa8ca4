"""The shared-prefix prefill, greedy decoding's first-token shortcut, and packed evaluation.

Expected values come from independent computations: one unpadded forward per prompt (no cache,
no sharing) for logits, transformers' own ``generate`` on each prompt for greedy text, and each
pack member attached alone for the packed (``copies``) evaluation.
"""

import pytest
import torch

from jola_ray.data.task import Example, Task
from jola_ray.editing import JoLAConfig
from jola_ray.editing.pack import build_pack
from jola_ray.evaluation.api import evaluate, evaluate_copies
from jola_ray.evaluation.batching import encode_prompts
from jola_ray.evaluation.generation import generate_continuations
from jola_ray.evaluation.prefill import MIN_SHARED, prefill, shared_prefix_length
from jola_ray.evaluation.scoring import continuation_logprobs
from jola_ray.tiny import TINY_ARCHS, build_tiny

# a shared head of many tokens, then own parts of different lengths
PROMPTS = [
    "Answer with y or n. Question: is " + q + "?\n### Response:\n"
    for q in ("the sky blue", "a cat green", "x", "water wet today", "fire cold", "snow")
]
LABEL_TASK = Task(
    name="yn",
    benchmark="demo",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    labels=("y", "n"),
    max_new_tokens=6,
)


def lone_logits(model, tok, prompt: str) -> torch.Tensor:
    ids = torch.tensor([tok(prompt)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits[0, -1]  # (vocab,)


def hf_greedy(model, tok, prompt: str, new_tokens: int) -> list[int]:
    ids = torch.tensor([tok(prompt)["input_ids"]])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=0
        )
    return out[0, ids.shape[1] :].tolist()


def test_shared_prefix_length_leaves_every_row_a_token_of_its_own():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 9]]) == 3
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter row keeps one
    assert shared_prefix_length([[1, 2, 3]]) == 0  # one row: nothing to share
    assert shared_prefix_length([[1, 5], [1, 6]]) == (1 if MIN_SHARED <= 1 else 0)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_prefill_logits_equal_unshared_forwards(arch):
    model, tok = build_tiny(arch, seed=3)
    rows = encode_prompts(tok, PROMPTS)
    pre = prefill(model, rows, 0, torch.device("cpu"))
    assert pre.shared >= 20  # the test is about sharing: the head is shared
    want = torch.stack([lone_logits(model, tok, p) for p in PROMPTS])
    torch.testing.assert_close(pre.logits.float(), want.float(), rtol=1e-4, atol=1e-4)
    assert pre.lengths.tolist() == [len(r) for r in rows]
    # the cache holds what it was given: shared head, then each row's own tokens
    for r, row in enumerate(rows):
        held = pre.input_ids[r][pre.attention_mask[r].bool()].tolist()
        assert held == row


@pytest.mark.parametrize("arch", ["llama", "gemma2", "phi3"])
def test_greedy_continuations_equal_transformers_generate(arch):
    model, tok = build_tiny(arch, seed=4)
    got = generate_continuations(
        model, tok, PROMPTS, batch_size=4, max_new_tokens=7, stop_at_newline=False
    )
    want = [tok.decode(hf_greedy(model, tok, p, 7), skip_special_tokens=True) for p in PROMPTS]
    assert got == want


def test_rows_decided_by_their_first_token_take_no_decode_step():
    """A label task whose first generated token decides every row: the prefill alone, no
    one-token decode step; with labels no first token decides, rows continue and still equal
    transformers' own greedy decoding."""
    from jola_ray.evaluation.extraction import label_regex

    model, tok = build_tiny("llama", seed=5)
    firsts = [hf_greedy(model, tok, p, 1)[0] for p in PROMPTS]
    labels = tuple(sorted({tok.decode([t]) for t in firsts}))  # every first token is a label
    task = Task(**{**LABEL_TASK.__dict__, "labels": labels})
    widths = []  # tokens fed per forward of the decoder stack
    hook = model.model.register_forward_pre_hook(
        lambda mod, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        got = generate_continuations(
            model, tok, PROMPTS, batch_size=4, label_regex=label_regex(task)
        )
        assert widths and 1 not in widths  # prefix and suffix forwards only
        assert got == [tok.decode([t]) for t in firsts]
        # labels no first token decides: every row continues, as transformers decodes it
        task2 = Task(**{**LABEL_TASK.__dict__, "labels": ("zzzz", "qqqq")})
        widths.clear()
        got2 = generate_continuations(
            model,
            tok,
            PROMPTS,
            batch_size=4,
            max_new_tokens=5,
            stop_at_newline=False,
            label_regex=label_regex(task2),
        )
        # every row continues: the two batches' rows together, four one-token steps
        assert widths.count(1) == 4
    finally:
        hook.remove()
    assert got2 == [
        tok.decode(hf_greedy(model, tok, p, 5), skip_special_tokens=True) for p in PROMPTS
    ]


def _pack(model, k=3):
    configs = [JoLAConfig(seed=10 + i) for i in range(k)]
    pack = build_pack(model, configs)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # members away from the identity, each differently
        for name, param in pack.named_parameters():
            if "log_alpha" in name:
                param.copy_(torch.rand(param.shape, generator=gen) * 4 + 1)
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.8)
    return pack


def _solo(pack, k, fn):
    with pack.solo(k):
        return fn()


@pytest.mark.parametrize("live", [[0, 1, 2], [2, 0]])
def test_copies_score_and_decode_each_live_member_as_alone(live):
    model, tok = build_tiny("llama", seed=6)
    pack = _pack(model)
    pack.set_live(live)
    model.eval()
    pairs = [(p, c) for p in PROMPTS[:4] for c in ("y", "n", " maybe")]
    got = continuation_logprobs(model, tok, pairs, batch_size=5, copies=len(live))
    texts = generate_continuations(
        model, tok, PROMPTS, batch_size=4, max_new_tokens=5, copies=len(live)
    )
    for i, k in enumerate(live):
        want = _solo(pack, k, lambda: continuation_logprobs(model, tok, pairs, batch_size=5))
        assert got[i] == pytest.approx(want, abs=1e-4)
        alone = _solo(
            pack,
            k,
            lambda: generate_continuations(model, tok, PROMPTS, batch_size=4, max_new_tokens=5),
        )
        assert texts[i] == alone
    # the members really differ: the test would not pass with one member's edit everywhere
    assert texts[0] != texts[1] or got[0] != pytest.approx(got[1], abs=1e-4)


@pytest.mark.parametrize("mode", ["greedy", "label_scoring", "beam"])
def test_evaluate_copies_equals_each_member_evaluated_alone(mode):
    model, tok = build_tiny("llama", seed=7)
    pack = _pack(model)
    examples = [Example(id=str(i), prompt=p, answer="yn"[i % 2]) for i, p in enumerate(PROMPTS)]
    results = evaluate_copies(
        model, tok, LABEL_TASK, examples, copies=3, mode=mode, batch_size=4, num_beams=2
    )
    for k, result in enumerate(results):
        alone = _solo(
            pack,
            k,
            lambda: evaluate(
                model, tok, LABEL_TASK, examples, mode=mode, batch_size=4, num_beams=2
            ),
        )
        assert result.metrics == alone.metrics
        assert [p["prediction"] for p in result.predictions] == [
            p["prediction"] for p in alone.predictions
        ]


def test_a_model_level_hook_gets_the_whole_prompt_in_one_call():
    """An edit hooked on the model itself (LoReFT's prompt positions) sees each prompt whole:
    no shared-prefix split, so its scores equal those of one forward per prompt."""
    from jola_ray.editing.loreft import apply_loreft
    from jola_ray.methods.loreft import LoReFTSettings

    model, tok = build_tiny("llama", seed=8)
    apply_loreft(model, LoReFTSettings(rank=2), first=1, last=2)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen))
    model.eval()
    rows = encode_prompts(tok, PROMPTS)
    pre = prefill(model, rows, 0, torch.device("cpu"))
    assert pre.shared == 0
    want = torch.stack([lone_logits(model, tok, p) for p in PROMPTS])
    torch.testing.assert_close(pre.logits.float(), want.float(), rtol=1e-4, atol=1e-4)


# varied prompts where a tiny model's first greedy tokens differ: (arch, seed) -> the labels
# that decide some rows with their first token while the others continue
VARIED = [
    "Q: " + q + " A:"
    for q in (
        "red?",
        "is the sea deep and wide today?",
        "x",
        "name three birds",
        "ok",
        "what is two plus two?",
        "say hi",
        "colder in winter?",
    )
]
SPLITS = {("llama", 6): ("u",), ("gemma2", 0): ("H", "6")}


def _split_task(model, tok, labels):
    firsts = [tok.decode([hf_greedy(model, tok, p, 1)[0]]) for p in VARIED]
    decided = [f in labels for f in firsts]
    assert any(decided) and not all(decided)  # the test needs both kinds of rows
    return Task(**{**LABEL_TASK.__dict__, "labels": labels})


@pytest.mark.parametrize(("arch", "seed"), list(SPLITS))
def test_waiting_rows_of_several_batches_continue_together(arch, seed, monkeypatch):
    """Rows not done after their first token wait and continue in one ``generate`` call for
    several batches (plain dynamic caches; Gemma 2's sliding-window layers continue batch by
    batch); every text is a prefix of transformers' own greedy decoding of its prompt, and
    the prediction extracted from it is the full decoding's."""
    from jola_ray.evaluation.extraction import extract_answer, label_regex

    model, tok = build_tiny(arch, seed=seed)
    task = _split_task(model, tok, SPLITS[arch, seed])
    full = [tok.decode(hf_greedy(model, tok, p, 6), skip_special_tokens=True) for p in VARIED]
    calls = []
    original = type(model).generate
    monkeypatch.setattr(
        type(model), "generate", lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    )
    got = generate_continuations(
        model, tok, VARIED, batch_size=3, max_new_tokens=6, label_regex=label_regex(task)
    )
    for text, whole in zip(got, full, strict=True):
        assert whole.startswith(text)
        assert extract_answer(task, text) == extract_answer(task, whole)
    # three batches of up to three prompts, with waiting rows in each: one merged call (llama)
    # or one per batch (gemma2)
    assert len(calls) == (1 if arch == "llama" else 3)


def test_merged_continuations_keep_each_pack_member_apart():
    """With copies, rows merged from several batches stay member-major: each member's texts
    equal its texts decoded alone."""
    from jola_ray.evaluation.extraction import label_regex

    model, tok = build_tiny("llama", seed=6)
    task = _split_task(model, tok, SPLITS["llama", 6])
    pack = _pack(model)
    model.eval()
    kw = dict(batch_size=3, max_new_tokens=6, label_regex=label_regex(task))
    texts = generate_continuations(model, tok, VARIED, copies=3, **kw)
    for k in range(3):
        assert texts[k] == _solo(pack, k, lambda: generate_continuations(model, tok, VARIED, **kw))
    assert texts[0] != texts[1] or texts[1] != texts[2]  # the members decode differently

"""Batched decoding: left padding, length sorting, early stop, tokenizer and mode handling."""

import pytest
import torch

from jola_ray.data.task import PROMPT_TEMPLATE, Example, Task
from jola_ray.errors import ConfigError, DataError
from jola_ray.evaluation import evaluate
from jola_ray.evaluation.extraction import first_response_line
from jola_ray.evaluation.generation import FirstLineComplete, generate_continuations
from jola_ray.tiny import build_tiny

PROMPTS = [
    PROMPT_TEMPLATE.format(instruction=text)
    for text in (
        "Is water wet? true/false",
        "Please answer the following question with true or false, question: is a tomato a "
        "fruit? Answer format: true/false",
        "x",
        "Name a colour.",
        "Count to three, then stop and say the word done.",
    )
]
TASK = Task(
    name="boolq",
    benchmark="commonsense",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    labels=("true", "false"),
)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny("llama", seed=1)


def unbatched_generate(model, tok, prompt, new_tokens, num_beams=1):
    """The plain transformers call on one unpadded prompt, no stopping criterion."""
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **enc, max_new_tokens=new_tokens, do_sample=False, num_beams=num_beams, pad_token_id=0
        )
    return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def test_batched_greedy_first_lines_equal_unbatched(tiny):
    model, tok = tiny
    got = generate_continuations(model, tok, PROMPTS, batch_size=3, max_new_tokens=12)
    want = [unbatched_generate(model, tok, p, 12) for p in PROMPTS]
    assert [first_response_line(g) for g in got] == [first_response_line(w) for w in want]
    # without early stopping the whole continuation is the same, in input order
    full = generate_continuations(
        model, tok, PROMPTS, batch_size=3, max_new_tokens=12, stop_at_newline=False
    )
    assert full == want


def test_batched_beam_equals_unbatched_beam(tiny):
    model, tok = tiny
    got = generate_continuations(
        model, tok, PROMPTS, mode="beam", num_beams=4, batch_size=2, max_new_tokens=8
    )
    want = [unbatched_generate(model, tok, p, 8, num_beams=4) for p in PROMPTS]
    assert got == want


def test_first_line_complete_criterion():
    _, tok = build_tiny("llama")
    rows = ["ab\ncd", "\n\nab", "  \n ", "true\n", "tr"]
    prompt = tok(["pp"] * len(rows), add_special_tokens=False)["input_ids"]
    ids = [
        p + tok(r, add_special_tokens=False)["input_ids"] for p, r in zip(prompt, rows, strict=True)
    ]
    width = max(len(i) for i in ids)
    batch = torch.tensor([i + [0] * (width - len(i)) for i in ids])  # pad decodes to nothing
    done = FirstLineComplete(tok, prompt_width=2)(batch, None)
    assert done.tolist() == [True, False, False, True, False]


def alternating_model(tok, scale: float = 50.0, bias: float = 5.0):
    """A tiny model whose greedy continuation of a prompt ending in newline is "a\na\na...".

    A random tiny model's last hidden state is mostly set by the last token, so the lm_head rows
    of "a" and "\n" are pointed along the difference of the hidden states after "\n" and after
    "a" (and lifted above every other token by a bias): "\n" is followed by "a", "a" by "\n".
    """
    model, _ = build_tiny("llama", seed=2)
    with torch.no_grad():

        def last_hidden(text):
            return model.model(**tok(text, return_tensors="pt")).last_hidden_state[0, -1]

        after_nl = last_hidden(PROMPTS[0])
        after_a = last_hidden(PROMPTS[0] + "a")
        direction = (after_nl - after_a) / (after_nl - after_a).norm()
        old = model.lm_head
        head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
        head.weight.copy_(old.weight)
        head.bias.zero_()
        a, nl = tok.convert_tokens_to_ids("a"), tok.convert_tokens_to_ids("\n")
        head.weight[a], head.bias[a] = scale * direction, bias
        head.weight[nl], head.bias[nl] = -scale * direction, bias
    model.lm_head = head
    return model.eval()


def test_early_stop_ends_at_first_complete_line():
    _, tok = build_tiny("llama")
    model = alternating_model(tok)
    calls = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        full = generate_continuations(
            model, tok, PROMPTS[:1], max_new_tokens=20, stop_at_newline=False
        )
        assert full == ["a\n" * 10]
        assert len(calls) == 20
        calls.clear()
        stopped = generate_continuations(model, tok, PROMPTS[:1], max_new_tokens=20)
        assert stopped == ["a\n"]
        assert len(calls) == 2  # one forward per generated token
    finally:
        handle.remove()


def test_leading_newlines_do_not_stop_generation():
    _, tok = build_tiny("llama")
    model = alternating_model(tok)
    # after a prompt ending in "a" the model writes "\n" first: that blank start must not
    # stop decoding, the first complete line is "a"
    out = generate_continuations(model, tok, [PROMPTS[0] + "a"], max_new_tokens=20)
    assert out == ["\na\n"]


def test_tokenizer_without_pad_token_is_left_untouched(tiny):
    model, _ = tiny
    _, tok = build_tiny("llama")
    tok.pad_token = None
    tok.padding_side = "right"
    examples = [Example(id=str(i), prompt=p, answer="true") for i, p in enumerate(PROMPTS)]
    res = evaluate(model, tok, TASK, examples, batch_size=4, max_new_tokens=6)
    assert [p["id"] for p in res.predictions] == [e.id for e in examples]
    assert tok.pad_token is None
    assert tok.padding_side == "right"
    # same outputs as with a pad token (padding is masked either way)
    _, tok2 = build_tiny("llama")
    res2 = evaluate(model, tok2, TASK, examples, batch_size=4, max_new_tokens=6)
    assert [p["output"] for p in res.predictions] == [p["output"] for p in res2.predictions]


def test_eval_mode_during_and_training_flag_restored(tiny):
    model, tok = tiny
    seen = []
    handle = model.model.layers[0].register_forward_hook(lambda m, i, o: seen.append(m.training))
    try:
        examples = [Example(id="0", prompt=PROMPTS[0], answer="true")]
        for mode in ("greedy", "label_scoring"):
            model.train()
            evaluate(model, tok, TASK, examples, mode=mode, max_new_tokens=3)
            assert model.training
        model.eval()
        evaluate(model, tok, TASK, examples, max_new_tokens=3)
        assert not model.training
        model.train()
        model.model.layers[1].eval()  # a mixed state comes back as it was
        evaluate(model, tok, TASK, examples, max_new_tokens=3)
        assert model.training and model.model.layers[0].training
        assert not model.model.layers[1].training
        model.eval()
    finally:
        handle.remove()
    assert seen and not any(seen)


def test_label_scoring_without_labels_decodes_greedily(tiny, caplog):
    model, tok = tiny
    gen = Task(
        name="clutrr",
        benchmark="lofit",
        kind="generation",
        metrics=("exact_match",),
        primary_metric="exact_match",
        max_new_tokens=5,
    )
    ex = [Example(id=str(i), prompt=p, answer="x") for i, p in enumerate(PROMPTS[:3])]
    with caplog.at_level("WARNING", logger="jola_ray.evaluation.api"):
        scored = evaluate(model, tok, gen, ex, mode="label_scoring")
    assert "decoding greedily" in caplog.text
    greedy = evaluate(model, tok, gen, ex, mode="greedy")
    assert [p["output"] for p in scored.predictions] == [p["output"] for p in greedy.predictions]


def test_bad_arguments_are_clear_errors(tiny):
    model, tok = tiny
    ex = [Example(id="0", prompt=PROMPTS[0], answer="true")]
    with pytest.raises(ConfigError, match="mode='sample'"):
        evaluate(model, tok, TASK, ex, mode="sample")
    with pytest.raises(ConfigError, match="batch_size=0"):
        evaluate(model, tok, TASK, ex, batch_size=0)
    odd = Task(
        name="odd", benchmark="x", kind="generation", metrics=("bleurt",), primary_metric="bleurt"
    )
    with pytest.raises(ConfigError, match="bleurt"):
        evaluate(model, tok, odd, ex)
    with pytest.raises(DataError, match="no examples"):
        evaluate(model, tok, TASK, [])


def multi_char_tokenizer():
    """A tokenizer whose tokens mix text, blanks and newlines ("a\\n", "\\nb", " \\n", ...)."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    pieces = ["<pad>", "</s>", "a", "b c", " ", "\n", "a\n", "\nb", " \n", "\n\n", "x\ny", "  "]
    backend = Tokenizer(models.WordLevel(vocab={p: i for i, p in enumerate(pieces)}, unk_token="a"))
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>")
    return tok, len(pieces)


def test_token_level_stop_agrees_with_decoded_text():
    tok, vocab = multi_char_tokenizer()
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, vocab, (400, 6), generator=gen)  # (rows, generated tokens)
    prompt = torch.full((400, 3), 2)
    ids = torch.cat([prompt, batch], dim=1)
    crit = FirstLineComplete(tok, prompt_width=3)
    for step in range(1, 7):  # called once per generated token, as generate does
        done = crit(ids[:, : 3 + step], None)
        texts = tok.batch_decode(batch[:, :step], skip_special_tokens=True)
        assert done.tolist() == [("\n" in t.lstrip()) for t in texts], step

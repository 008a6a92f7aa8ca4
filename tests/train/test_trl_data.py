"""SFT rows: the prompt tokens as evaluation sees them, loss on the answer only, EOS optional."""

from jola_ray.data.task import Example
from jola_ray.tiny import tiny_tokenizer
from jola_ray.train.trl_data import sft_dataset


def _example():
    return Example(id="x", prompt="Even? 12\n### Response:\n", answer="y")


def test_rows_are_prompt_tokens_then_answer_tokens_with_the_prompt_masked():
    tok = tiny_tokenizer()
    e = _example()
    row = sft_dataset([e], tok)[0]
    prompt_ids = tok(e.prompt)["input_ids"]  # what evaluation feeds the model
    assert row["input_ids"][: len(prompt_ids)] == prompt_ids
    assert tok.decode(row["input_ids"][len(prompt_ids) :]) == "y"
    assert row["labels"] == [-100] * len(prompt_ids) + row["input_ids"][len(prompt_ids) :]
    assert tok.eos_token_id not in row["input_ids"]


def test_append_eos_adds_a_supervised_eos():
    tok = tiny_tokenizer()
    row = sft_dataset([_example()], tok, append_eos=True)[0]
    assert row["input_ids"][-1] == tok.eos_token_id
    assert row["labels"][-1] == tok.eos_token_id

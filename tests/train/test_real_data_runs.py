"""Runs on task files as users have them: long prompts train whole (or are counted when cut),
short files record the sizes used, a test file alone is evaluated zero-shot, bad data leaves
no output folder, and the final run_state.json agrees with metrics.json."""

import json

import pytest
import yaml

from jola_ray.data import load_splits
from jola_ray.errors import DataError
from jola_ray.tiny import tiny_tokenizer
from jola_ray.train import RunConfig, run
from jola_ray.train.trl_data import sft_lengths

SMALL = {
    "model": "tiny-llama",
    "task": "boolq",
    "batch_size": 4,
    "eval_batch_size": 8,
    "epochs": 1,
    "max_new_tokens": 3,
    "device": "cpu",
    "patience": 0,
}


def _rows(n: int, words: int = 5) -> list[dict]:
    """BoolQ rows in the LLM-Adapters format; every third has a long question (``words``)."""
    rows = []
    for i in range(n):
        filler = " ".join(f"w{i}x{j}" for j in range(words if i % 3 == 0 else 5))
        rows.append(
            {
                "instruction": "Please answer the following question with true or false, "
                f"question: is {filler} true?\n\nAnswer format: true/false",
                "input": "",
                "output": "the correct answer is true",
                "answer": "true" if i % 2 else "false",
            }
        )
    return rows


def _folder(tmp_path, train_rows, test_rows, name="boolq"):
    folder = tmp_path / "data" / name
    folder.mkdir(parents=True)
    if train_rows is not None:
        (folder / "train.json").write_text(json.dumps(train_rows))
    (folder / "test.json").write_text(json.dumps(test_rows))
    return tmp_path / "data"


def _cfg(tmp_path, data_dir, **over):
    return RunConfig.from_dict(
        {**SMALL, "data_dir": str(data_dir), "output_dir": str(tmp_path / "out"), **over}
    )


def test_long_prompts_train_on_every_example(tmp_path):
    """Prompts of ~700 tokens: the old default (max_length 400) dropped them silently."""
    data = _folder(tmp_path, _rows(12, words=120), _rows(4))
    cfg = _cfg(tmp_path, data, train_size=8, dev_size=4, test_size=4)
    metrics = run(cfg)
    splits = load_splits("boolq", data_dir=data, train_size=8, dev_size=4, test_size=4)
    lengths = sft_lengths(splits.train, tiny_tokenizer())
    assert max(lengths) > 600  # longer than the old default limit
    # every token of every training example was trained on, once per epoch
    assert metrics["cost_tokens"] == sum(lengths)
    assert metrics["train_truncated"] == 0 and metrics["train_dropped"] == 0
    longest = max(sft_lengths([*splits.train, *splits.dev], tiny_tokenizer()))
    assert metrics["max_length_used"] == longest == metrics["longest_example_tokens"]
    assert (metrics["examples_train"], metrics["examples_dev"]) == (8, 4)
    state = json.loads((tmp_path / "out" / "final" / "run_state.json").read_text())
    assert state["tokens"] == metrics["cost_tokens"]
    assert state["wall_s"] == pytest.approx(metrics["cost_wall_s"])


def test_a_set_max_length_cuts_prompts_from_the_left_and_counts_them(tmp_path):
    data = _folder(tmp_path, _rows(12, words=120), _rows(4))
    cfg = _cfg(tmp_path, data, train_size=8, dev_size=4, test_size=4, max_length=400)
    metrics = run(cfg)
    splits = load_splits("boolq", data_dir=data, train_size=8, dev_size=4, test_size=4)
    lengths = sft_lengths(splits.train, tiny_tokenizer())
    assert metrics["train_truncated"] == sum(n > 400 for n in lengths) > 0
    assert metrics["dev_truncated"] == sum(
        n > 400 for n in sft_lengths(splits.dev, tiny_tokenizer())
    )
    assert metrics["cost_tokens"] == sum(min(n, 400) for n in lengths)  # none dropped
    header = (tmp_path / "out" / "config.yaml").read_text().splitlines()[:3]
    assert any("max_length used 400" in line and "dropped: none" in line for line in header)


def test_cut_rows_keep_the_answer_and_the_response_marker():
    from jola_ray.data.task import Example, build_prompt
    from jola_ray.train.trl_data import sft_rows

    tok = tiny_tokenizer()
    e = Example(id="long", prompt=build_prompt("x" * 500), answer="true")
    ds, fit = sft_rows([e], tok, max_length=60)
    row = ds[0]
    assert len(row["input_ids"]) == 60 and fit.truncated == ["long"]
    assert row["input_ids"][0] == tok.bos_token_id
    text = tok.decode(row["input_ids"][1:])
    assert text.endswith("### Response:\ntrue") and text.startswith("xxx")
    assert tok.decode([t for t in row["labels"] if t != -100]) == "true"
    with pytest.raises(DataError, match="example 'long': max_length 5 leaves no room"):
        sft_rows([e], tok, max_length=5)


def test_a_short_file_records_the_sizes_it_really_gave(tmp_path, caplog):
    data = _folder(tmp_path, _rows(35), _rows(4))
    cfg = _cfg(tmp_path, data, train_size=200, dev_size=200, test_size=4)
    metrics = run(cfg)
    assert (metrics["examples_train"], metrics["examples_dev"]) == (18, 17)
    assert metrics["short_splits"] == "train 18 of 200 asked, dev 17 of 200 asked"
    assert "fewer examples than asked" in caplog.text
    for path in (tmp_path / "out" / "config.yaml", tmp_path / "out" / "final" / "config.yaml"):
        text = path.read_text()
        assert "# WARNING fewer examples than asked: train 18 of 200 asked" in text
        assert yaml.safe_load(text)["data"]["train_size"] == 200  # asked, still readable
        assert RunConfig.from_yaml(path).train_size == 200


def test_a_test_file_alone_is_evaluated_zero_shot(tmp_path):
    data = tmp_path / "repo"
    (data / "dataset" / "boolq").mkdir(parents=True)  # the LLM-Adapters repository layout
    (data / "dataset" / "boolq" / "test.json").write_text(json.dumps(_rows(5)))
    metrics = run(_cfg(tmp_path, data, method="zero_shot"))
    assert metrics["examples_test"] == 5 and metrics["examples_train"] == 0
    assert 0.0 <= metrics["test_accuracy"] <= 100.0
    assert metrics["short_splits"] == ""
    with pytest.raises(DataError, match="missing train.json"):
        run(_cfg(tmp_path, data, output_dir=str(tmp_path / "trained")))
    assert not (tmp_path / "trained").exists()


def test_bad_data_leaves_no_output_folder(tmp_path):
    data = _folder(tmp_path, None, _rows(4))
    (data / "boolq" / "train.json").write_bytes(
        json.dumps(_rows(6)).replace("question", "qu\u00e9stion").encode("cp1252")
    )
    with pytest.raises(DataError, match="not UTF-8"):
        run(_cfg(tmp_path, data))
    assert not (tmp_path / "out").exists()

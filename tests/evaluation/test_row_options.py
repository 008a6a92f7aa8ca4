"""Per-row option sets: an ARC question with three or four options is scored and extracted over
its own options only (the task's label set has five), from the real LLM-Adapters row format."""

import json

import pytest

from jola_ray.data import get_task, load_pools
from jola_ray.evaluation import api, evaluate, extract_answer
from jola_ray.evaluation.scoring import continuation_logprobs
from jola_ray.tiny import build_tiny

ARC = get_task("arc_c")


def _row(question: str, options: list[str], gold: int) -> dict:
    """A row in the LLM-Adapters ARC format (instruction lists the options and its format)."""
    listed = " ".join(f"Answer{i}: {t}" for i, t in enumerate(options, 1))
    fmt = "/".join(f"answer{i}" for i in range(1, len(options) + 1))
    return {
        "instruction": f"Please choose the correct answer to the question: {question}\n\n"
        f"{listed}\n\nAnswer format: {fmt}",
        "input": "",
        "output": f"the correct answer is answer{gold}",
        "answer": f"answer{gold}",
    }


@pytest.fixture()
def arc_pools(tmp_path):
    folder = tmp_path / "ARC-Challenge"
    folder.mkdir()
    rows = [
        _row("Which is a metal?", ["wood", "iron", "glass", "cloth"], 2),
        _row("Which is a gas?", ["steam", "ice", "rock"], 1),
        _row("Which is a planet?", ["Mars", "Moon", "Sun", "Comet", "Vega"], 1),
    ]
    (folder / "train.json").write_text(json.dumps(rows))
    (folder / "test.json").write_text(json.dumps(rows))
    return load_pools(ARC, tmp_path)


def test_rows_carry_their_listed_options(arc_pools):
    options = [e.options for e in arc_pools.test]
    assert options[0] == ("answer1", "answer2", "answer3", "answer4")
    assert options[1] == ("answer1", "answer2", "answer3")
    assert options[2] is None  # all five labels: the task's label set
    assert arc_pools.test[2].labels_of(ARC) == ARC.labels


def test_label_scoring_scores_only_the_listed_options(arc_pools):
    model, tok = build_tiny("llama", seed=0)
    examples = arc_pools.test
    res = evaluate(model, tok, ARC, examples, mode="label_scoring", batch_size=4)
    for example, pred in zip(examples, res.predictions, strict=True):
        labels = example.labels_of(ARC)
        assert list(pred["scores"]) == list(labels)
        # independent computation: each listed label scored alone after the prompt
        want = continuation_logprobs(model, tok, [(example.prompt, lab) for lab in labels])
        assert list(pred["scores"].values()) == pytest.approx(want, abs=1e-4)
        assert pred["prediction"] == labels[max(range(len(want)), key=want.__getitem__)]
        assert pred["prediction"] in labels


def test_extraction_skips_options_a_row_does_not_list(arc_pools, monkeypatch):
    four, three = arc_pools.test[0], arc_pools.test[1]
    assert extract_answer(ARC, "answer5, no: answer2", four.options) == "answer2"
    assert extract_answer(ARC, "answer4", three.options) is None
    assert extract_answer(ARC, "answer4") == "answer4"  # the task-wide regex would take it
    outputs = ["answer5 or answer2", "answer4 then answer1"]
    monkeypatch.setattr(api, "generate_continuations", lambda *a, **k: list(outputs))
    model, tok = build_tiny("llama", seed=0)
    res = evaluate(model, tok, ARC, [four, three])
    assert [p["prediction"] for p in res.predictions] == ["answer2", "answer1"]
    assert res.metrics["accuracy"] == 100.0


def test_hub_rows_carry_options_too():
    from jola_ray.data import formats

    row = {
        "question": "Q?",
        "choices": {"text": ["a", "b", "c"], "label": ["A", "B", "C"]},
        "answerKey": "C",
    }
    instruction, answer = formats.arc_like(row, "row 1")
    assert formats.listed_options(instruction, ARC.labels, answer, "row 1") == (
        "answer1",
        "answer2",
        "answer3",
    )
